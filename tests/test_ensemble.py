"""fit_many: many models at once equal the same models trained one by one."""

import jax
import numpy as np
import optax
import pytest

import funcnet as fn

RNG = np.random.default_rng(0)
X = RNG.normal(size=(30, 2)).astype(np.float32)
Y = (np.sin(X[:, :1]) + X[:, 1:] ** 2).astype(np.float32)
NET = fn.serial(fn.Dense(6, "tanh"), fn.Dense(1))


def test_models_trained_together_equal_models_trained_alone():
    sgd = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
    rates = [0.01, 0.05, 0.2]
    together = fn.fit_many(
        NET, X, Y, loss="mse", optimizer=sgd, seeds=[4, 5, 6],
        hyperparams={"learning_rate": rates}, epochs=3, batch_size=8, metrics=["mae"],
    )  # fmt: skip
    assert together.history["loss"].shape == (3, 3) and together.history["mae"].shape == (3, 3)
    for i, (seed, rate) in enumerate(zip([4, 5, 6], rates)):
        alone = fn.fit(
            NET, X, Y, loss="mse", optimizer=optax.sgd(rate), epochs=3, batch_size=8, key=seed,
            metrics=["mae"], verbose=0,
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
