"""SimpleRNN, LSTM, GRU, Bidirectional: known answers against numpy loops, carries, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet as fn

B, T, D, U = 2, 4, 3, 5


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def as_np(params):
    return {k: np.asarray(v, np.float64) for k, v in params.items()}


def np_simple_rnn(p, x, h, act=np.tanh):
    hs = []
    for t in range(x.shape[1]):
        h = act(x[:, t] @ p["w"] + h @ p["u"] + p["b"])
        hs.append(h)
    return np.stack(hs, axis=1), h


def np_lstm(p, x, h, c):
    """Keras's LSTM, gates in order i, f, c, o."""
    w, u, b = p["w"], p["u"], p["b"]
    n = u.shape[0]
    hs = []
    for t in range(x.shape[1]):
        z = x[:, t] @ w + h @ u + b
        i, f, g, o = z[:, :n], z[:, n : 2 * n], z[:, 2 * n : 3 * n], z[:, 3 * n :]
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        hs.append(h)
    return np.stack(hs, axis=1), h, c


def np_gru(p, x, h):
    """Keras's GRU with reset_after=True, gates in order z, r, h."""
    w, u, b_in, b_rec = p["w"], p["u"], p["b"][0], p["b"][1]
    n = u.shape[0]
    blocks = [slice(0, n), slice(n, 2 * n), slice(2 * n, 3 * n)]
    hs = []
    for t in range(x.shape[1]):
        xz, xr, xh = (x[:, t] @ w[:, s] + b_in[s] for s in blocks)
        hz, hr, hh = (h @ u[:, s] + b_rec[s] for s in blocks)
        z, r = sigmoid(xz + hz), sigmoid(xr + hr)
        h = z * h + (1 - z) * np.tanh(xh + r * hh)
        hs.append(h)
    return np.stack(hs, axis=1), h


# Test data comes from numpy's generator: eager jax.random would compile once per shape.
def normal(seed, shape):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def build(layer, shape=(None, T, D), seed=1):
    """Init, then random biases too, so the references check every param."""
    _, params, state = layer.init(jax.random.key(0), shape)
    params = {k: 0.5 * normal(seed + i, v.shape) for i, (k, v) in enumerate(sorted(params.items()))}
    return params, state


def close(a, b):
    np.testing.assert_allclose(np.asarray(a), b, rtol=1e-5, atol=1e-5)


X = normal(7, (B, T, D))
ZEROS = np.zeros((B, U))


# ----------------------------------------------------------------------------- known answers


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_simple_rnn_matches_numpy(activation):
    rnn = fn.SimpleRNN(U, activation, return_sequences=True)
    params, state = build(rnn)
    y, _ = rnn.apply(params, state, X)
    act = np.tanh if activation == "tanh" else (lambda z: np.maximum(z, 0))
    close(y, np_simple_rnn(as_np(params), np.asarray(X, np.float64), ZEROS, act)[0])
    last, _ = fn.SimpleRNN(U, activation).apply(params, state, X)
    close(last, np_simple_rnn(as_np(params), np.asarray(X, np.float64), ZEROS, act)[1])


def test_lstm_matches_numpy_with_initial_carry_and_state():
    lstm = fn.LSTM(U, return_sequences=True, return_state=True)
    params, state = build(lstm, ((None, T, D), ((None, U), (None, U))))
    h0, c0 = normal(8, (B, U)), normal(9, (B, U))
    (ys, (h, c)), _ = lstm.apply(params, state, (X, (h0, c0)))
    ref_ys, ref_h, ref_c = np_lstm(
        as_np(params), np.asarray(X, np.float64), np.asarray(h0), np.asarray(c0)
    )
    close(ys, ref_ys)
    close(h, ref_h)
    close(c, ref_c)
    last, _ = fn.LSTM(U).apply(params, state, X)
    close(last, np_lstm(as_np(params), np.asarray(X, np.float64), ZEROS, ZEROS)[1])


def test_gru_matches_numpy_with_initial_carry_and_state():
    gru = fn.GRU(U, return_sequences=True, return_state=True)
    params, state = build(gru, ((None, T, D), (None, U)))
    h0 = normal(8, (B, U))
    (ys, h), _ = gru.apply(params, state, (X, h0))
    ref_ys, ref_h = np_gru(as_np(params), np.asarray(X, np.float64), np.asarray(h0))
    close(ys, ref_ys)
    close(h, ref_h)
    last, _ = fn.GRU(U).apply(params, state, X)
    close(last, np_gru(as_np(params), np.asarray(X, np.float64), ZEROS)[1])


