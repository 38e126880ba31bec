"""Conv and ConvTranspose: known answers from direct numpy loops, shapes, errors."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import funcnet as fn

# --------------------------------------------------------------------------
# References, written from the definitions


def same_pads(sizes, kernel, strides, dilation):
    """TensorFlow's SAME rule: ceil(size / stride) outputs, extra zero at the high end."""
    pads = []
    for size, k, s, d in zip(sizes, kernel, strides, dilation):
        extent = (k - 1) * d + 1
        total = max((math.ceil(size / s) - 1) * s + extent - size, 0)
        pads.append((total // 2, total - total // 2))
    return pads


def conv_ref(x, w, strides, pads, dilation, groups=1):
    """y[b, o, f] = sum over taps t and group channels c of xpad[b, o*s + t*d, c] w[t, c, f]."""
    n = x.ndim - 2
    x = np.pad(x, [(0, 0), *pads, (0, 0)])
    kernel, cin_g, features = w.shape[:n], w.shape[n], w.shape[n + 1]
    fout_g = features // groups
    out = [(x.shape[1 + i] - (kernel[i] - 1) * dilation[i] - 1) // strides[i] + 1 for i in range(n)]
    y = np.zeros((x.shape[0], *out, features))
    for o in np.ndindex(*out):
        for t in np.ndindex(*kernel):
            pos = tuple(o[i] * strides[i] + t[i] * dilation[i] for i in range(n))
            patch = x[(slice(None), *pos)]
            for g in range(groups):
                fs = slice(g * fout_g, (g + 1) * fout_g)
                y[(slice(None), *o, fs)] += patch[:, g * cin_g : (g + 1) * cin_g] @ w[t][:, fs]
    return y


def conv_transpose_ref(x, w, strides, dilation, trim_low, out_sizes):
    """Scatter-add x[i] @ w[t] to position i*s + t*d, then keep out_sizes from trim_low."""
    n = x.ndim - 2
    kernel = w.shape[:n]
    full = [(x.shape[1 + i] - 1) * strides[i] + (kernel[i] - 1) * dilation[i] + 1 for i in range(n)]
    room = [max(f, lo + o) for f, lo, o in zip(full, trim_low, out_sizes)]
    buf = np.zeros((x.shape[0], *room, w.shape[-1]))
    for i in np.ndindex(*x.shape[1:-1]):
        for t in np.ndindex(*kernel):
            pos = tuple(i[a] * strides[a] + t[a] * dilation[a] for a in range(n))
            buf[(slice(None), *pos)] += x[(slice(None), *i)] @ w[t]
    return buf[(slice(None), *[slice(lo, lo + o) for lo, o in zip(trim_low, out_sizes)])]


def np_init(key, shape, dtype):
    """Random numpy weights: tests do not compile a random initializer for every shape."""
    del key
    return np.random.default_rng(sum(shape) + 100 * len(shape)).normal(size=shape).astype(dtype)


NP = dict(w_init=np_init, b_init=np_init)


def run(net, x):
    """Applies ``net`` in float64 and checks the init shape; returns y and float64 params."""
    with jax.enable_x64(True):
        out_shape, params, state = net.init(jax.random.key(0), (None, *x.shape[1:]))
        apply = jax.jit(lambda x: net.apply(params, state, x)[0])  # one program, not op by op
        y = apply(jnp.asarray(x, jnp.float64))
        assert out_shape == (None, *y.shape[1:])
    return np.asarray(y), jax.tree.map(lambda a: np.asarray(a, np.float64), params)


def rand(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape)


# --------------------------------------------------------------------------
# Conv known answers


def test_conv_1d_hand_computed():
    # Weights [1, 2, 3] over [0, 1, 2, 3, 4], VALID: 0+2+6, 1+4+9, 2+6+12.
    net = fn.Conv(1, 3, padding="VALID", use_bias=False)
    x = jnp.arange(5.0).reshape(1, 5, 1)
    params = {"w": jnp.array([1.0, 2.0, 3.0]).reshape(3, 1, 1)}
    y, _ = net.apply(params, {}, x)
    np.testing.assert_allclose(y.ravel(), [8.0, 14.0, 20.0])


def test_conv_int_kernel_size_is_1d():
    out, params, _ = fn.Conv(2, 3, **NP).init(jax.random.key(0), (None, 10, 4))
    assert out == (None, 10, 2)
    assert params["w"].shape == (3, 4, 2)


@pytest.mark.parametrize(
    "kernel, strides, dilation, padding, size",
    [
        ((3,), (1,), (1,), "SAME", (7,)),
        ((4,), (2,), (1,), "SAME", (9,)),
        ((3,), (3,), (2,), "VALID", (11,)),
        ((2,), (1,), (1,), ((2, 1),), (5,)),
    ],
)
def test_conv_1d_matches_numpy(kernel, strides, dilation, padding, size):
    x = rand((2, *size, 3))
    y, params = run(fn.Conv(4, kernel, strides, padding, dilation=dilation, **NP), x)
    pads = (
        same_pads(size, kernel, strides, dilation)
        if padding == "SAME"
        else ([(0, 0)] if padding == "VALID" else list(padding))
    )
    expected = conv_ref(x, params["w"], strides, pads, dilation) + params["b"][None, None, :]
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "kernel, strides, dilation, padding, size",
    [
        ((3, 3), (1, 1), (1, 1), "SAME", (5, 6)),
        ((3, 2), (2, 3), (1, 1), "SAME", (7, 8)),
        ((2, 3), (1, 1), (2, 1), "SAME", (6, 5)),
        ((3, 3), (2, 1), (1, 2), "VALID", (7, 7)),
        ((2, 2), (1, 2), (1, 1), ((1, 0), (2, 3)), (4, 5)),
    ],
    ids=["same", "same-strided", "same-dilated", "valid-mixed", "explicit"],
)
def test_conv_2d_matches_numpy(kernel, strides, dilation, padding, size):
    x = rand((2, *size, 3), seed=1)
    y, params = run(fn.Conv(5, kernel, strides, padding, dilation=dilation, **NP), x)
    if padding == "SAME":
        pads = same_pads(size, kernel, strides, dilation)
    else:
        pads = [(0, 0), (0, 0)] if padding == "VALID" else list(padding)
    expected = conv_ref(x, params["w"], strides, pads, dilation) + params["b"][None, None, None, :]
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-10)


def test_conv_2d_matches_scipy_correlate():
    signal = pytest.importorskip("scipy.signal")
    x = rand((1, 6, 7, 1), seed=2)
    y, params = run(fn.Conv(1, (3, 2), padding="VALID", use_bias=False, **NP), x)
    expected = signal.correlate(x[0, :, :, 0], params["w"][:, :, 0, 0], mode="valid")
    np.testing.assert_allclose(y[0, :, :, 0], expected, rtol=1e-10)


def test_conv_groups_match_numpy():
    x = rand((2, 5, 5, 4), seed=3)
    y, params = run(fn.Conv(6, (3, 3), feature_group_count=2, use_bias=False, **NP), x)
    assert params["w"].shape == (3, 3, 2, 6)
    expected = conv_ref(x, params["w"], (1, 1), [(1, 1), (1, 1)], (1, 1), groups=2)
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-10)


