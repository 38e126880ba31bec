"""Convolution and pooling kernels, and the per-backend choice between them (private).

XLA:CPU runs convolution gradients (above all inside ``lax.scan``) and the
max-pool gradient slowly, and plain matrix products and elementwise code
well. So on the CPU a convolution can run as *im2col* (one shifted slice of
the padded input per kernel tap, concatenated into patches, times the
reshaped kernel) and a pooling as an elementwise maximum (or sum) over the
same slices, with gradients by plain autodiff; on GPU and TPU the native
``lax.conv_general_dilated`` and ``lax.reduce_window`` stay, chosen per
platform through ``lax.platform_dependent``. Each kernel takes ``impl``, the
layers' argument: "auto" (that choice), "im2col" or "native". The
measurements, the rule that picks a kernel and the reasons are in
``docs/layers-conv.md``, section "Faster on the CPU".
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from funcnet._src.layers._checks import IMPLS

# --------------------------------------------------------------------------
# Convolution


def native_conv(
    x: jax.Array,
    w: jax.Array,
    strides: Sequence[int],
    pads: Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int],
    rhs_dilation: Sequence[int],
    groups: int,
) -> jax.Array:
    """``lax.conv_general_dilated`` with channels-last input and ``[*k, in, out]`` kernel."""
    n = x.ndim - 2
    spatial = tuple(range(1, n + 1))
    dims = lax.ConvDimensionNumbers(
        lhs_spec=(0, n + 1, *spatial),
        rhs_spec=(n + 1, n, *range(n)),
        out_spec=(0, n + 1, *spatial),
    )
    return lax.conv_general_dilated(
        x,
        w,
        window_strides=tuple(strides),
        padding=tuple(pads),
        lhs_dilation=tuple(lhs_dilation),
        rhs_dilation=tuple(rhs_dilation),
        dimension_numbers=dims,
        feature_group_count=groups,
    )


def _tap_slices(
    x: jax.Array,
    window: Sequence[int],
    strides: Sequence[int],
    pads: Sequence[tuple[int, int]],
    pad_value: jax.Array,
    *,
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
) -> list[jax.Array]:
    """One ``[batch, *out, channels]`` slice per window tap, in row-major tap order.

    Slice ``t`` holds, at output position ``o``, the padded input element
    ``o * stride + t * dilation`` that tap ``t`` of the window reads there.
    """
    n = x.ndim - 2
    ones = (1,) * n
    lhs_dilation = ones if lhs_dilation is None else tuple(lhs_dilation)
    rhs_dilation = ones if rhs_dilation is None else tuple(rhs_dilation)
    config = [(lo, hi, d - 1) for (lo, hi), d in zip(pads, lhs_dilation)]
    if any(c != (0, 0, 0) for c in config):
        x = lax.pad(x, pad_value, [(0, 0, 0), *config, (0, 0, 0)])
    sizes = x.shape[1:-1]
    out = [
        (size - (k - 1) * d - 1) // s + 1
        for size, k, d, s in zip(sizes, window, rhs_dilation, strides)
    ]
    slices = []
    for tap in itertools.product(*(range(k) for k in window)):
        start = [t * d for t, d in zip(tap, rhs_dilation)]
        limit = [b + (o - 1) * s + 1 for b, o, s in zip(start, out, strides)]
        slices.append(
            lax.slice(
                x,
                (0, *start, 0),
                (x.shape[0], *limit, x.shape[-1]),
                (1, *strides, 1),
            )
        )
    return slices


def _patch_product(p: jax.Array, w: jax.Array, groups: int) -> jax.Array:
    """``patches [batch, *out, taps * in]`` times the kernel ``[*k, in / groups, out]``."""
    n = w.ndim - 2
    taps, cin_g, features = math.prod(w.shape[:n]), w.shape[n], w.shape[n + 1]
    if groups == 1:
        return lax.dot_general(
            p, w.reshape(taps * cin_g, features), (((p.ndim - 1,), (0,)), ((), ()))
        )
    lead = p.shape[:-1]
    pg = p.reshape(*lead, taps, groups, cin_g)
    wg = w.reshape(taps, cin_g, groups, features // groups)
    # Contract taps and group channels, batching over the groups.
    y = lax.dot_general(pg, wg, (((p.ndim - 1, p.ndim + 1), (0, 1)), ((p.ndim,), (2,))))
    # y is [groups, *lead, out / groups]; put each group's outputs back together.
    y = jnp.moveaxis(y, 0, -2)
    return y.reshape(*lead, features)


def _im2col(
    x: jax.Array,
    w: jax.Array,
    strides: tuple[int, ...],
    pads: tuple[tuple[int, int], ...],
    lhs_dilation: tuple[int, ...],
    rhs_dilation: tuple[int, ...],
    groups: int,
) -> jax.Array:
    n = x.ndim - 2
    cols = _tap_slices(
        x,
        w.shape[:n],
        strides,
        pads,
        jnp.zeros((), x.dtype),
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
    )
    patches = cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)
    return _patch_product(patches, w, groups)


#: "auto" keeps the native convolution when the patches would exceed this size.
MAX_PATCH_BYTES = 1 << 30


def im2col_preferred(patch_bytes: int) -> bool:
    """Whether "auto" uses im2col on the CPU for a convolution whose patches take ``patch_bytes``.

    Every convolution (any rank, groups, strides, dilation, ConvTranspose):
    inside ``lax.scan`` (how ``funcnet.fit`` runs an epoch) XLA:CPU's native
    convolution gradient was 3-110x slower than im2col for every shape
    measured, more than any per-step gain of the native convolution (at most
    3x, for a 5x5 kernel over 16 channels) makes up for.
    Except when the patches (``taps`` times the input) would pass
    :data:`MAX_PATCH_BYTES`: memory then matters more than speed.
    """
    try:
        return bool(patch_bytes <= MAX_PATCH_BYTES)
    except Exception:
        # A symbolic size (jax.export) cannot be compared. The batch is unknown until the exported program runs: keep the native
        # convolution, which serves every size.
        return False


def conv(
    x: jax.Array,
    w: jax.Array,
    strides: Sequence[int],
    pads: Sequence[tuple[int, int]],
    *,
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    groups: int = 1,
    impl: str = "auto",
) -> jax.Array:
    """Cross-correlates channels-last ``x`` with ``[*k, in / groups, out]`` ``w``.

    ``impl`` picks the kernel: "native" (``lax.conv_general_dilated``),
    "im2col", or "auto" (im2col on the CPU when :func:`im2col_preferred`).
    """
    n = x.ndim - 2
    args = (
        tuple(int(s) for s in strides),
        tuple((int(lo), int(hi)) for lo, hi in pads),
        tuple(lhs_dilation or (1,) * n),
        tuple(rhs_dilation or (1,) * n),
        int(groups),
    )
    out = [
        ((size - 1) * ld + 1 + lo + hi - (k - 1) * rd - 1) // s + 1
        for size, k, s, (lo, hi), ld, rd in zip(x.shape[1:-1], w.shape[:n], *args[:4])
    ]
    patch_bytes = x.shape[0] * math.prod(out) * math.prod(w.shape[:n]) * x.shape[-1]
    patch_bytes *= jnp.dtype(x.dtype).itemsize

    def native(x: jax.Array, w: jax.Array) -> jax.Array:
        return native_conv(x, w, *args)

    def im2col(x: jax.Array, w: jax.Array) -> jax.Array:
        return _im2col(x, w, *args)

    return _dispatch(impl, native, im2col, im2col_preferred(patch_bytes), x, w)


def _dispatch(
    impl: str, native: Callable, rewrite: Callable, cpu_prefers: bool, *operands: jax.Array
) -> jax.Array:
    """``native(*operands)`` or ``rewrite(*operands)``, as ``impl`` says.

    "auto" picks per platform when the program is lowered, so a program
    lowered for a GPU or TPU gets ``native`` even from a CPU process.
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be 'auto', 'im2col' or 'native', got {impl!r}.")
    if impl == "native" or (impl == "auto" and not cpu_prefers):
        return native(*operands)
    if impl == "im2col":
        return rewrite(*operands)
    return lax.platform_dependent(*operands, cpu=rewrite, default=native)


