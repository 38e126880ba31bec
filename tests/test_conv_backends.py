"""im2col convolution and sliced pooling equal the native XLA operations; the choice between them."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import funcnet as fn
from funcnet._src.layers import _cpu_kernels as kernels


def rand(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def conv_and_grads(x, w, cfg):
    """Output and gradients (wrt x and w) of a random projection, per impl.

    Both implementations in one compiled program: one compilation per case.
    """

    def both(x, w):
        out = {}
        for impl in ("native", "im2col"):
            y, vjp = jax.vjp(functools.partial(kernels.conv, **cfg, impl=impl), x, w)
            out[impl] = (y, *vjp(jax.random.normal(jax.random.key(7), y.shape)))
        return out

    return jax.jit(both)(x, w)


# kernel, in shape (without batch/channels), strides, pads, rhs dilation, lhs dilation, groups
CONFIGS = [
    ((3,), (9,), (1,), [(0, 0)], (1,), (1,), 1),
    ((4,), (11,), (2,), [(1, 2)], (1,), (1,), 1),
    ((3,), (12,), (3,), [(2, 2)], (2,), (1,), 1),
    ((3, 3), (7, 8), (1, 1), [(1, 1), (1, 1)], (1, 1), (1, 1), 1),
    ((3, 2), (8, 9), (2, 3), [(0, 0), (1, 0)], (1, 1), (1, 1), 1),
    ((2, 3), (9, 7), (1, 2), [(2, 1), (0, 3)], (2, 1), (1, 1), 1),
    ((3, 3), (7, 7), (1, 1), [(1, 1), (1, 1)], (1, 1), (1, 1), 2),
    ((3, 3), (6, 6), (2, 2), [(1, 1), (1, 1)], (1, 1), (1, 1), 4),  # depthwise
    ((1, 1), (5, 6), (1, 1), [(0, 0), (0, 0)], (1, 1), (1, 1), 1),
    ((2, 2, 2), (4, 5, 4), (1, 2, 1), [(1, 0), (0, 0), (1, 1)], (1, 1, 2), (1, 1, 1), 1),
    ((3, 3), (4, 5), (1, 1), [(2, 1), (1, 2)], (1, 1), (2, 2), 1),  # ConvTranspose's form
    ((3,), (5,), (1,), [(-1, 1)], (1,), (3,), 1),  # a negative pad crops
]
IDS = [
    "1d-valid",
    "1d-strided-explicit",
    "1d-dilated-strided",
    "2d-same",
    "2d-mixed-strides",
    "2d-dilated-asymmetric-pads",
    "2d-groups",
    "2d-depthwise-strided",
    "2d-1x1",
    "3d-mixed",
    "2d-lhs-dilation",
    "1d-lhs-dilation-negative-pad",
]


@pytest.mark.parametrize("kernel, size, strides, pads, rhs_dil, lhs_dil, groups", CONFIGS, ids=IDS)
def test_im2col_equals_native_values_and_gradients(
    kernel, size, strides, pads, rhs_dil, lhs_dil, groups
):
    cin, features = 4, 4 if groups == 4 else 6
    x = rand((2, *size, cin), seed=1)
    w = rand((*kernel, cin // groups, features), seed=2)
    cfg = dict(
        strides=strides, pads=pads, lhs_dilation=lhs_dil, rhs_dilation=rhs_dil, groups=groups
    )
    out = conv_and_grads(x, w, cfg)
    (y_n, dx_n, dw_n), (y_i, dx_i, dw_i) = out["native"], out["im2col"]
    assert y_i.shape == y_n.shape and y_i.dtype == jnp.float32
    np.testing.assert_allclose(y_i, y_n, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx_i, dx_n, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw_i, dw_n, rtol=1e-5, atol=1e-5)


def test_im2col_hand_computed():
    # Taps [1, 10, 100] over [1, 2, 3, 4] with stride 2 and one zero of padding
    # at each end: windows [0, 1, 2] and [2, 3, 4].
    x = jnp.arange(1.0, 5.0).reshape(1, 4, 1)
    w = jnp.array([1.0, 10.0, 100.0]).reshape(3, 1, 1)
    y = kernels.conv(x, w, (2,), [(1, 1)], impl="im2col")
    np.testing.assert_allclose(y.ravel(), [0 + 10 + 200, 2 + 30 + 400])


def test_im2col_second_order_gradients_match_native():
    x, w = rand((1, 5, 5, 2), seed=3), rand((3, 3, 2, 3), seed=4)

    def hvp(impl):
        def loss(w):
            y = kernels.conv(x, w, (1, 1), [(1, 1), (1, 1)], impl=impl)
            return jnp.sum(jnp.tanh(y) ** 2)

        # Forward over reverse: needs the JVP of the backward pass.
        return jax.jvp(jax.grad(loss), (w,), (jnp.ones_like(w),))[1]

    np.testing.assert_allclose(hvp("im2col"), hvp("native"), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "layer, shape",
    [
        (lambda impl: fn.Conv(3, (3, 3), 2, "SAME", dilation=(1, 2), impl=impl), (2, 7, 6, 4)),
        (lambda impl: fn.ConvTranspose(3, (3, 3), 2, "SAME", impl=impl), (2, 5, 4, 4)),
        (lambda impl: fn.Conv(4, 3, feature_group_count=2, impl=impl), (2, 9, 4)),
    ],
    ids=["Conv", "ConvTranspose", "Conv1D-groups"],
)
def test_layers_agree_across_implementations(layer, shape):
    x = rand(shape, seed=5)
    _, params, state = layer("auto").init(jax.random.key(0), (None, *shape[1:]))
    outs = {}
    for impl in ("native", "im2col"):
        outs[impl] = jax.jit(layer(impl).apply)(params, state, x)[0]
    np.testing.assert_allclose(outs["im2col"], outs["native"], rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------
# Pooling


def reduce_window(kind, x, window, strides, pads):
    dims = ((1, *window, 1), (1, *strides, 1), ((0, 0), *pads, (0, 0)))
    if kind == "max":
        return lax.reduce_window(x, -jnp.inf, lax.max, *dims)
    return lax.reduce_window(x, 0.0, lax.add, *dims)


POOLS = [
    ((2, 2), (2, 2), [(0, 0), (0, 0)], (6, 8)),
    ((3, 3), (2, 2), [(1, 1), (1, 1)], (7, 8)),
    ((3, 2), (1, 2), [(1, 1), (0, 1)], (5, 5)),
    ((2,), (2,), [(0, 0)], (9,)),
    ((3,), (1,), [(1, 1)], (6,)),
    ((2, 2, 2), (2, 1, 2), [(0, 0), (1, 0), (0, 1)], (4, 3, 5)),
]
POOL_IDS = ["2x2-valid", "3x3-s2-padded", "overlapping-mixed", "1d", "1d-overlapping", "3d"]


@pytest.mark.parametrize("window, strides, pads, size", POOLS, ids=POOL_IDS)
def test_sliced_pool_equals_reduce_window(window, strides, pads, size):
    x = rand((2, *size, 3), seed=6)
    pools = {"max": kernels.max_pool, "sum": kernels.sum_pool}

    @jax.jit  # one compilation per case (max and sum), not one per eager operation
    def both(x):
        out = {}
        for kind, pool in pools.items():
            y, vjp = jax.vjp(lambda x, pool=pool: pool(x, window, strides, pads, impl="im2col"), x)
            y_ref, vjp_ref = jax.vjp(
                lambda x, kind=kind: reduce_window(kind, x, window, strides, pads), x
            )
            g = jax.random.normal(jax.random.key(8), y.shape)
            out[kind] = (y, y_ref, vjp(g)[0], vjp_ref(g)[0])
        return out

    for kind, (y, y_ref, dx, dx_ref) in both(x).items():
        np.testing.assert_allclose(y, y_ref, rtol=1e-6, atol=1e-6, err_msg=kind)
        np.testing.assert_allclose(dx, dx_ref, rtol=1e-6, atol=1e-6, err_msg=kind)


def test_max_pool_ties_give_the_whole_gradient_to_the_first_maximum():
    # Relu outputs: many windows are all zeros. reduce_window's gradient sends it
    # all to the first (row-major) maximum; the sliced pool must do the same.
    x = jnp.array([[0.0, 0.0, 2.0, 1.0], [0.0, 0.0, 2.0, 2.0]]).reshape(1, 2, 4, 1)
    pads = [(0, 0), (0, 0)]
    g, g_ref = jax.jit(  # both gradients: one program
        lambda x: (
            jax.grad(lambda x: kernels.max_pool(x, (2, 2), (2, 2), pads, impl="im2col").sum())(x),
            jax.grad(lambda x: reduce_window("max", x, (2, 2), (2, 2), pads).sum())(x),
        )
    )(x)
    expected = [[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    np.testing.assert_array_equal(g[0, :, :, 0], expected)
    np.testing.assert_array_equal(g_ref[0, :, :, 0], expected)


def test_max_pool_propagates_nan_like_lax_max():
    x = jnp.array([1.0, jnp.nan, 3.0, 2.0, 5.0, 4.0]).reshape(1, 6, 1)
    y = kernels.max_pool(x, (2,), (2,), [(0, 0)], impl="im2col")
    np.testing.assert_array_equal(np.isnan(y.ravel()), [True, False, False])
    np.testing.assert_array_equal(y.ravel()[1:], [3.0, 5.0])


@pytest.mark.parametrize("layer", [fn.MaxPool, fn.AvgPool])
def test_pool_layers_agree_across_implementations(layer):
    x = rand((2, 7, 6, 3), seed=9).astype(jnp.bfloat16)
    outs = jax.jit(  # both implementations: one program
        lambda x: {
            impl: layer((3, 3), 2, "SAME", impl=impl).apply({}, {}, x)[0]
            for impl in ("native", "im2col")
        }
    )(x)
    assert outs["im2col"].dtype == jnp.bfloat16
    np.testing.assert_allclose(
        outs["im2col"].astype(np.float32), outs["native"].astype(np.float32), rtol=1e-2, atol=1e-2
    )


# --------------------------------------------------------------------------
# The choice


def compiled_cpu_hlo(f, *args):
    """The CPU program's HLO as lowered: the operations chosen, before XLA's (slow) compile."""
    return jax.jit(f).lower(*args).as_text(dialect="hlo")


def conv2d_loss(w, x, impl="auto"):
    return jnp.sum(kernels.conv(x, w, (1, 1), [(0, 0), (0, 0)], impl=impl) ** 2)


def test_auto_uses_im2col_on_the_cpu_for_ordinary_2d_convolutions():
    assert jax.default_backend() == "cpu"
    x, w = rand((2, 6, 6, 3)), rand((3, 3, 3, 4))
    hlo = compiled_cpu_hlo(jax.grad(conv2d_loss), w, x)
    assert "convolution(" not in hlo and "concatenate(" in hlo
    native = functools.partial(conv2d_loss, impl="native")
    assert "convolution(" in compiled_cpu_hlo(jax.grad(native), w, x)


def test_auto_uses_im2col_for_groups_and_transposed_convolutions_too():
    x = rand((2, 6, 6, 4))
    grouped = compiled_cpu_hlo(
        lambda x, w: kernels.conv(x, w, (1, 1), [(0, 0)] * 2, groups=2), x, rand((3, 3, 2, 4))
    )
    transposed = compiled_cpu_hlo(
        lambda x, w: kernels.conv(x, w, (1, 1), [(2, 2)] * 2, lhs_dilation=(2, 2)),
        x,
        rand((3, 3, 4, 4)),
    )
    assert "convolution(" not in grouped
    assert "convolution(" not in transposed


def test_auto_keeps_the_native_operations_for_huge_patches_and_wide_pools(monkeypatch):
    x, w = rand((2, 6, 6, 3)), rand((3, 3, 3, 4))
    # Patches: 2 images * 4 * 4 outputs * 9 taps * 3 channels * 4 bytes = 3456 bytes.
    monkeypatch.setattr(kernels, "MAX_PATCH_BYTES", 3455)
    assert "convolution(" in compiled_cpu_hlo(jax.grad(conv2d_loss), w, x)
    wide = compiled_cpu_hlo(lambda x: kernels.max_pool(x, (3, 4), (1, 1), [(0, 0)] * 2), x)
    small = compiled_cpu_hlo(lambda x: kernels.max_pool(x, (3, 3), (1, 1), [(0, 0)] * 2), x)
    monkeypatch.setattr(kernels, "MAX_PATCH_BYTES", 3456)
    assert "convolution(" not in compiled_cpu_hlo(jax.grad(conv2d_loss), w, x)
    assert "reduce-window(" in wide
    assert "reduce-window(" not in small


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
def test_auto_lowers_to_the_native_operations_on_gpu_and_tpu(platform):
    x, w = rand((2, 6, 6, 3)), rand((3, 3, 3, 4))

    def f(w, x):
        y = kernels.conv(x, w, (1, 1), [(0, 0), (0, 0)])
        return jnp.sum(kernels.max_pool(y, (2, 2), (2, 2), [(0, 0), (0, 0)]))

    module = jax.export.export(jax.jit(jax.grad(f)), platforms=(platform,))(w, x).mlir_module()
    assert "stablehlo.convolution" in module
    assert "reduce_window" in module or "select_and_scatter" in module
    assert "stablehlo.concatenate" not in module and "dot_general" not in module


def test_auto_table_matches_the_docs():
    # docs/layers-conv.md: im2col for every convolution whose patches fit in
    # 1 GiB; sliced pooling for windows of at most 9 elements.
    assert kernels.MAX_PATCH_BYTES == 2**30
    assert kernels.im2col_preferred(2**30) and not kernels.im2col_preferred(2**30 + 1)
    assert (
        kernels.slices_preferred((2, 2))
        and kernels.slices_preferred((3, 3))
        and kernels.slices_preferred((9,))
    )
    assert kernels.slices_preferred((2, 2, 2)) and not kernels.slices_preferred((2, 5))
    assert not kernels.slices_preferred((3, 3, 3)) and not kernels.slices_preferred((7, 7))


# --------------------------------------------------------------------------
# The layers' impl argument


def layer_hlo(net, shape):
    """The compiled CPU program of the gradient of ``net`` (params and input) at ``shape``."""
    _, params, state = net.init(jax.random.key(0), (None, *shape[1:]))

    def loss(p, x):
        return jnp.sum(net.apply(p, state, x)[0] ** 2)

    return compiled_cpu_hlo(jax.grad(loss, argnums=(0, 1)), params, rand(shape))


@pytest.mark.parametrize(
    "layer, shape, native_op",
    [
        (lambda **kw: fn.Conv(4, (3, 3), **kw), (2, 6, 6, 3), "convolution("),
        (lambda **kw: fn.ConvTranspose(4, (3, 3), 2, **kw), (2, 4, 4, 3), "convolution("),
        (lambda **kw: fn.MaxPool((2, 2), **kw), (2, 6, 6, 3), "reduce-window("),
        (lambda **kw: fn.AvgPool((2, 2), **kw), (2, 6, 6, 3), "reduce-window("),
    ],
    ids=["Conv", "ConvTranspose", "MaxPool", "AvgPool"],
)
def test_impl_argument_chooses_the_operation_the_cpu_runs(layer, shape, native_op):
    assert jax.default_backend() == "cpu"
    # The default is "auto": on the CPU, the rewrite; "native" forces XLA's operation.
    assert native_op not in layer_hlo(layer(), shape)
    assert native_op not in layer_hlo(layer(impl="im2col"), shape)
    assert native_op in layer_hlo(layer(impl="native"), shape)


def test_two_layers_of_one_model_can_use_different_implementations():
    net = fn.serial(fn.Conv(4, (3, 3), impl="native"), fn.Conv(4, (3, 3), impl="im2col"))
    hlo = layer_hlo(net, (2, 6, 6, 3))
    assert "convolution(" in hlo and "concatenate(" in hlo


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: fn.Conv(2, 3, impl="cudnn"), "Conv"),
        (lambda: fn.ConvTranspose(2, 3, impl="Native"), "ConvTranspose"),
        (lambda: fn.MaxPool(2, impl=None), "MaxPool"),
        (lambda: fn.AvgPool(2, impl="slices"), "AvgPool"),
    ],
)
def test_bad_impl_is_rejected_when_the_layer_is_built(make, name):
    msg = (
        rf"^{name}: impl must be 'auto', 'im2col' or 'native', got .*\. 'auto' \(the default\) uses"
    )
    with pytest.raises(ValueError, match=msg):
        make()


def test_the_kernels_reject_an_unknown_impl():
    x, w = rand((1, 5, 1)), rand((3, 1, 2))
    with pytest.raises(ValueError, match=r"^impl must be 'auto', 'im2col' or 'native', got 'fast'"):
        kernels.conv(x, w, (1,), [(0, 0)], impl="fast")


def test_no_process_wide_setting_remains():
    # The implementation is an argument: no module global or environment
    # variable read at trace time can change what a layer computes.
    assert not hasattr(kernels, "CONV_IMPL") and not hasattr(kernels, "use_conv_impl")
    assert not hasattr(kernels, "conv_impl")


def test_taps_are_row_major_and_match_the_kernel_layout():
    # The patches' channel axis is (tap, channel) with the tap row-major, which
    # is what reshaping a [*k, in, out] kernel to [taps * in, out] expects.
    x = jnp.arange(2.0 * 3 * 2).reshape(1, 2, 3, 2)
    slices = kernels._tap_slices(x, (2, 2), (1, 1), [(0, 0), (0, 0)], jnp.zeros(()))
    firsts = [float(s[0, 0, 0, 0]) for s in slices]
    assert firsts == [0.0, 2.0, 6.0, 8.0]  # taps (0,0), (0,1), (1,0), (1,1)
    assert math.prod(slices[0].shape) == 1 * 1 * 2 * 2