def test_depthwise_conv_convolves_each_channel_alone():
    x = rand((2, 6, 5, 3), seed=4)
    y, params = run(fn.Conv(6, (3, 3), 2, feature_group_count=3, use_bias=False, **NP), x)
    w = params["w"]
    assert w.shape == (3, 3, 1, 6)
    pads = same_pads((6, 5), (3, 3), (2, 2), (1, 1))
    for c in range(3):
        # channel c produces outputs 2c and 2c + 1 (multiplier 2)
        expected = conv_ref(x[..., c : c + 1], w[..., 2 * c : 2 * c + 2], (2, 2), pads, (1, 1))
        np.testing.assert_allclose(y[..., 2 * c : 2 * c + 2], expected, rtol=1e-10, atol=1e-10)


def test_conv_3d_matches_numpy():
    x = rand((1, 4, 5, 3, 2), seed=5)
    y, params = run(fn.Conv(3, (2, 3, 2), (1, 2, 1), "SAME", **NP), x)
    pads = same_pads((4, 5, 3), (2, 3, 2), (1, 2, 1), (1, 1, 1))
    expected = conv_ref(x, params["w"], (1, 2, 1), pads, (1, 1, 1)) + params["b"]
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-10)


def test_same_padding_puts_the_odd_zero_at_the_high_end():
    # Size 4, kernel 2, stride 1: one zero, after the data, so the last output sees x[3] only.
    net = fn.Conv(1, 2, use_bias=False)
    x = jnp.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 4, 1)
    y, _ = net.apply({"w": jnp.ones((2, 1, 1))}, {}, x)
    np.testing.assert_allclose(y.ravel(), [3.0, 5.0, 7.0, 4.0])


