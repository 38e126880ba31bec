"""Recurrent dropout and go_backwards on SimpleRNN, LSTM and GRU, checked against Keras.

Keras's masks come from its own random stream, so training is compared by
structure: each test builds weights that make a mask visible in the output
(identity kernels, linear activations) and reads the same structure off
Keras's layer and funcnet's. Inference and go_backwards are compared value by
value.
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

keras = pytest.importorskip("keras", minversion="3.0", reason="Keras 3 is the reference")
if keras.backend.backend() != "jax":
    pytest.skip(
        "Keras was imported on another backend; set KERAS_BACKEND=jax", allow_module_level=True
    )

L = keras.layers
TOL = {"rtol": 1e-5, "atol": 1e-5}
X = np.random.default_rng(0).normal(size=(3, 5, 4)).astype(np.float32)
MASK = np.arange(5)[None] < np.array([5, 3, 1])[:, None]  # right-padded [batch, time]
KINDS = ("SimpleRNN", "LSTM", "GRU")


def keras_call(layer, x, **kwargs):
    with jax.numpy_rank_promotion("allow"):  # Keras's own code broadcasts
        return np.asarray(layer(x, **kwargs))


def params_of(keras_layer):
    return dict(zip(("w", "u", "b"), keras_layer.get_weights()))


# ---------------------------------------------------------------------------
# Inference and go_backwards: value for value


@pytest.mark.parametrize("kind", [pytest.param("SimpleRNN", marks=pytest.mark.slow), "LSTM", "GRU"])
def test_go_backwards_and_inference_with_dropout_equal_keras(kind):
    # Dropout rates are set on both sides: in inference they change nothing.
    rates = {"dropout": 0.3, "recurrent_dropout": 0.4}
    cases = [(r, m) for r in (True, False) for m in (False, True)]
    keras_layers = {}
    for return_sequences in (True, False):
        k = getattr(L, kind)(6, return_sequences=return_sequences, go_backwards=True, **rates)
        with jax.numpy_rank_promotion("allow"):  # Keras's initializers broadcast
            k.build(X.shape)
        keras_layers[return_sequences] = k

    @jax.jit  # all eight calls in one compiled program
    def outputs(x, mask):
        results = {}
        for return_sequences, masked in cases:
            k = keras_layers[return_sequences]
            want = k(x, mask=mask if masked else None)
            net = getattr(fn, kind)(
                6, return_sequences=return_sequences, go_backwards=True, masked=masked, **rates
            )
            y, _ = net.apply(params_of(k), {}, (x, mask) if masked else x)
            results[return_sequences, masked] = (y, want)
        return results

    with jax.numpy_rank_promotion("allow"):  # Keras's own code broadcasts
        results = outputs(X, MASK)
    for return_sequences, masked in cases:
        y, want = results[return_sequences, masked]
        if masked and return_sequences:
            y, mask = y  # Keras passes the mask on as it came in
            np.testing.assert_array_equal(mask, MASK)
        np.testing.assert_allclose(y, want, **TOL, err_msg=f"{return_sequences=} {masked=}")


def test_inference_and_rate_zero_are_bit_identical_to_no_dropout():
    plain = fn.LSTM(5, return_sequences=True)
    _, params, state = plain.init(jax.random.key(0), (None, 5, 4))
    want, _ = plain.apply(params, state, X)
    dropped = fn.LSTM(5, return_sequences=True, dropout=0.5, recurrent_dropout=0.5)
    np.testing.assert_array_equal(dropped.apply(params, state, X)[0], want)
    np.testing.assert_array_equal(dropped.apply(params, state, X, key=3)[0], want)
    zero = fn.LSTM(5, return_sequences=True, dropout=0.0)  # train=True needs no key at rate 0
    np.testing.assert_array_equal(zero.apply(params, state, X, train=True)[0], want)


# ---------------------------------------------------------------------------
# Training: the structure of Keras's masks


def trained(net, params, x, key):
    """funcnet's training-mode output, jitted: one program, not one per eager op."""
    return jax.jit(lambda params, x: net.apply(params, {}, x, train=True, key=key)[0])(params, x)


def _identity_rnn(kind_of_dropout, rate, features=4):
    """SimpleRNN weights that show a mask: linear, w = I, u = I, no bias."""
    kwargs = {kind_of_dropout: rate, "use_bias": False, "return_sequences": True}
    k = L.SimpleRNN(features, activation=None, seed=0, **kwargs)  # seeded: a fixed draw
    keras_call(k, np.zeros((1, 3, features), np.float32))
    eye = np.eye(features, dtype=np.float32)
    k.set_weights([eye, eye])
    return k, fn.SimpleRNN(features, None, **kwargs), {"w": eye, "u": eye}


