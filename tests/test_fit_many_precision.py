"""fit_many's mixed_precision= and accumulate=: each model equals fit with the same options."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import funcnet as fn

RNG = np.random.default_rng(0)
X = RNG.normal(size=(46, 3)).astype(np.float32)  # 46: batches of 16, 16, 14 (12 with k=4)
Y = np.sin(X @ np.array([[1.0], [-2.0], [0.5]], np.float32))
NET = fn.serial(fn.Dense(16, "tanh"), fn.Dense(1))
OPT = optax.adam(1e-2)  # one object: the compiled programs are shared across tests
SEEDS = [3, 7]
# A first scale of 2**20 overflows float16 (largest 65504) in the backward pass.
F16 = fn.MixedPrecision("float16", initial_scale=2.0**20, dynamic_growth_steps=4)
# Unshuffled: the permutation's sort is most of a small model's compile time,
# and tests/test_ensemble.py already checks the per-model shuffles.
ARGS = dict(loss="mse", optimizer=OPT, epochs=3, batch_size=16, metrics="mae", shuffle=False)


def fit_each(**options):
    """The models of ``fit_many(seeds=SEEDS, **options)``, each trained alone by ``fit``."""
    return [fn.fit(NET, X, Y, key=seed, verbose=0, **ARGS, **options) for seed in SEEDS]


def assert_each_equals_fit(many, alone, rtol=2e-5):
    """The tolerance of tests/test_ensemble.py: vmap only reorders float sums."""
    for i, run in enumerate(alone):
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-6),
            many.model(i).params,
            run.params,
        )
        for name in ("loss", "mae"):
            np.testing.assert_allclose(many.history[name][i], run.history[name], rtol=rtol)
        assert int(many.model(i).step) == int(run.train_state.step)


def test_accumulate_equals_fit_with_accumulate_for_each_model():
    many = fn.fit_many(NET, X, Y, seeds=SEEDS, accumulate=4, **ARGS)
    alone = fit_each(accumulate=4)
    assert_each_equals_fit(many, alone)
    # Updates, not micro-batches: 3 per epoch (the last batch of 14 trimmed to 12).
    assert np.asarray(many.train_state.step).tolist() == [9, 9]


@pytest.mark.slow  # the float16 case below runs the same cast path, plus the loss scale
def test_bfloat16_equals_fit_with_the_same_policy_for_each_model():
    many = fn.fit_many(NET, X, Y, seeds=SEEDS, mixed_precision="mixed_bfloat16", **ARGS)
    alone = fit_each(mixed_precision="mixed_bfloat16")
    # Equal to 2e-5, where bfloat16 and float32 differ by about 1e-2
    # (tests/test_mixed_precision.py): computed in bfloat16, with float32 params.
    assert_each_equals_fit(many, alone)
    assert {a.dtype for a in jax.tree.leaves(many.params)} == {jnp.dtype("float32")}
    assert many.train_state.loss_scale is None


def test_float16_loss_scaling_survives_overflow_steps_with_a_scale_per_model():
    many = fn.fit_many(NET, X, Y, seeds=SEEDS, mixed_precision=F16, **ARGS)
    alone = fit_each(mixed_precision=F16)
    assert many.nonfinite == (None, None)  # the absorbed overflows are not non-finite steps
    assert all(run.nonfinite is None and run.stop_reason is None for run in alone)
    assert_each_equals_fit(many, alone, rtol=1e-3)  # float16: rounding shows sooner
    scale = many.train_state.loss_scale
    assert scale.scale.shape == scale.good_steps.shape == (len(SEEDS),)
    for i, run in enumerate(alone):
        assert float(scale.scale[i]) == float(run.train_state.loss_scale.scale) < 2.0**20
        assert int(scale.good_steps[i]) == int(run.train_state.loss_scale.good_steps)
        # The overflow steps applied no update: fewer updates than batches.
        assert 0 < int(many.model(i).step) < 3 * 3
        assert many.history["loss"][i, -1] < many.history["loss"][i, 0]


def test_fit_many_checks_accumulate_and_mixed_precision():
    with pytest.raises(
        ValueError, match=r"^fit_many: accumulate must be a positive integer, got 0"
    ):
        fn.fit_many(NET, X, Y, loss="mse", optimizer=OPT, seeds=2, accumulate=0)
    with pytest.raises(
        ValueError,
        match=r"^fit_many: batch_size 10 cannot be split into accumulate=4: .* Use batch_size=8,",
    ):
        fn.fit_many(NET, X, Y, loss="mse", optimizer=OPT, seeds=2, batch_size=10, accumulate=4)
    with pytest.raises(
        ValueError,
        match=r"^fit_many: mixed_precision must be one of .*did you mean \"mixed_float16\"",
    ):
        fn.fit_many(NET, X, Y, loss="mse", optimizer=OPT, seeds=2, mixed_precision="float16")