def test_returned_state_continues_the_sequence():
    lstm = fn.LSTM(U, return_sequences=True, return_state=True)
    params, state = build(lstm)
    (whole, _), _ = lstm.apply(params, state, X)
    (first, carry), _ = lstm.apply(params, state, X[:, :2])
    (second, _), _ = lstm.apply(params, state, (X[:, 2:], carry))
    close(jnp.concatenate([first, second], axis=1), np.asarray(whole))


def test_no_bias_and_unknown_time_dimension():
    gru = fn.GRU(U, use_bias=False, return_sequences=True)
    out_shape, params, _ = gru.init(jax.random.key(0), (None, None, D))
    assert out_shape == (None, None, U) and sorted(params) == ["u", "w"]
    y, _ = gru.apply(params, {}, X)
    p = as_np(params) | {"b": np.zeros((2, 3 * U))}
    close(y, np_gru(p, np.asarray(X, np.float64), ZEROS)[0])


def test_keras_initialisation():
    _, params, _ = fn.LSTM(U).init(jax.random.key(0), (None, T, D))
    b = np.asarray(params["b"])
    np.testing.assert_array_equal(b, np.r_[np.zeros(U), np.ones(U), np.zeros(2 * U)])
    u = np.asarray(params["u"])  # [U, 4U]: orthonormal rows
    np.testing.assert_allclose(u @ u.T, np.eye(U), atol=1e-5)
    limit = np.sqrt(6 / (D + 4 * U))
    assert np.abs(params["w"]).max() <= limit
    _, params, _ = fn.LSTM(U, unit_forget_bias=False).init(jax.random.key(0), (None, T, D))
    assert not np.any(params["b"])
    _, params, _ = fn.GRU(U).init(jax.random.key(0), (None, T, D))
    assert params["b"].shape == (2, 3 * U) and not np.any(params["b"])
    _, params, _ = fn.SimpleRNN(U).init(jax.random.key(0), (None, T, D))
    np.testing.assert_allclose(params["u"] @ params["u"].T, np.eye(U), atol=1e-5)


def test_bfloat16_keeps_dtype_and_stays_close():
    lstm = fn.LSTM(U, return_sequences=True)
    params, state = build(lstm)
    y32, _ = lstm.apply(params, state, X)
    y16, _ = lstm.apply(params, state, X.astype(jnp.bfloat16))
    assert y16.dtype == jnp.bfloat16
    np.testing.assert_allclose(y16.astype(jnp.float32), y32, atol=0.05)


# ----------------------------------------------------------------------------- Bidirectional


@pytest.mark.parametrize(
    ("merge", "combine"),
    [
        ("concat", lambda f, b: np.concatenate([f, b], axis=-1)),
        ("sum", lambda f, b: f + b),
        ("mul", lambda f, b: f * b),
        ("ave", lambda f, b: (f + b) / 2),
        (None, lambda f, b: (f, b)),
    ],
)
def test_bidirectional_sequences_match_forward_and_reversed_backward(merge, combine):
    net = fn.Bidirectional(fn.GRU(U, return_sequences=True), merge)
    out_shape, params, state = net.init(jax.random.key(0), (None, T, D))
    assert state == {"forward": {}, "backward": {}}
    expected_shape = {"concat": (None, T, 2 * U), None: ((None, T, U), (None, T, U))}
    assert out_shape == expected_shape.get(merge, (None, T, U))
    y, _ = net.apply(params, state, X)
    x = np.asarray(X, np.float64)
    fwd = np_gru(as_np(params["forward"]), x, ZEROS)[0]
    bwd = np_gru(as_np(params["backward"]), x[:, ::-1], ZEROS)[0][:, ::-1]
    jax.tree.map(close, y, combine(fwd, bwd))
    # The two directions are initialised independently.
    assert not np.allclose(params["forward"]["w"], params["backward"]["w"])


def test_bidirectional_last_outputs_and_carries():
    net = fn.Bidirectional(fn.LSTM(U, return_state=True))
    carry_shape = ((None, U), (None, U))
    out_shape, params, state = net.init(
        jax.random.key(0), ((None, T, D), (carry_shape, carry_shape))
    )
    assert out_shape == ((None, 2 * U), (carry_shape, carry_shape))
    zeros = (jnp.zeros((B, U)), jnp.zeros((B, U)))
    h0 = (normal(1, (B, U)), normal(2, (B, U)))
    (y, (fwd_carry, bwd_carry)), _ = net.apply(params, state, (X, (zeros, h0)))
    x = np.asarray(X, np.float64)
    _, fh, fc = np_lstm(as_np(params["forward"]), x, ZEROS, ZEROS)
    _, bh, bc = np_lstm(as_np(params["backward"]), x[:, ::-1], np.asarray(h0[0]), np.asarray(h0[1]))
    close(y, np.concatenate([fh, bh], axis=-1))
    close(fwd_carry[1], fc)
    close(bwd_carry[0], bh)
    close(bwd_carry[1], bc)


