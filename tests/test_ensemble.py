"""fit_many: many models at once equal the same models trained one by one."""

import jax
import numpy as np
import optax
import pytest

import funcnet as fn
from funcnet.callbacks import NonFinite

RNG = np.random.default_rng(0)
X = RNG.normal(size=(30, 2)).astype(np.float32)
Y = (np.sin(X[:, :1]) + X[:, 1:] ** 2).astype(np.float32)
NET = fn.serial(fn.Dense(6, "tanh"), fn.Dense(1))


def injected_sgd(rate):
    """optax.sgd(rate) with the rate in the optimizer state: models alone share one program."""
    return optax.inject_hyperparams(optax.sgd)(learning_rate=rate)


def test_models_trained_together_equal_models_trained_alone():
    sgd = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
    rates = [0.01, 0.05, 0.2]
    together = fn.fit_many(
        NET, X, Y, loss="mse", optimizer=sgd, seeds=[4, 5, 6],
        hyperparams={"learning_rate": rates}, epochs=3, batch_size=8, metrics=["mae"],
    )  # fmt: skip
    assert together.history["loss"].shape == (3, 3) and together.history["mae"].shape == (3, 3)
    for i, (seed, rate) in enumerate(zip([4, 5, 6], rates)):
        # The rate as an injected hyperparameter, not a constant: one program for the three.
        alone = fn.fit(
            NET, X, Y, loss="mse", optimizer=injected_sgd(rate), epochs=3, batch_size=8,
            key=seed, metrics=["mae"], verbose=0,
        )  # fmt: skip
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6),
            together.model(i).params,
            alone.params,
        )
        np.testing.assert_allclose(together.history["loss"][i], alone.history["loss"], rtol=2e-5)


def test_seeds_as_a_count_give_different_models():
    result = fn.fit_many(NET, X, Y, loss="mse", optimizer=optax.adam(1e-2), seeds=4, epochs=1)
    w = np.asarray(result.params[0]["w"])
    assert w.shape == (4, 2, 6) and not np.allclose(w[0], w[1])


def test_fit_many_errors():
    with pytest.raises(
        ValueError,
        match=r"^fit_many: hyperparams\['learning_rate'\] has 2 values but there are 3 models",
    ):
        fn.fit_many(NET, X, Y, loss="mse", optimizer=optax.sgd(0.1), seeds=3,
                    hyperparams={"learning_rate": [0.1, 0.2]})  # fmt: skip
    with pytest.raises(
        ValueError, match=r"^fit_many: the optimizer has no injected hyperparameter 'learning_rate'"
    ):
        fn.fit_many(NET, X, Y, loss="mse", optimizer=optax.sgd(0.1), seeds=2,
                    hyperparams={"learning_rate": [0.1, 0.2]})  # fmt: skip
    with pytest.raises(ValueError, match=r"^fit_many: seeds must name at least one model"):
        fn.fit_many(NET, X, Y, loss="mse", optimizer=optax.sgd(0.1), seeds=[])


def test_a_diverging_model_stops_alone_and_is_reported_like_fit_reports_it():
    sgd = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
    rates = [0.05, 3000.0]  # the second diverges to inf within a few steps
    args = {"loss": "mse", "epochs": 8, "batch_size": 8, "shuffle": False}
    many = fn.fit_many(
        NET, X, Y, optimizer=sgd, seeds=[1, 1], hyperparams={"learning_rate": rates}, **args
    )
    assert many.nonfinite[0] is None and isinstance(many.nonfinite[1], NonFinite)
    fine, diverged = (
        fn.fit(NET, X, Y, optimizer=injected_sgd(r), key=1, verbose=0, **args) for r in rates
    )
    # fit stops at the same step, keeping the same last finite params.
    assert many.nonfinite[1] == diverged.nonfinite and diverged.stop_reason.startswith(
        "TerminateOnNaN"
    )
    # (Loosely for the diverged one: its params reach 1e13, where vmap's rounding shows.)
    for i, (alone, rtol) in enumerate([(fine, 2e-5), (diverged, 1e-3)]):
        jax.tree.map(
            lambda a, b, rtol=rtol: np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-6),
            many.model(i).params,
            alone.params,
        )
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(many.params))
    # Its history ends where fit's does: NaN for the epochs it did not train in.
    stopped = diverged.nonfinite.epoch
    np.testing.assert_allclose(
        many.history["loss"][1, : stopped + 1], diverged.history["loss"], rtol=1e-3
    )
    assert np.all(np.isnan(many.history["loss"][1, stopped + 1 :]))
    assert np.all(np.isfinite(many.history["loss"][0]))


def test_skip_and_ignore_modes_per_model():
    sgd = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
    args = {"loss": "mse", "epochs": 8, "batch_size": 8, "seeds": [1, 1]}
    rates = {"learning_rate": [0.05, 50.0]}
    skipped = fn.fit_many(NET, X, Y, optimizer=sgd, hyperparams=rates, on_nonfinite="skip", **args)
    assert skipped.nonfinite[0] is None and skipped.nonfinite[1] is not None
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(skipped.params))
    ignored = fn.fit_many(
        NET, X, Y, optimizer=sgd, hyperparams=rates, on_nonfinite="ignore", **args
    )
    assert ignored.nonfinite == skipped.nonfinite
    assert not np.all(np.isfinite(ignored.params[0]["w"][1]))
    with pytest.raises(
        ValueError,
        match=r"^fit_many: on_nonfinite must be one of stop, skip, ignore, got 'pause'\.$",
    ):
        fn.fit_many(NET, X, Y, optimizer=sgd, on_nonfinite="pause", **args)
