"""Mixed precision: bfloat16 compute with float32 params, float16 with dynamic loss scaling."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import funcnet as fn

NET = fn.serial(fn.Dense(16, "tanh"), fn.Dense(1))
# A first scale of 2**24 overflows float16 (largest 65504) in the backward pass.
F16 = fn.MixedPrecision("float16", initial_scale=2.0**24)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    y = np.sin(x @ np.array([[1.0], [-2.0], [0.5]], np.float32))
    return x, y


OPT = optax.adam(1e-2)  # one object: fit's compiled programs are shared across tests


def fit(x, y, **kwargs):
    options = dict(loss="mse", optimizer=OPT, epochs=8, batch_size=16, shuffle=False, verbose=0)
    return fn.fit(NET, x, y, **{**options, **kwargs})


def train(x, y, mixed_precision, steps=24):
    """``steps`` Adam steps on 16-example batches: (losses, final train state, the step)."""
    ts = fn.init_train_state(NET, OPT, (None, 3), key=0, mixed_precision=mixed_precision)
    step = fn.make_train_step(NET, "mse", OPT, mixed_precision=mixed_precision)
    losses = []
    for i in range(steps):
        rows = slice(16 * (i % 4), 16 * (i % 4 + 1))
        ts, loss = step(ts, (x[rows], y[rows]))
        losses.append(float(loss))
    return losses, ts, step


def test_bfloat16_training_matches_float32_within_two_percent(data):
    full, full_ts, _ = train(*data, None)
    half, half_ts, step = train(*data, "mixed_bfloat16")
    assert full[-1] < 0.5 * full[0]  # it learned
    # The stated tolerance (docs/training.md): the losses within 2% (1e-3
    # absolute), the params within 0.03 after 24 Adam steps.
    np.testing.assert_allclose(half, full, rtol=0.02, atol=1e-3)
    for a, b in zip(jax.tree.leaves(half_ts.params), jax.tree.leaves(full_ts.params)):
        np.testing.assert_allclose(a, b, atol=0.03)
    assert half != full  # not float32 in disguise: the step computes in bfloat16
    assert "bf16[16,16]" in str(step.trace(half_ts, (data[0][:16], data[1][:16])).jaxpr)
    # The params, the optimizer state and the loss stay float32.
    leaves = jax.tree.leaves((half_ts.params, half_ts.opt_state))
    assert {a.dtype for a in leaves if jnp.issubdtype(a.dtype, jnp.floating)} == {
        jnp.dtype("float32")
    }
    assert half_ts.loss_scale is None  # bfloat16 needs no loss scaling


def test_float16_loss_scaling_skips_an_overflowing_step_and_halves_the_scale(data):
    x, y = jnp.asarray(data[0][:16]), jnp.asarray(data[1][:16])
    opt = optax.sgd(0.1)
    policy = F16._replace(dynamic_growth_steps=3)
    ts = fn.init_train_state(NET, opt, (None, 3), key=0, mixed_precision=policy)
    step = fn.make_train_step(NET, "mse", opt, donate=False, mixed_precision=policy)
    first, loss = step(ts, (x, y))
    assert np.isfinite(float(loss))
    assert float(first.loss_scale.scale) == 2.0**23
    assert int(first.step) == 0  # no update was applied...
    for a, b in zip(jax.tree.leaves(first.params), jax.tree.leaves(ts.params)):
        np.testing.assert_array_equal(a, b)  # ...and the params are unchanged
    # Training continues: the scale falls until the gradients fit, then updates apply.
    losses, current = [], first
    for _ in range(16):
        current, loss = step(current, (x, y))
        losses.append(float(loss))
    assert int(current.step) > 0
    assert float(current.loss_scale.scale) < 2.0**20
    assert losses[-1] < losses[0]
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(current.params))


def test_the_loss_scale_doubles_after_enough_good_steps(data):
    x, y = jnp.asarray(data[0][:16]), jnp.asarray(data[1][:16])
    opt = optax.sgd(0.01)
    policy = fn.MixedPrecision("float16", initial_scale=4.0, dynamic_growth_steps=2)
    ts = fn.init_train_state(NET, opt, (None, 3), key=0, mixed_precision=policy)
    step = fn.make_train_step(NET, "mse", opt, mixed_precision=policy)
    scales = []
    for _ in range(4):
        ts, _ = step(ts, (x, y))
        scales.append(float(ts.loss_scale.scale))
    assert scales == [4.0, 8.0, 8.0, 16.0]
    assert int(ts.step) == 4


def test_fit_in_float16_survives_overflow_steps_without_tripping_the_guard(data):
    result = fit(*data, mixed_precision=F16)  # on_nonfinite="stop", the default
    assert result.nonfinite is None and result.stop_reason is None
    assert len(result.history["loss"]) == 8
    assert result.history["loss"][-1] < 0.5 * result.history["loss"][0]
    assert float(result.train_state.loss_scale.scale) < 2.0**24
    assert int(result.train_state.step) < 8 * 4  # the overflow steps applied no update


def test_a_non_finite_loss_is_still_reported_under_loss_scaling(data):
    x, y = data[0].copy(), data[1]
    x[20] = np.nan
    result = fit(x, y, mixed_precision=F16)
    assert result.nonfinite == fn.callbacks.NonFinite(epoch=0, step=1, what="loss")


def test_the_loss_scale_is_saved_and_loaded_with_the_train_state(tmp_path):
    opt = optax.sgd(0.1)
    ts = fn.init_train_state(NET, opt, (None, 3), key=0, mixed_precision="mixed_float16")
    ts = ts._replace(loss_scale=fn.LossScale(jnp.float32(512.0), jnp.int32(7)))
    fn.save(tmp_path / "run.safetensors", ts)
    like = fn.init_train_state(NET, opt, (None, 3), key=1, mixed_precision="mixed_float16")
    loaded = fn.load(tmp_path / "run.safetensors", like)
    assert float(loaded.loss_scale.scale) == 512.0 and int(loaded.loss_scale.good_steps) == 7


def test_policy_names_and_errors():
    assert fn.MixedPrecision.from_name("mixed_float16").loss_scale == "dynamic"
    assert fn.MixedPrecision.from_name("mixed_bfloat16").loss_scale is None
    assert fn.init_train_state(NET, "sgd", (None, 3), mixed_precision="float32").loss_scale is None
    with pytest.raises(
        ValueError, match=r'fit: mixed_precision must be one of .*did you mean "mixed_bfloat16"'
    ):
        fn.fit(
            NET,
            np.ones((4, 3)),
            np.ones((4, 1)),
            loss="mse",
            optimizer="sgd",
            mixed_precision="bfloat16",
        )
    with pytest.raises(
        ValueError, match=r"make_train_step: MixedPrecision\(compute=...\) must be one of"
    ):
        fn.make_train_step(NET, "mse", "sgd", mixed_precision=fn.MixedPrecision("int8"))
    with pytest.raises(TypeError, match="init_train_state: mixed_precision must be a policy name"):
        fn.init_train_state(NET, "sgd", (None, 3), mixed_precision=16)
    plain = fn.init_train_state(NET, "sgd", (None, 3))
    with pytest.raises(ValueError, match=r"train_state\.loss_scale is None"):
        fn.fit(NET, np.ones((4, 3)), np.ones((4, 1)), loss="mse", optimizer="sgd", train_state=plain, mixed_precision="mixed_float16")  # fmt: skip


def test_the_policy_and_the_loss_scale_follow_jmp(data):
    jmp = pytest.importorskip("jmp", reason="jmp (DeepMind's mixed precision) is in the test extra")
    x, y = jnp.asarray(data[0][:16]), jnp.asarray(data[1][:16])
    # The gradients of one step equal a hand-written step under jmp's policy.
    opt = optax.sgd(1.0)
    ts = fn.init_train_state(NET, opt, (None, 3), key=0, mixed_precision="mixed_bfloat16")
    new, _ = fn.make_train_step(NET, "mse", opt, donate=False, mixed_precision="mixed_bfloat16")(
        ts, (x, y)
    )
    policy = jmp.get_policy("params=float32,compute=bfloat16,output=float32")

    def loss(params):
        out, _ = NET.apply(policy.cast_to_compute(params), ts.state, policy.cast_to_compute(x))
        return jnp.mean((policy.cast_to_output(out) - y) ** 2)

    grads = jax.jit(jax.grad(loss))(ts.params)
    for g, before, after in zip(*map(jax.tree.leaves, (grads, ts.params, new.params))):
        np.testing.assert_allclose(before - after, g, rtol=1e-6, atol=1e-7)
    # The dynamic loss scale moves as jmp's DynamicLossScale does.
    ours = fn.MixedPrecision("float16", initial_scale=8.0, dynamic_growth_steps=3)
    state, theirs = ours.initial_loss_scale(), jmp.DynamicLossScale(jnp.float32(8.0), period=3)
    for finite in [True, True, True, False, True, False, False, False, False, True, True, True]:
        state = ours.adjust(state, jnp.bool_(finite))
        theirs = theirs.adjust(jnp.bool_(finite))
        assert float(state.scale) == float(theirs.loss_scale)
        assert int(state.good_steps) == int(theirs.counter)
