"""Pooling layers: known answers from numpy loops, shapes, dtypes, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet as fn


def pool_ref(x, window, strides, pads, kind):
    """Max, or mean over the real elements, of every window; padding is NaN/-inf and never counts."""
    n = x.ndim - 2
    fill = -np.inf if kind == "max" else np.nan
    xp = np.pad(x, [(0, 0), *pads, (0, 0)], constant_values=fill)
    out = [(xp.shape[1 + i] - window[i]) // strides[i] + 1 for i in range(n)]
    y = np.empty((x.shape[0], *out, x.shape[-1]))
    for o in np.ndindex(*out):
        box = tuple(slice(o[i] * strides[i], o[i] * strides[i] + window[i]) for i in range(n))
        patch = xp[(slice(None), *box)].reshape(x.shape[0], -1, x.shape[-1])
        y[(slice(None), *o)] = patch.max(axis=1) if kind == "max" else np.nanmean(patch, axis=1)
    return y


def run(nets, x):
    """Each of ``nets`` applied to ``x`` in float64, all in one compiled program."""
    with jax.enable_x64(True):
        inits = [net.init(jax.random.key(0), (None, *x.shape[1:])) for net in nets]
        ys = jax.jit(lambda x: [net.apply(p, s, x)[0] for net, (_, p, s) in zip(nets, inits)])(
            jnp.asarray(x, jnp.float64)
        )
        for (out_shape, _, _), y in zip(inits, ys):
            assert out_shape == (None, *y.shape[1:])
    return [np.asarray(y) for y in ys]


def rand(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape)


def test_avg_pool_same_averages_real_elements_only():
    # 3x3 grid 0..8, 2x2 windows, stride 2, SAME: one padded row and column at the end.
    x = jnp.arange(9.0).reshape(1, 3, 3, 1)
    y, _ = jax.jit(lambda x: fn.AvgPool((2, 2), padding="SAME").apply({}, {}, x))(x)
    np.testing.assert_allclose(
        y[0, :, :, 0], [[(0 + 1 + 3 + 4) / 4, (2 + 5) / 2], [(6 + 7) / 2, 8.0]]
    )


def test_max_pool_padding_never_wins():
    x = -1.0 - jnp.arange(5.0).reshape(1, 5, 1)  # all negative: a zero pad would win
    y, _ = jax.jit(lambda x: fn.MaxPool(2, padding="SAME").apply({}, {}, x))(x)
    np.testing.assert_allclose(y.ravel(), [-1.0, -3.0, -5.0])


def test_strides_default_to_the_window():
    assert fn.MaxPool((2, 3)).init(jax.random.key(0), (None, 8, 9, 1))[0] == (None, 4, 3, 1)
    assert fn.AvgPool(2, 1).init(jax.random.key(0), (None, 8, 1))[0] == (None, 7, 1)


CONFIGS = [
    ((3,), None, "VALID", (7,)),
    ((3,), (2,), "SAME", (8,)),
    ((2,), (1,), ((1, 1),), (4,)),
    ((2, 2), None, "VALID", (5, 4)),
    ((3, 2), (2, 1), "SAME", (5, 4)),
    ((2, 3), (1, 2), ((1, 0), (1, 1)), (3, 4)),
    ((2, 2, 2), None, "SAME", (3, 4, 3)),
    ((2, 1, 2), (1, 1, 2), "VALID", (3, 2, 4)),
]


def expected_pads(window, strides, padding, sizes):
    if padding == "VALID":
        return [(0, 0)] * len(window)
    if padding != "SAME":
        return list(padding)
    pads = []
    for k, s, n in zip(window, strides, sizes):
        total = max((-(-n // s) - 1) * s + k - n, 0)
        pads.append((total // 2, total - total // 2))
    return pads


@pytest.mark.parametrize("window, strides, padding, sizes", CONFIGS)
def test_pools_match_numpy(window, strides, padding, sizes):
    x = rand((2, *sizes, 3), seed=len(sizes))
    ys = run([fn.MaxPool(window, strides, padding), fn.AvgPool(window, strides, padding)], x)
    stride = window if strides is None else strides
    pads = expected_pads(window, stride, padding, sizes)
    for kind, y in zip(["max", "avg"], ys):
        expected = pool_ref(x, window, stride, pads, kind)
        np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12, err_msg=kind)


@pytest.mark.parametrize("sizes", [(5,), (3, 4), (2, 3, 2)], ids=["1d", "2d", "3d"])
def test_global_pools_match_numpy(sizes):
    x = rand((2, *sizes, 3), seed=3)
    axes = tuple(range(1, x.ndim - 1))
    mean, largest = run([fn.GlobalAvgPool(), fn.GlobalMaxPool()], x)
    np.testing.assert_allclose(mean, x.mean(axis=axes), rtol=1e-12)
    np.testing.assert_allclose(largest, x.max(axis=axes), rtol=1e-12)


def test_unknown_sizes_stay_unknown():
    assert fn.MaxPool((2, 2)).init(jax.random.key(0), (None, None, 6, 3))[0] == (None, None, 3, 3)
    assert fn.GlobalAvgPool().init(jax.random.key(0), (4, None, None, 3))[0] == (4, 3)


def test_avg_pool_sums_bfloat16_in_float32():
    # 512 ones summed in bfloat16 would stall at 256 (257 is not a bfloat16).
    x = jnp.ones((1, 512, 1), jnp.bfloat16)
    y, _ = jax.jit(lambda x: fn.AvgPool(512).apply({}, {}, x))(x)
    assert y.dtype == jnp.bfloat16
    assert float(y[0, 0, 0]) == 1.0


def test_avg_pool_gradient_spreads_over_real_elements():
    # Size 3, window 2, stride 2, SAME: windows {0, 1} and {2} (count 1, not 2).
    x = jnp.zeros((1, 3, 1))
    grad = jax.jit(jax.grad(lambda x: fn.AvgPool(2, padding="SAME").apply({}, {}, x)[0].sum()))(x)
    np.testing.assert_allclose(grad.ravel(), [0.5, 0.5, 1.0])


# --------------------------------------------------------------------------
# Errors


def test_wrong_rank():
    with pytest.raises(
        fn.LayerValueError,
        match=r"^MaxPool: expected an input of rank 4 \[batch, height, width, channels\] for a 2-D "
        r"pooling window, got shape \(None, 8, 3\)\. If a channel axis is missing, add one",
    ):
        fn.MaxPool((2, 2)).init(jax.random.key(0), (None, 8, 3))
    with pytest.raises(
        fn.LayerValueError,
        match=r"^AvgPool: expected an input of rank 3 \[batch, length, channels\] for a 1-D pooling "
        r"window, got shape \(2, 4, 4, 1\)\. Reshape the input, or give window 2 entries \(one per "
        r"spatial axis\) for a 2-D pooling window\.$",
    ):
        fn.AvgPool(2).apply({}, {}, jnp.ones((2, 4, 4, 1)))


def test_window_larger_than_input():
    with pytest.raises(
        fn.LayerValueError,
        match=r"^MaxPool: the window is larger than the input on spatial axis 1: window size 3, "
        r'input size 2\. Use padding="SAME", a smaller window, or a larger input\.$',
    ):
        fn.MaxPool((2, 3)).init(jax.random.key(0), (None, 4, 2, 1))
    with pytest.raises(
        fn.LayerValueError, match=r"window size 4, input size 2 \+ padding 0 \+ 1\."
    ):
        jax.jit(lambda x: fn.AvgPool(4, padding=((0, 1),)).apply({}, {}, x))(jnp.ones((1, 2, 1)))


@pytest.mark.parametrize("layer", [fn.MaxPool, fn.AvgPool, fn.GlobalAvgPool, fn.GlobalMaxPool])
def test_integer_input_is_rejected(layer):
    net = layer(2) if layer in (fn.MaxPool, fn.AvgPool) else layer()
    with pytest.raises(
        fn.LayerTypeError, match=rf"^{net.name}: expected floating-point input, got dtype int32"
    ):
        net.apply({}, {}, jnp.ones((1, 4, 1), jnp.int32))


@pytest.mark.parametrize("layer", [fn.GlobalAvgPool, fn.GlobalMaxPool])
def test_global_pool_needs_spatial_axes(layer):
    message = (
        r"expected an input of rank >= 3 \[batch, \*spatial, channels\], got shape \(None, 8\)\. "
        r"A \[batch, features\] input has no spatial axes to pool; if it is one sequence of "
        r"scalars, add a channel axis \(x\[\.\.\., None\]\)\.$"
    )
    with pytest.raises(fn.LayerValueError, match=message):
        layer().init(jax.random.key(0), (None, 8))
    with pytest.raises(fn.LayerValueError, match=r"got shape \(2, 8\)\."):
        layer().apply({}, {}, jnp.ones((2, 8)))


@pytest.mark.parametrize(
    "args, message",
    [
        (
            (0,),
            r"^MaxPool: window must be a positive int \(1-D\) or a tuple of 1 to 3 positive ints, "
            r"one per spatial axis, e\.g\. \(3, 3\) for images; got 0\.$",
        ),
        (((2, 2, 2, 2),), r"^MaxPool: window must be .* got \(2, 2, 2, 2\)\.$"),
        (
            ((2, 2), (1, 0)),
            r"^MaxPool: strides must be a positive int or a tuple of 2 positive ints "
            r"\(one per spatial axis\), got \(1, 0\)\.$",
        ),
        ((2, None, "same-ish"), r'^MaxPool: padding must be "SAME", "VALID" or 1 pairs'),
    ],
)
def test_bad_constructor_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        fn.MaxPool(*args)


def test_explicit_padding_must_leave_a_real_element_in_every_window():
    with pytest.raises(
        ValueError,
        match=r"^AvgPool: padding \(0, 2\) on spatial axis 1 must be smaller than the window \(2\) "
        r"on each side, or some windows would hold only padding; use at most 1\.$",
    ):
        fn.AvgPool((2, 2), 1, ((1, 1), (0, 2)))


def test_lowercase_padding_is_accepted():
    assert fn.AvgPool(2, padding="same").init(jax.random.key(0), (None, 5, 1))[0] == (None, 3, 1)


def test_errors_carry_the_path_inside_a_model():
    net = fn.serial(fn.MaxPool((2, 2)), fn.MaxPool((2, 2)), fn.GlobalAvgPool())
    with pytest.raises(fn.LayerValueError, match=r"^serial\[1\]\.MaxPool: the window is larger"):
        net.init(jax.random.key(0), (None, 2, 4, 3))