# --------------------------------------------------------------------------
# ConvTranspose known answers


@pytest.mark.parametrize(
    "kernel, strides, dilation, padding, size, out, trim",
    [
        ((3,), (2,), (1,), "SAME", (4,), (8,), (0,)),
        ((4,), (2,), (1,), "SAME", (3,), (6,), (1,)),
        ((3,), (1,), (1,), "SAME", (5,), (5,), (1,)),
        ((3,), (2,), (1,), "VALID", (4,), (9,), (0,)),
        ((2,), (3,), (1,), "VALID", (3,), (9,), (0,)),  # kernel < stride: zero tail
        ((2,), (2,), (2,), "VALID", (3,), (7,), (0,)),  # dilated extent 3
        ((3,), (2,), (1,), ((1, 2),), (4,), (6,), (1,)),
    ],
)
def test_conv_transpose_1d_matches_scatter_add(kernel, strides, dilation, padding, size, out, trim):
    x = rand((2, *size, 3), seed=6)
    y, params = run(fn.ConvTranspose(2, kernel, strides, padding, dilation=dilation, **NP), x)
    assert y.shape == (2, *out, 2)
    expected = conv_transpose_ref(x, params["w"], strides, dilation, trim, out) + params["b"]
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "kernel, strides, padding, size, out, trim",
    [
        ((3, 3), (2, 2), "SAME", (3, 4), (6, 8), (0, 0)),
        ((4, 3), (2, 1), "SAME", (3, 4), (6, 4), (1, 1)),
        ((3, 2), (2, 3), "VALID", (3, 2), (7, 6), (0, 0)),
        ((2, 2), (2, 2), ((0, 1), (1, 0)), (3, 3), (5, 5), (0, 1)),
    ],
)
def test_conv_transpose_2d_matches_scatter_add(kernel, strides, padding, size, out, trim):
    x = rand((2, *size, 3), seed=7)
    y, params = run(fn.ConvTranspose(4, kernel, strides, padding, **NP), x)
    expected = conv_transpose_ref(x, params["w"], strides, (1, 1), trim, out) + params["b"]
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-10)


def test_conv_transpose_3d_matches_scatter_add():
    x = rand((1, 2, 3, 2, 2), seed=8)
    y, params = run(fn.ConvTranspose(2, (2, 3, 2), (2, 1, 3), "VALID", **NP), x)
    expected = conv_transpose_ref(x, params["w"], (2, 1, 3), (1, 1, 1), (0, 0, 0), (4, 5, 6))
    np.testing.assert_allclose(y, expected + params["b"], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "padding, size",
    [("SAME", (8, 6)), ("VALID", (9, 8)), (((2, 1), (0, 1)), (8, 7))],
    ids=["same", "valid", "explicit"],
)
def test_conv_transpose_is_the_input_gradient_of_conv(padding, size):
    # Sizes that ConvTranspose maps the Conv's output back to (a strided Conv
    # drops a remainder, which the transpose cannot know of).
    kernel, strides = (3, 2), (2, 2)
    with jax.enable_x64(True):
        conv = fn.Conv(5, kernel, strides, padding, use_bias=False, **NP)
        _, params, _ = conv.init(jax.random.key(0), (None, *size, 3))
        x = jnp.asarray(rand((2, *size, 3), seed=9))
        y = jax.eval_shape(lambda x: conv.apply(params, {}, x)[0], x)
        cotangent = jnp.asarray(rand(y.shape, seed=10))
        transpose = fn.ConvTranspose(3, kernel, strides, padding, use_bias=False)
        w_t = {"w": jnp.swapaxes(params["w"], -1, -2)}

        @jax.jit  # the Conv's input gradient and the ConvTranspose: one program
        def both(x, cotangent):
            _, vjp = jax.vjp(lambda x: conv.apply(params, {}, x)[0], x)
            return vjp(cotangent)[0], transpose.apply(w_t, {}, cotangent)[0]

        expected, got = both(x, cotangent)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------