def test_bidirectional_with_a_different_backward_layer():
    net = fn.Bidirectional(fn.LSTM(U), backward_layer=fn.GRU(2))
    out_shape, params, _ = net.init(jax.random.key(0), (None, T, D))
    assert out_shape == (None, U + 2)
    y, _ = net.apply(params, {"forward": {}, "backward": {}}, X)
    x = np.asarray(X, np.float64)
    close(y[:, :U], np_lstm(as_np(params["forward"]), x, ZEROS, ZEROS)[1])
    close(y[:, U:], np_gru(as_np(params["backward"]), x[:, ::-1], np.zeros((B, 2)))[1])


def test_bidirectional_lists_its_children_in_summary():
    table = fn.summary(fn.Bidirectional(fn.SimpleRNN(U)), (None, T, D))
    assert "Bidirectional[forward].SimpleRNN" in table
    assert "Bidirectional[backward].SimpleRNN" in table
    assert "Total params: 90" in table  # 2 * (3*5 + 5*5 + 5)


# ----------------------------------------------------------------------------- errors

RANK = (
    r"expected an input of shape \[batch, time, features\], got shape {}\. For a single time "
    r"step use x\[:, None, :\]; to cut features into steps, reshape to \(batch, time, features\)\."
)


@pytest.mark.parametrize("make", [fn.SimpleRNN, fn.LSTM, fn.GRU])
def test_wrong_rank_says_how_to_fix_it(make):
    layer = make(U)
    name = layer.name
    with pytest.raises(fn.LayerValueError, match="^" + name + ": " + RANK.format(r"\(None, 3\)")):
        layer.init(jax.random.key(0), (None, 3))
    _, params, _ = layer.init(jax.random.key(0), (None, T, D))
    with pytest.raises(fn.LayerValueError, match="^" + name + ": " + RANK.format(r"\(2, 3\)")):
        layer.apply(params, {}, jnp.ones((2, 3)))


def test_feature_mismatch_unknown_features_and_integer_input():
    lstm = fn.LSTM(U)
    with pytest.raises(
        fn.LayerValueError,
        match=r"^LSTM: the feature dimension must be known at init, got \(None, 4, None\)\.$",
    ):
        lstm.init(jax.random.key(0), (None, T, None))
    _, params, _ = lstm.init(jax.random.key(0), (None, T, D))
    with pytest.raises(
        fn.LayerValueError,
        match=r"^LSTM: expected input with 3 features \(the size given at init\), got shape \(2, 4, 6\)\. Check the previous layer's output",
    ):
        lstm.apply(params, {}, jnp.ones((2, 4, 6)))
    with pytest.raises(
        fn.LayerTypeError, match=r"^LSTM: expected floating-point input, got dtype int32"
    ):
        lstm.apply(params, {}, jnp.ones((2, 4, 3), jnp.int32))