def _impulse(batch, time, features):
    """Ones at the first step, zeros after: with u = I, step t shows the recurrent mask^t."""
    x = np.zeros((batch, time, features), np.float32)
    x[:, 0] = 1
    return x


def test_one_input_mask_per_sequence_with_the_dropout_scale_as_keras():
    rate, scale = 0.4, 1 / (1 - 0.4)
    k, net, params = _identity_rnn("dropout", rate)
    k.set_weights([params["w"], np.zeros_like(params["u"])])
    params = {**params, "u": jnp.zeros((4, 4))}  # h_t = x_t * mask: the input mask itself
    x = np.ones((500, 3, 4), np.float32)
    ours = trained(net, params, x, key=0)
    theirs = keras_call(k, x, training=True)
    for y in (np.asarray(ours), theirs):
        # A unit dropped at one step is dropped at every step: one mask per sequence.
        np.testing.assert_array_equal(y[:, 1:], np.broadcast_to(y[:, :1], y[:, 1:].shape))
        assert np.all(np.isclose(y, 0.0) | np.isclose(y, scale))  # dropped, or scaled up
        assert abs((y[:, 0] > 0).mean() - (1 - rate)) < 0.04  # 2000 draws: 3.6 sigma
        assert abs(y.mean() - 1.0) < 0.07  # kept units scaled: the mean is kept (3.8 sigma)
        assert len({row.tobytes() for row in y[:, 0] > 0}) > 1  # each sequence its own mask


def test_one_recurrent_mask_per_sequence_as_keras():
    rate = 0.5
    k, net, params = _identity_rnn("recurrent_dropout", rate)
    x = _impulse(400, 4, 4)  # h_0 = 1, then h_t = h_{t-1} * mask = mask^t
    ours = trained(net, params, x, key=1)
    theirs = keras_call(k, x, training=True)
    for y in (np.asarray(ours), theirs):
        np.testing.assert_array_equal(y[:, 0], 1.0)
        kept = y[:, 1] > 0
        for t in (2, 3):  # the same units stay dropped: the mask is reused at every step
            np.testing.assert_array_equal(y[:, t] > 0, kept)
            np.testing.assert_allclose(y[:, t][kept], 2.0**t, rtol=1e-6)
        assert abs(kept.mean() - (1 - rate)) < 0.05


def _kept_fraction_lstm(keras_layer_options, funcnet_options):
    """LSTM with linear gates, w = I per gate, u = 0, b = 0: h_1 = m_o * m_i * m_c on ones."""
    units = 4
    k = L.LSTM(units, activation=None, recurrent_activation=None, seed=0, **keras_layer_options)
    keras_call(k, np.zeros((1, 1, units), np.float32))
    w = np.tile(np.eye(units, dtype=np.float32), (1, 4))
    k.set_weights([w, np.zeros((units, 4 * units), np.float32), np.zeros(4 * units, np.float32)])
    net = fn.LSTM(units, None, None, **funcnet_options)
    x = np.ones((1000, 1, units), np.float32)
    ours = trained(net, params_of(k), x, key=2)
    theirs = keras_call(k, x, training=True)
    return (np.asarray(ours) != 0).mean(), (theirs != 0).mean()


def test_lstm_gates_share_one_input_mask_unless_recurrent_dropout_as_keras():
    rate = 0.5
    # One mask for all gates: a unit survives with 1 - rate.
    shared = _kept_fraction_lstm({"dropout": rate}, {"dropout": rate})
    # With recurrent dropout (Keras's implementation 1) each gate has its own mask:
    # the product of three survives with (1 - rate)^3.
    both = {"dropout": rate, "recurrent_dropout": 0.1}
    per_gate = _kept_fraction_lstm(both, both)
    for fractions, want in ((shared, 0.5), (per_gate, 0.125)):
        for got in fractions:  # funcnet's, then Keras's
            assert abs(got - want) < 0.04, (fractions, want)


# ---------------------------------------------------------------------------
# Training: a pure function of the key, differentiable, jittable


@pytest.fixture(scope="module")
def gru_dropout():
    net = fn.GRU(5, return_sequences=True, dropout=0.3, recurrent_dropout=0.3, go_backwards=True)
    _, params, state = net.init(jax.random.key(0), (None, 5, 4))
    return net, params, state


def test_training_follows_the_key_under_jit_and_gradients_flow(gru_dropout):
    net, params, state = gru_dropout

    def loss(params, key):
        y, _ = net.apply(params, state, X, train=True, key=key)
        return jnp.sum(y**2), y

    @jax.jit  # one compilation for all of it
    def run(params):
        (_, y), grads = jax.value_and_grad(loss, has_aux=True)(params, jax.random.key(7))
        other = net.apply(params, state, X, train=True, key=jax.random.key(8))[0]
        return y, grads, other, net.apply(params, state, X)[0]

    jitted, grads, other, inference = run(params)
    eager, _ = net.apply(params, state, X, train=True, key=7)
    np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-6)
    assert not np.allclose(other, eager)  # another key, other masks
    assert not np.allclose(inference, eager)
    for name, g in grads.items():
        assert np.isfinite(g).all() and np.abs(g).sum() > 0, name


