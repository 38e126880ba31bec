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
import optax
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

        # One compiled program: eagerly, each of Keras's ops would compile on its own.
        return want, np.asarray(jax.jit(jax.grad(loss))(jnp.asarray(x))), w


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


# --------------------------------------------------------------------------
# Keras models converted by fn.from_keras


def keras_predict(model, x):
    with jax.numpy_rank_promotion("allow"):
        return model.predict(x, verbose=0)


def build(inputs, outputs, name):
    with jax.numpy_rank_promotion("allow"):
        model = keras.Model(inputs, outputs, name=name)
        return randomize(model)


@pytest.fixture(scope="module", params=[False, True], ids=["bidirectional", "causal"])
def padded_attention(request):
    """Embedding(mask_zero=True) -> self-attention -> the sequence (with fully masked rows)."""
    with jax.numpy_rank_promotion("allow"):
        tokens = keras.Input((6,), dtype="int32")
        x = L.Embedding(12, 8, mask_zero=True)(tokens)
        y = L.MultiHeadAttention(2, 4, name="attention")(x, x, use_causal_mask=request.param)
    model = build(tokens, y, "padded_attention")
    return model, fn.from_keras(model)


def test_padded_self_attention_equals_keras_with_fully_masked_rows(padded_attention):
    model, (net, params, state) = padded_attention
    got = fn.predict(net, params, state, IDS)
    np.testing.assert_allclose(got, keras_predict(model, IDS), **TOL)
    # A sequence alone, unpadded, gives the same real positions: padding is invisible.
    alone = fn.predict(net, params, state, IDS[1:2, :4])
    np.testing.assert_allclose(alone, np.asarray(got)[1:2, :4], **TOL)


@pytest.fixture(scope="module", params=[False, True], ids=["bidirectional", "causal"])
def pooled_classifier(request):
    """Embedding(mask_zero=True) -> self-attention -> masked mean -> Dense."""
    with jax.numpy_rank_promotion("allow"):
        tokens = keras.Input((6,), dtype="int32")
        x = L.Embedding(12, 8, mask_zero=True)(tokens)
        h = L.MultiHeadAttention(2, 4)(x, x, use_causal_mask=request.param)
        y = L.Dense(1, activation="sigmoid")(L.GlobalAveragePooling1D()(h))
    model = build(tokens, y, "pooled_classifier")
    return model, fn.from_keras(model)


def test_pooled_classifier_predicts_as_keras_jitted_or_not(pooled_classifier):
    model, (net, params, state) = pooled_classifier
    ids = IDS[:3]  # lengths 6, 4, 1: Keras's masked mean of an empty sequence is NaN
    want = keras_predict(model, ids)
    np.testing.assert_allclose(fn.predict(net, params, state, ids), want, **TOL)
    eager, _ = net.apply(params, state, jnp.asarray(ids))
    np.testing.assert_allclose(eager, want, **TOL)


@pytest.mark.slow  # two fn.fit compilations: about 25 s each on a loaded 2-core machine
def test_pooled_classifier_fine_tunes(pooled_classifier):
    _, (net, params, state) = pooled_classifier
    ids = np.random.default_rng(4).integers(1, 12, size=(16, 6)).astype(np.int32)
    ids = ids * (np.arange(6)[None] < np.arange(16)[:, None] % 6 + 1)
    y = (np.arange(16) % 2).astype(np.float32)[:, None]
    opt = optax.adam(1e-2)
    params, state = jax.tree.map(jnp.array, (params, state))  # fit donates: copies
    start = fn.TrainState(
        params, state, opt.init(params), jnp.zeros((), jnp.int32), jax.random.key(0)
    )
    result = fn.fit(
        net,
        ids,
        y,
        loss="binary_crossentropy",
        optimizer=opt,
        epochs=5,
        batch_size=8,
        train_state=start,
        verbose=0,
    )
    assert result.history["loss"][-1] < result.history["loss"][0]


def test_explicit_attention_mask_input_and_attention_axes_convert():
    with jax.numpy_rank_promotion("allow"):
        q, mask = keras.Input((5, 4)), keras.Input((5, 5), dtype="bool")
        seq = L.MultiHeadAttention(2, 3)(q, q, attention_mask=mask, use_causal_mask=True)
        image = keras.Input((3, 4, 5))
        rows = L.MultiHeadAttention(2, 3, attention_axes=(2,))(image, image)
    masked_model = build([q, mask], seq, "with_attention_mask")
    image_model = build(image, rows, "rows")
    x, m = normal(3, 5, 4), np.random.default_rng(5).random((3, 5, 5)) > 0.5
    net, params, state = fn.from_keras(masked_model)
    got = fn.predict(net, params, state, (x, m))  # the mask is the model's second input
    np.testing.assert_allclose(got, keras_predict(masked_model, [x, m]), **TOL)
    image_x = normal(2, 3, 4, 5)
    net, params, state = fn.from_keras(image_model)
    got = fn.predict(net, params, state, image_x)
    np.testing.assert_allclose(got, keras_predict(image_model, image_x), **TOL)


# --------------------------------------------------------------------------
# Bad inputs: the messages are pinned here and in docs/errors.md