# --------------------------------------------------------------------------
# Pooling


def slices_preferred(window: Sequence[int]) -> bool:
    """Whether "auto" pools by shifted slices on the CPU: windows of at most 9 elements.

    Measured (loop and scan alike): 2x2 and 3x3 windows 1.3-30x faster than
    ``reduce_window`` (whose max gradient is a slow scatter), a 7x7 window 3x
    slower (49 slices).
    """
    return math.prod(window) <= 9


def max_pool(
    x: jax.Array,
    window: Sequence[int],
    strides: Sequence[int],
    pads: Sequence[tuple[int, int]],
    *,
    impl: str = "auto",
) -> jax.Array:
    """The maximum over each window of a channels-last ``x``; padding is ``-inf``."""
    window, strides = tuple(window), tuple(strides)
    pads = tuple((int(lo), int(hi)) for lo, hi in pads)
    neg_inf = jnp.array(-jnp.inf, x.dtype)

    def native(x: jax.Array) -> jax.Array:
        # A Python -inf lets lax recognise the max monoid, which has a gradient rule.
        return lax.reduce_window(
            x, -jnp.inf, lax.max, (1, *window, 1), (1, *strides, 1), ((0, 0), *pads, (0, 0))
        )

    def slices(x: jax.Array) -> jax.Array:
        taps = _tap_slices(x, window, strides, pads, neg_inf)
        m = taps[0]
        for s in taps[1:]:
            # Strictly greater: the first maximum keeps the gradient, as in
            # reduce_window's; a NaN wins, as in lax.max.
            m = jnp.where((s > m) | jnp.isnan(s), s, m)
        return m

    return _dispatch(impl, native, slices, slices_preferred(window), x)


def sum_pool(
    x: jax.Array,
    window: Sequence[int],
    strides: Sequence[int],
    pads: Sequence[tuple[int, int]],
    *,
    impl: str = "auto",
) -> jax.Array:
    """The sum over each window of a channels-last ``x``; padding is zeros."""
    window, strides = tuple(window), tuple(strides)
    pads = tuple((int(lo), int(hi)) for lo, hi in pads)
    zero = jnp.array(0, x.dtype)

    def native(x: jax.Array) -> jax.Array:
        return lax.reduce_window(
            x, 0.0, lax.add, (1, *window, 1), (1, *strides, 1), ((0, 0), *pads, (0, 0))
        )

    def slices(x: jax.Array) -> jax.Array:
        taps = _tap_slices(x, window, strides, pads, zero)
        total = taps[0]
        for s in taps[1:]:
            total = total + s
        return total

    return _dispatch(impl, native, slices, slices_preferred(window), x)
