"""Sequence masks: padded batches of different lengths through the recurrent layers.

Checked against Keras itself: its layers called with ``mask=``, and a Keras
text classifier with ``Embedding(mask_zero=True)`` converted by ``fn.from_keras``.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # before Keras is first imported

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet as fn

keras = pytest.importorskip("keras", minversion="3.0", reason="Keras 3 is needed to compare masks")
if keras.backend.backend() != "jax":
    pytest.skip(
        "Keras was imported on another backend; set KERAS_BACKEND=jax", allow_module_level=True
    )

L = keras.layers
TOL = {"rtol": 1e-5, "atol": 1e-5}
LENGTHS = np.array([5, 3, 1])
MASK = np.arange(5)[None] < LENGTHS[:, None]  # right-padded: [batch, time]
X = np.random.default_rng(0).normal(size=(3, 5, 4)).astype(np.float32)


def built(keras_layer):
    with jax.numpy_rank_promotion("allow"):  # Keras's initializers broadcast
        keras_layer.build(X.shape)
    return keras_layer


@pytest.mark.parametrize(
    "keras_layer, funcnet_layer",
    [
        (lambda: L.LSTM(6, return_sequences=True), lambda: fn.LSTM(6, return_sequences=True, masked=True)),
        (lambda: L.GRU(6), lambda: fn.GRU(6, masked=True)),
        (lambda: L.SimpleRNN(6, return_sequences=True), lambda: fn.SimpleRNN(6, return_sequences=True, masked=True)),
    ],
)  # fmt: skip
def test_masked_steps_keep_the_carry_and_repeat_the_output_as_in_keras(keras_layer, funcnet_layer):
    k = built(keras_layer())
    net = funcnet_layer()
    shapes = {}

    @jax.jit  # Keras's call, funcnet's init and apply: one compiled program
    def both(x, mask):
        shapes["out"], _, state = net.init(jax.random.key(0), ((None, 5, 4), (None, 5)))
        params = dict(zip(("w", "u", "b"), k.get_weights()))
        return k(x, mask=mask), net.apply(params, state, (x, mask))[0]

    with jax.numpy_rank_promotion("allow"):
        want, y = both(X, MASK)
    if k.return_sequences:
        y, mask = y  # the mask goes on with the sequences
        assert shapes["out"] == ((None, 5, 6), (None, 5)) and np.array_equal(mask, MASK)
    np.testing.assert_allclose(y, want, **TOL)


def test_bidirectional_reads_each_sequence_backwards_within_its_length():
    k = built(L.Bidirectional(L.LSTM(6, return_sequences=True)))
    net = fn.Bidirectional(fn.LSTM(6, return_sequences=True, masked=True), masked=True)
    w = k.get_weights()
    params = {"forward": dict(zip("wub", w[:3])), "backward": dict(zip("wub", w[3:]))}

    @jax.jit  # Keras's call, funcnet's init and apply: one compiled program
    def both(x, mask):
        _, _, state = net.init(jax.random.key(0), ((None, 5, 4), (None, 5)))
        (y, _), _ = net.apply(params, state, (x, mask))
        return k(x, mask=mask), y

    with jax.numpy_rank_promotion("allow"):
        want, y = both(X, MASK)
    np.testing.assert_allclose(y, want, **TOL)
    assert np.all(np.asarray(y)[2, 1:] == 0)  # Keras's Bidirectional: zeros at padded steps


def test_masking_and_unmasked_layers_are_unchanged():
    (_x, mask), _ = fn.Masking(0.0).apply({}, {}, X * MASK[:, :, None])
    assert np.array_equal(mask, MASK)
    params = fn.LSTM(3).init(jax.random.key(0), (None, 5, 4))[1]
    plain, _ = fn.LSTM(3).apply(params, {}, X[:1])  # no mask: as before
    masked, _ = fn.LSTM(3, masked=True).apply(params, {}, (X[:1], jnp.ones((1, 5), bool)))
    np.testing.assert_allclose(plain, masked, **TOL)
    with pytest.raises(ValueError, match=r"LSTM.*masked=True, expected \(x, mask\).*fn.Masking"):
        fn.LSTM(3, masked=True).apply(params, {}, X)
    with pytest.raises(
        ValueError, match=r"^Bidirectional: built with masked=True, expected \(x, m"
    ):
        fn.Bidirectional(fn.LSTM(3, masked=True), masked=True).init(jax.random.key(0), (None, 5, 4))
    with pytest.raises(
        ValueError, match=r"^GRU: expected a mask of shape \[batch, time\] = \(None, 5\)"
    ):
        fn.GRU(3, masked=True).init(jax.random.key(0), ((None, 5, 4), (None, 6)))


@pytest.fixture(scope="module")
def text_classifier():
    keras.utils.set_random_seed(0)
    with jax.numpy_rank_promotion("allow"):  # Keras builds its layers with broadcasting
        model = keras.Sequential([
            keras.Input((7,), dtype="int32"),
            L.Embedding(20, 8, mask_zero=True),
            L.Bidirectional(L.LSTM(6, return_sequences=True)),
            L.LSTM(5),
            L.Dense(1, activation="sigmoid"),
        ])  # fmt: skip
    ids = np.random.default_rng(1).integers(1, 20, size=(4, 7)).astype(np.int32)
    ids = ids * (np.arange(7)[None] < np.array([7, 4, 2, 5])[:, None])  # padded with id 0
    return model, ids


def test_from_keras_lstm_text_classifier_with_mask_zero_predicts_as_keras(text_classifier):
    model, ids = text_classifier
    net, params, state = fn.from_keras(model)
    with jax.numpy_rank_promotion("allow"):
        want = model.predict(ids, verbose=0)
    np.testing.assert_allclose(fn.predict(net, params, state, ids), want, **TOL)
    alone = fn.predict(net, params, state, ids[1:2, :4])  # the length-4 sequence, unpadded
    np.testing.assert_allclose(alone, want[1:2], **TOL)


def test_from_keras_masking_layer_feeding_a_gru_predicts_as_keras():
    with jax.numpy_rank_promotion("allow"):
        model = keras.Sequential([keras.Input((5, 4)), L.Masking(0.0), L.GRU(3)])
        want = model.predict(X * MASK[:, :, None], verbose=0)
    net, params, state = fn.from_keras(model)
    np.testing.assert_allclose(fn.predict(net, params, state, X * MASK[:, :, None]), want, **TOL)


def test_from_keras_model_ending_in_a_masked_output_returns_the_tensor_alone():
    with jax.numpy_rank_promotion("allow"):
        model = keras.Sequential(
            [keras.Input((5, 4)), L.Masking(0.0), L.LSTM(3, return_sequences=True)]
        )
        want = model.predict(X * MASK[:, :, None], verbose=0)
    net, params, state = fn.from_keras(model)
    np.testing.assert_allclose(fn.predict(net, params, state, X * MASK[:, :, None]), want, **TOL)


def test_from_keras_names_a_layer_a_mask_cannot_reach():
    with jax.numpy_rank_promotion("allow"):
        model = keras.Sequential([keras.Input((7,), dtype="int32"),
                                  L.Embedding(20, 8, mask_zero=True), L.BatchNormalization(name="head")])  # fmt: skip
    with pytest.raises(
        ValueError, match=r"'head' \(BatchNormalization\): a sequence mask .* SimpleRNN, LSTM"
    ):
        fn.from_keras(model)