def test_bad_attention_axes_and_masks_are_named_with_the_fix():
    key = jax.random.key(0)
    with pytest.raises(
        TypeError, match=r"^MultiHeadAttention: attention_axes must be None, an int"
    ):
        fn.MultiHeadAttention(2, 4, attention_axes="rows")
    with pytest.raises(ValueError, match=r"^MultiHeadAttention: decode=True takes the new tokens"):
        fn.MultiHeadAttention(2, 4, causal=True, decode=True, masked=True)
    with pytest.raises(
        fn.LayerValueError,
        match=r"attention_axes=\(3,\) must name distinct axes among 1\.\.2 of the rank-4 query",
    ):
        fn.MultiHeadAttention(2, 4, attention_axes=(3,)).init(key, (None, 6, 6, 3))
    with pytest.raises(
        fn.LayerValueError,
        match=r"causal=True works over the sequence axis .* axes \(1, 2\) of a rank-4 query",
    ):
        fn.MultiHeadAttention(2, 4, causal=True).init(key, (None, 6, 6, 3))
    with pytest.raises(
        fn.LayerValueError,
        match=r"expected the query's padding mask of shape \[batch, T\] = \(None, 5\), got \(None, 6\)",
    ):
        fn.MultiHeadAttention(2, 4, masked=True).init(key, ((None, 5, 8), (None, 6)))
    with pytest.raises(
        fn.LayerValueError,
        match=r"A padding mask \(x, mask\) needs MultiHeadAttention\(\.\.\., masked=True\)",
    ):
        fn.MultiHeadAttention(2, 4).init(key, ((None, 5, 8), (None, 5)))
    with pytest.raises(
        fn.LayerValueError,
        match=r"with masked=True the query must be an array or an \(array, padding",
    ):
        fn.MultiHeadAttention(2, 4, masked=True).init(key, (((None, 5, 8),) * 3, (None, 5, 8)))
    with pytest.raises(fn.LayerValueError, match=r"expected the key of the query's rank 3"):
        fn.MultiHeadAttention(2, 4).init(key, ((None, 5, 8), (None, 4, 4, 8)))
    with pytest.raises(fn.LayerValueError, match=r"must share the batch and the axes not attended"):
        fn.MultiHeadAttention(2, 4, attention_axes=(2,)).init(
            key, ((None, 3, 5, 8), (None, 4, 4, 8))
        )
    with pytest.raises(
        fn.LayerValueError, match=r"^GlobalAvgPool: built with masked=True, expected \(x, mask\)"
    ):
        fn.GlobalAvgPool(masked=True).init(key, (None, 5, 8))
    with pytest.raises(fn.LayerValueError, match=r"masked=True averages sequences \[batch, T"):
        fn.GlobalAvgPool(masked=True).init(key, ((None, 5, 4, 8), (None, 5)))
    mha = fn.MultiHeadAttention(2, 4, masked=True)
    _, params, _ = mha.init(key, ((None, 5, 8), (None, 5)))
    with pytest.raises(
        fn.LayerTypeError, match=r"boolean padding mask for the query .* got dtype float32"
    ):
        mha.apply(params, {}, (jnp.ones((1, 5, 8)), jnp.ones((1, 5))))


def test_a_causal_mask_over_other_axes_is_refused_by_from_keras():
    with jax.numpy_rank_promotion("allow"):
        image = keras.Input((3, 4, 5))
        rows = L.MultiHeadAttention(2, 3, attention_axes=(2,), name="rows")
        model = keras.Model(image, rows(image, image, use_causal_mask=True))
    with pytest.raises(
        ValueError,
        match=r"^from_keras: layer 'rows' \(MultiHeadAttention\): use_causal_mask=True with "
        r"attention over axes \(2,\) of a rank-4 query is not supported\. .* attention_mask",
    ):
        fn.from_keras(model)


@pytest.fixture(scope="module")
def padded_encoder():
    """A small Transformer encoder over padded token sequences, as written in Keras."""
    with jax.numpy_rank_promotion("allow"):
        tokens = keras.Input((6,), dtype="int32")
        x = L.Embedding(12, 8, mask_zero=True)(tokens)
        h = L.LayerNormalization()(L.Add()([x, L.MultiHeadAttention(2, 4)(x, x)]))
        ffn = L.Dense(8)(L.Dropout(0.1)(L.Dense(16, activation="relu")(h)))
        h = L.LayerNormalization()(L.Add()([h, ffn]))
        y = L.Dense(1, activation="sigmoid")(L.GlobalAveragePooling1D()(h))
    model = build(tokens, y, "padded_encoder")
    return model, fn.from_keras(model)


def test_padded_transformer_encoder_predicts_as_keras(padded_encoder):
    model, (net, params, state) = padded_encoder
    got = fn.predict(net, params, state, IDS[:3])
    np.testing.assert_allclose(got, keras_predict(model, IDS[:3]), **TOL)
    alone = fn.predict(net, params, state, IDS[1:2, :4])  # padding changes nothing
    np.testing.assert_allclose(alone, np.asarray(got)[1:2], **TOL)


def test_cross_attention_between_two_padded_sequences_predicts_as_keras():
    # Keras's query_mask from the queries' padding, value_mask (and key_mask) from the values'.
    with jax.numpy_rank_promotion("allow"):
        q_ids, v_ids = keras.Input((6,), dtype="int32"), keras.Input((5,), dtype="int32")
        q = L.Embedding(12, 8, mask_zero=True)(q_ids)
        v = L.Embedding(12, 6, mask_zero=True)(v_ids)
        y = L.MultiHeadAttention(2, 4)(q, v, key=v)
    model = build([q_ids, v_ids], y, "cross")
    values = np.flip(IDS[:, :5], axis=0).copy()  # 0, 1, 4 and 5 real values
    net, params, state = fn.from_keras(model)
    got = fn.predict(net, params, state, (IDS, values))
    np.testing.assert_allclose(got, keras_predict(model, [IDS, values]), **TOL)