# Shapes, dtypes, initialisation


shapes_strategy = st.tuples(
    st.integers(1, 3),  # rank
    st.lists(st.integers(1, 9), min_size=3, max_size=3),  # sizes
    st.lists(st.integers(1, 4), min_size=3, max_size=3),  # kernel
    st.lists(st.integers(1, 3), min_size=3, max_size=3),  # strides
    st.lists(st.integers(1, 2), min_size=3, max_size=3),  # dilation
    st.sampled_from(["SAME", "VALID", "explicit"]),
    st.sampled_from([fn.Conv, fn.ConvTranspose]),
)


@settings(max_examples=40, deadline=None)
@given(shapes_strategy)
def test_init_shape_equals_apply_shape(params):
    n, sizes, kernel, strides, dilation, padding, layer = params
    sizes, kernel, strides, dilation = sizes[:n], kernel[:n], strides[:n], dilation[:n]
    if padding == "explicit":
        extents = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
        padding = tuple((e // 2, e - 1 - e // 2) for e in extents)
    net = layer(2, tuple(kernel), tuple(strides), padding, dilation=tuple(dilation), **NP)
    try:
        out, params, state = net.init(jax.random.key(0), (None, *sizes, 3))
    except fn.LayerValueError as error:
        assert padding == "VALID" and "larger than the input" in str(error)
        return
    y = jax.eval_shape(
        lambda x: net.apply(params, state, x)[0], jax.ShapeDtypeStruct((2, *sizes, 3), jnp.float32)
    )
    assert y.shape == (2, *out[1:])
    if layer is fn.Conv and padding == "SAME":
        assert out[1:-1] == tuple(-(-s // t) for s, t in zip(sizes, strides))
    if layer is fn.ConvTranspose and padding == "SAME":
        assert out[1:-1] == tuple(s * t for s, t in zip(sizes, strides))
    if layer is fn.ConvTranspose and padding == "VALID":
        extents = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
        assert out[1:-1] == tuple(s * t + max(e - t, 0) for s, t, e in zip(sizes, strides, extents))


def test_unknown_spatial_sizes_stay_unknown():
    assert fn.Conv(4, (3, 3), 2, **NP).init(jax.random.key(0), (None, None, 8, 3))[0] == (
        None,
        None,
        4,
        4,
    )
    assert fn.ConvTranspose(4, 3, 2, **NP).init(jax.random.key(0), (None, None, 3))[0] == (
        None,
        None,
        4,
    )
    assert fn.Conv(4, 3, **NP).init(jax.random.key(0), (5, 7, 3))[0] == (5, 7, 4)


@pytest.mark.parametrize("layer", [fn.Conv, fn.ConvTranspose])
def test_bfloat16_params_and_compute_dtype(layer):
    net = layer(4, (3, 3), param_dtype=jnp.bfloat16, dtype=jnp.float32, **NP)
    _, params, state = net.init(jax.random.key(0), (None, 5, 5, 2))
    assert {a.dtype for a in jax.tree.leaves(params)} == {jnp.dtype(jnp.bfloat16)}
    y, _ = net.apply(params, state, jnp.ones((1, 5, 5, 2), jnp.bfloat16))
    assert y.dtype == jnp.float32


def test_default_init_is_glorot_uniform_over_the_receptive_field():
    _, params, _ = fn.Conv(32, (3, 3)).init(jax.random.key(0), (None, 8, 8, 16))
    fan_in, fan_out = 3 * 3 * 16, 3 * 3 * 32
    limit = math.sqrt(6 / (fan_in + fan_out))
    w = np.asarray(params["w"])
    assert np.abs(w).max() <= limit
    assert np.abs(w).max() > 0.95 * limit
    np.testing.assert_allclose(w.var(), limit**2 / 3, rtol=0.05)
    np.testing.assert_array_equal(params["b"], np.zeros(32))


def test_numpy_integers_are_accepted_as_sizes():
    net = fn.Conv(
        np.int64(2), np.array([3, 3]), strides=np.int32(2), padding=np.array([[1, 1], [0, 0]]), **NP
    )
    assert net.init(jax.random.key(0), (None, 5, 5, 1))[0] == (None, 3, 2, 2)


def test_no_bias():
    _, params, _ = fn.ConvTranspose(3, 2, use_bias=False, **NP).init(
        jax.random.key(0), (None, 4, 2)
    )
    assert set(params) == {"w"}


# --------------------------------------------------------------------------
# Errors


def test_wrong_rank_names_the_layout_and_fix():
    net = fn.Conv(4, (3, 3), **NP)
    with pytest.raises(
        fn.LayerValueError,
        match=r"^Conv: expected an input of rank 4 \[batch, height, width, channels\] for a "
        r"2-D convolution, got shape \(None, 5, 3\)\. If a channel axis is missing, add one "
        r"\(x\[\.\.\., None\]\); if the batch axis is missing, add one \(x\[None\]\)\.",
    ):
        net.init(jax.random.key(0), (None, 5, 3))
    _, params, state = net.init(jax.random.key(0), (None, 5, 5, 3))
    with pytest.raises(
        fn.LayerValueError,
        match=r"got shape \(2, 5, 5, 5, 3\)\. Reshape the input, or give kernel_size 3 entries \(one per spatial axis\) for a 3-D convolution\.$",
    ):
        net.apply(params, state, jnp.ones((2, 5, 5, 5, 3)))
    with pytest.raises(
        fn.LayerValueError,
        match=r"rank 3 \[batch, length, channels\] .* got shape \(4,\)\. Reshape the input to \[batch, \*spatial, channels\]",
    ):
        fn.ConvTranspose(2, 3).init(jax.random.key(0), (4,))
    with pytest.raises(
        fn.LayerValueError, match=r"Reshape the input: at most 3 spatial axes are supported\.$"
    ):
        fn.Conv(2, 3, **NP).init(jax.random.key(0), (None, 2, 2, 2, 2, 1))


def test_valid_kernel_larger_than_input():
    with pytest.raises(
        fn.LayerValueError,
        match=r"^Conv: the kernel is larger than the input on spatial axis 1: kernel size 5, "
        r'input size 3\. Use padding="SAME", a smaller kernel, or a larger input\.$',
    ):
        fn.Conv(2, (3, 5), padding="VALID").init(jax.random.key(0), (None, 8, 3, 1))
    with pytest.raises(fn.LayerValueError, match=r"kernel size 3 \(dilated to 5\), input size 4\."):
        fn.Conv(2, 3, padding="VALID", dilation=2).init(jax.random.key(0), (None, 4, 1))
    with pytest.raises(
        fn.LayerValueError, match=r"kernel size 4, input size 1 \+ padding 1 \+ 1\."
    ):
        fn.Conv(2, 4, padding=((1, 1),)).init(jax.random.key(0), (None, 1, 1))
    # Checked in apply too, for inputs whose size was unknown at init (and under jit).
    net = fn.Conv(2, 3, padding="VALID", **NP)
    _, params, state = net.init(jax.random.key(0), (None, None, 1))
    with pytest.raises(fn.LayerValueError, match=r"kernel size 3, input size 2\."):
        jax.jit(lambda x: net.apply(params, state, x))(jnp.ones((1, 2, 1)))


def test_feature_groups_must_divide():
    with pytest.raises(
        fn.LayerValueError,
        match=r"^Conv: input channels \(5\) must be divisible by feature_group_count \(2\), got "
        r"input shape \(None, 4, 4, 5\)\. For a depthwise convolution set feature_group_count "
        r"to the number of input channels\.$",
    ):
        fn.Conv(4, (3, 3), feature_group_count=2).init(jax.random.key(0), (None, 4, 4, 5))
    with pytest.raises(
        ValueError,
        match=r"^Conv: features \(5\) must be divisible by feature_group_count \(2\): each group "
        r"produces features / feature_group_count channels\.$",
    ):
        fn.Conv(5, 3, feature_group_count=2)


@pytest.mark.parametrize("layer", [fn.Conv, fn.ConvTranspose])
def test_in_channels_must_match_init(layer):
    net = layer(4, (3, 3), name="enc", **NP)
    _, params, state = net.init(jax.random.key(0), (None, 5, 5, 3))
    with pytest.raises(
        fn.LayerValueError,
        match=r"^enc: expected 3 input channels \(the last axis, as given at init\), got input of "
        r"shape \(1, 5, 5, 2\)\. Check the previous layer's output, or re-run init with this "
        r"input shape\.$",
    ):
        net.apply(params, state, jnp.ones((1, 5, 5, 2)))


@pytest.mark.parametrize("layer", [fn.Conv, fn.ConvTranspose])
def test_integer_input_is_rejected(layer):
    net = layer(2, 3, **NP)
    _, params, state = net.init(jax.random.key(0), (None, 4, 1))
    with pytest.raises(fn.LayerTypeError, match=r"expected floating-point input, got dtype int32"):
        net.apply(params, state, jnp.ones((1, 4, 1), jnp.int32))


def test_channels_must_be_known_at_init():
    with pytest.raises(
        fn.LayerValueError,
        match=r"^Conv: the last \(channels\) dimension must be known at init, got shape \(None, 4, None\)\.$",
    ):
        fn.Conv(2, 3).init(jax.random.key(0), (None, 4, None))


def test_transpose_explicit_padding_cannot_trim_everything():
    with pytest.raises(
        fn.LayerValueError,
        match=r"^ConvTranspose: padding \(2, 2\) trims the whole output on spatial axis 0: input "
        r"size 1 gives a full output of 3\. Use less padding or a larger input\.$",
    ):
        fn.ConvTranspose(2, 3, padding=((2, 2),)).init(jax.random.key(0), (None, 1, 1))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(features=0, kernel_size=3), r"^Conv: features must be a positive integer, got 0\.$"),
        (
            dict(features=2.0, kernel_size=3),
            r"^Conv: features must be a positive integer, got 2\.0\.$",
        ),
        (
            dict(features=2, kernel_size=(0, 3)),
            r"^Conv: kernel_size must be a positive int \(1-D\) or a tuple of 1 to 3 positive ints, "
            r"one per spatial axis, e\.g\. \(3, 3\) for images; got \(0, 3\)\.$",
        ),
        (
            dict(features=2, kernel_size=(1, 1, 1, 1)),
            r"kernel_size must be .* got \(1, 1, 1, 1\)\.$",
        ),
        (dict(features=2, kernel_size=()), r"kernel_size must be .* got \(\)\.$"),
        (
            dict(features=2, kernel_size=(3, 3), strides=(1, 2, 1)),
            r"^Conv: strides must be a positive int or a tuple of 2 positive ints \(one per spatial "
            r"axis\), got \(1, 2, 1\)\.$",
        ),
        (dict(features=2, kernel_size=3, strides=0), r"^Conv: strides must be a positive int"),
        (dict(features=2, kernel_size=3, dilation=-1), r"^Conv: dilation must be a positive int"),
        (
            dict(features=2, kernel_size=(3, 3), padding="FULL"),
            r'^Conv: padding must be "SAME", "VALID" or 2 pairs of non-negative ints \(low, high\), '
            r"one per spatial axis, e\.g\. \(\(1, 1\), \(1, 1\)\); got 'FULL'\.$",
        ),
        (
            dict(features=2, kernel_size=(3, 3), padding=((1, 1),)),
            r"padding must be .* got \(\(1, 1\),\)\.$",
        ),
        (
            dict(features=2, kernel_size=3, padding=((-1, 1),)),
            r"padding must be .* got \(\(-1, 1\),\)\.$",
        ),
        (dict(features=2, kernel_size=3, padding=1), r"padding must be .* got 1\.$"),
        (
            dict(features=2, kernel_size=3, feature_group_count=0),
            r"^Conv: feature_group_count must be a positive integer, got 0\.$",
        ),
    ],
)
def test_bad_constructor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fn.Conv(**kwargs)


def test_bad_transpose_constructor_arguments():
    with pytest.raises(ValueError, match=r"^up: features must be a positive integer, got -1\.$"):
        fn.ConvTranspose(-1, 3, name="up")
    with pytest.raises(ValueError, match=r"^ConvTranspose: kernel_size must be a positive int"):
        fn.ConvTranspose(2, "3")


def test_errors_carry_the_path_inside_a_model():
    net = fn.serial(fn.Conv(4, (3, 3), **NP), fn.Relu(), fn.Conv(8, (3, 3), padding="VALID"))
    with pytest.raises(
        fn.LayerValueError, match=r"^serial\[2\]\.Conv: the kernel is larger than the input"
    ):
        net.init(jax.random.key(0), (None, 2, 8, 1))