def test_bad_initial_carry():
    lstm = fn.LSTM(U)
    message = r"^LSTM: expected the initial carry as a tuple \(h, c\), each \[batch, units\] with units 5, got (.*)\. Pass \(x, initial_carry\), or x alone to start from zeros\."
    with pytest.raises(fn.LayerValueError, match=message):
        lstm.init(jax.random.key(0), ((None, T, D), (None, U)))
    with pytest.raises(
        fn.LayerValueError, match=r"got \(\(None, 5\), \(None, 4\)\) for a batch of None"
    ):
        lstm.init(jax.random.key(0), ((None, T, D), ((None, U), (None, 4))))
    gru = fn.GRU(U)
    _, params, _ = gru.init(jax.random.key(0), (None, T, D))
    with pytest.raises(
        fn.LayerValueError,
        match=r"^GRU: expected the initial carry as h \[batch, units\] with units 5, got \(3, 5\) for a batch of 2\.",
    ):
        gru.apply(params, {}, (X, jnp.zeros((3, U))))
    with pytest.raises(
        fn.LayerValueError,
        match=r"^GRU: expected x \[batch, time, features\] or \(x, initial_carry\), got \(an array of "
        r"shape \(2, 4, 3\), an array of shape \(2, 4, 3\), an array of shape \(2, 4, 3\)\)\.$",
    ):
        gru.apply(params, {}, (X, X, X))


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: fn.LSTM(0), ValueError, r"^LSTM: units must be a positive integer, got 0\.$"),
        (lambda: fn.GRU(2.5), ValueError, r"^GRU: units must be a positive integer, got 2\.5\.$"),
        (
            lambda: fn.SimpleRNN(5, return_sequences="yes"),
            TypeError,
            r"^SimpleRNN: return_sequences must be True or False, got 'yes'\.$",
        ),
        (
            lambda: fn.GRU(5, return_state=1),
            TypeError,
            r"^GRU: return_state must be True or False, got 1\.$",
        ),
        (
            lambda: fn.LSTM(5, unit_forget_bias=None),
            TypeError,
            r"^LSTM: unit_forget_bias must be True or False, got None\.$",
        ),
        (lambda: fn.LSTM(5, "tanhh"), ValueError, r"^LSTM: unknown activation 'tanhh'\."),
        (
            lambda: fn.Bidirectional(fn.LSTM),
            TypeError,
            r"^Bidirectional: expected a funcnet Layer such as LSTM\(5\), got function: .*Layer constructors are calls: write LSTM\(5\), not LSTM\.$",
        ),
        (
            lambda: fn.Bidirectional(fn.LSTM(5), "max"),
            ValueError,
            r"^Bidirectional: merge must be one of 'concat', 'sum', 'mul', 'ave' or None, got 'max'\.$",
        ),
    ],
)
def test_bad_constructor_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_bidirectional_errors_carry_the_child_path():
    net = fn.serial(fn.Dense(3), fn.Bidirectional(fn.LSTM(U)))
    with pytest.raises(
        fn.LayerValueError,
        match=r"^serial\[1\]\.Bidirectional\[forward\]\.LSTM: expected an input of shape \[batch, time, features\], got shape \(None, 3\)",
    ):
        net.init(jax.random.key(0), (None, 3))
    bi = fn.Bidirectional(fn.GRU(U))
    _, params, state = bi.init(jax.random.key(0), (None, T, D))
    with pytest.raises(
        fn.LayerValueError, match=r"^Bidirectional\[forward\]\.GRU: expected an input of shape"
    ):
        bi.apply(params, state, jnp.ones((2, 3)))
    with pytest.raises(
        fn.LayerValueError,
        match=r"^Bidirectional: the forward and backward layers' outputs differ: \(None, 5\) and \(None, 4, 2\)\. Give both the same units and return_sequences\.$",
    ):
        fn.Bidirectional(fn.GRU(U), backward_layer=fn.GRU(2, return_sequences=True)).init(
            jax.random.key(0), (None, T, D)
        )
    with pytest.raises(fn.LayerValueError, match=r"outputs differ: \(None, 5\) and \(None, 2\)"):
        fn.Bidirectional(fn.GRU(U), "sum", backward_layer=fn.GRU(2)).init(
            jax.random.key(0), (None, T, D)
        )
    with pytest.raises(
        fn.LayerValueError,
        match=r"^Bidirectional: expected x \[batch, time, features\] or \(x, \(forward_carry, "
        r"backward_carry\)\), got \(an array of shape \(2, 4, 3\), an array of shape \(2, 5\)\)\.$",
    ):
        bi.apply(params, state, (X, jnp.zeros((B, U))))
    with pytest.raises(
        fn.LayerValueError,
        match=r"^Bidirectional: one of the forward and backward layers returns its state and the "
        r"other does not\. Give both the same return_state\.$",
    ):
        fn.Bidirectional(fn.GRU(U), backward_layer=fn.GRU(U, return_state=True)).init(
            jax.random.key(0), (None, T, D)
        )


def test_init_output_shape_with_return_state_matches_the_carry_structure():
    # One-part carries (SimpleRNN, GRU) come back as h alone, LSTM's as the pair (h, c).
    key = jax.random.key(0)
    assert fn.SimpleRNN(U, return_state=True).init(key, (None, T, D))[0] == (
        (None, U),
        (None, U),
    )
    assert fn.GRU(U, return_sequences=True, return_state=True).init(key, (2, T, D))[0] == (
        (2, T, U),
        (2, U),
    )
    assert fn.LSTM(U, return_state=True).init(key, (2, T, D))[0] == ((2, U), ((2, U), (2, U)))
