"""Rematerialisation: fn.remat and repeat(..., remat=...) change memory, not values."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import funcnet as fn

BLOCK = fn.serial(fn.Dense(16, "tanh"), fn.Dropout(0.25), fn.Dense(16, "tanh"))


def loss_and_grads(net, params, state, x, key):
    def loss(params):
        y, _ = net.apply(params, state, x, key=key, train=True)
        return jnp.mean(y**2)

    return jax.jit(jax.value_and_grad(loss))(params)  # one compile, not one per operation


@pytest.fixture(scope="module")
def x():
    return jax.random.normal(jax.random.key(1), (8, 16))


@pytest.mark.parametrize("policy", [None, pytest.param("dots_saveable", marks=pytest.mark.slow)])
def test_remat_gives_the_same_loss_and_gradients(x, policy):
    _, params, state = BLOCK.init(jax.random.key(0), (None, 16))
    key = jax.random.key(2)  # dropout: the recomputation draws the same mask
    expected = loss_and_grads(BLOCK, params, state, x, key)
    got = loss_and_grads(fn.remat(BLOCK, policy), params, state, x, key)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # The recomputation is really there: the gradient's program holds a remat.
    grad_program = jax.make_jaxpr(jax.grad(lambda p: fn.remat(BLOCK).apply(p, state, x)[0].sum()))
    assert "remat" in str(grad_program(params)) or "checkpoint" in str(grad_program(params))


def test_repeat_with_remat_gives_the_same_loss_and_gradients(x):
    plain = fn.repeat(BLOCK, 2)
    _, params, state = plain.init(jax.random.key(0), (None, 16))
    key = jax.random.key(3)
    expected = loss_and_grads(plain, params, state, x, key)
    got = loss_and_grads(fn.repeat(BLOCK, 2, remat=True), params, state, x, key)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def compiled_temp_bytes(net, width=64, batch=64):
    """XLA's scratch memory for the compiled train step (deterministic, not a timing)."""
    opt = optax.sgd(0.1)
    ts = fn.init_train_state(net, opt, (None, width), key=0)
    step = fn.make_train_step(net, "mse", opt)
    x = jax.ShapeDtypeStruct((batch, width), jnp.float32)
    return step.lower(ts, (x, x)).compile().memory_analysis().temp_size_in_bytes


def test_remat_lowers_the_compiled_train_steps_memory_for_a_deep_stack():
    block = fn.serial(fn.Dense(64, "tanh"), fn.Dense(64, "tanh"), fn.Dense(64, "tanh"))
    plain = compiled_temp_bytes(fn.repeat(block, 16))
    remat = compiled_temp_bytes(fn.repeat(block, 16, remat=True))
    # Without remat the step keeps 16 x 6 activations of [64, 64]; with it,
    # 16 block inputs and one block's activations at a time.
    assert remat < 0.6 * plain, (remat, plain)


def test_remat_keeps_params_state_and_summary_paths():
    net = fn.remat(fn.serial(fn.Dense(4), fn.BatchNorm()))
    _, params, state = net.init(jax.random.key(0), (None, 3))
    _, plain_params, plain_state = fn.serial(fn.Dense(4), fn.BatchNorm()).init(
        jax.random.key(0), (None, 3)
    )
    assert jax.tree.structure(params) == jax.tree.structure(plain_params)
    assert jax.tree.structure(state) == jax.tree.structure(plain_state)
    y, new_state = net.apply(params, state, jnp.ones((2, 3)), train=True)
    assert y.shape == (2, 4) and jax.tree.structure(new_state) == jax.tree.structure(state)
    with pytest.raises(fn.LayerError, match=r"remat\.serial\[0\]\.Dense"):
        net.init(jax.random.key(0), (None,))


def test_remat_policy_errors():
    with pytest.raises(
        ValueError,
        match=r"remat: policy must be None, one of 'nothing_saveable'.* Did you mean 'dots_saveable'\?",
    ):
        fn.remat(fn.Dense(2), "dots_savable")
    with pytest.raises(ValueError, match=r"save_only_these_names makes a policy: call it"):
        fn.remat(fn.Dense(2), "save_only_these_names")
    with pytest.raises(TypeError, match="repeat: remat must be False, True, a name"):
        fn.repeat(fn.Dense(2), 2, remat=3)