# ---------------------------------------------------------------------------
# Errors


def test_training_without_a_key_names_the_layer():
    net = fn.serial(fn.LSTM(3, dropout=0.2, name="encoder"))
    _, params, state = net.init(0, (None, 5, 4))
    with pytest.raises(
        ValueError,
        match=r"serial\[0\]\.encoder: encoder with dropout=0\.2 and recurrent_dropout=0\.0 needs "
        r"a key when train=True: call net\.apply\(params, state, x, train=True, "
        r"key=jax\.random\.key\(0\)\)",
    ):
        net.apply(params, state, X, train=True)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"dropout": 1.0}, r"GRU: dropout is the fraction of the input units dropped while "
         r"training and must be a number in \[0, 1\), got 1\.0\. Pass e\.g\. dropout=0\.2"),
        ({"recurrent_dropout": -0.1}, r"GRU: recurrent_dropout is the fraction of the recurrent "
         r"state units dropped .* got -0\.1\."),
        ({"dropout": "0.2"}, r"GRU: dropout .* got '0\.2'\."),
    ],
)  # fmt: skip
def test_rates_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fn.GRU(3, **kwargs)


def test_go_backwards_must_be_a_flag():
    with pytest.raises(TypeError, match=r"SimpleRNN: go_backwards must be True or False, got 1"):
        fn.SimpleRNN(3, go_backwards=1)


# ---------------------------------------------------------------------------
# from_keras


@pytest.fixture(scope="module")
def keras_lstm_model():
    with jax.numpy_rank_promotion("allow"):
        model = keras.Sequential(
            [
                keras.Input((5, 4)),
                L.LSTM(6, dropout=0.2, recurrent_dropout=0.2, go_backwards=True, name="lstm"),
                L.Dense(1, name="head"),
            ]
        )
        want = np.asarray(model.predict(X, verbose=0))
    return model, want


def test_from_keras_converts_recurrent_dropout_and_go_backwards(keras_lstm_model):
    model, want = keras_lstm_model
    net, params, state = fn.from_keras(model)
    np.testing.assert_allclose(fn.predict(net, params, state, X), want, **TOL)
    # Training draws masks: the same params give other outputs than inference.
    train_y, _ = net.apply(params, state, X, train=True, key=0)
    assert not np.allclose(train_y, want)
    y = np.random.default_rng(1).normal(size=(3, 1)).astype(np.float32)
    opt = optax.adam(1e-2)
    params, state = jax.tree.map(jnp.array, (params, state))  # fit donates its buffers
    start = fn.TrainState(
        params, state, opt.init(params), jnp.zeros((), jnp.int32), jax.random.key(0)
    )
    result = fn.fit(net, X, y, loss="mse", optimizer=opt, epochs=8, batch_size=3,
                    train_state=start, verbose=0)  # fmt: skip
    losses = result.history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


def test_from_keras_refuses_per_gate_input_masks_it_would_not_draw():
    with jax.numpy_rank_promotion("allow"):
        model = keras.Sequential(
            [keras.Input((5, 4)), L.LSTM(3, dropout=0.2, implementation=1, name="lstm")]
        )
    with pytest.raises(
        ValueError,
        match=r"layer 'lstm' \(LSTM\): implementation=1 with dropout and no recurrent_dropout "
        r"is not supported\. Keras then draws one input mask per gate",
    ):
        fn.from_keras(model)


def test_from_keras_bidirectional_with_dropout_and_a_forward_layer_reading_backwards():
    # Keras's backward layer reverses the sequence itself (go_backwards=True);
    # funcnet's Bidirectional reverses it for its backward layer, so the
    # converter inverts go_backwards: also right for a forward layer given
    # go_backwards=True and a backward layer given False.
    with jax.numpy_rank_promotion("allow"):
        model = keras.Sequential(
            [
                keras.Input((5, 4)),
                L.Bidirectional(L.GRU(3, return_sequences=True, recurrent_dropout=0.3)),
                L.Bidirectional(
                    L.LSTM(2, go_backwards=True, dropout=0.2),
                    backward_layer=L.LSTM(2, dropout=0.2),
                ),
            ]
        )
        want = np.asarray(model.predict(X, verbose=0))
    net, params, state = fn.from_keras(model)
    np.testing.assert_allclose(fn.predict(net, params, state, X), want, **TOL)
