"""Pooling: MaxPool, AvgPool, GlobalAvgPool and GlobalMaxPool, channels-last.

Inputs are ``[batch, *spatial, channels]`` like :func:`funcnet.Conv`, the
number of spatial axes taken from the window. Padding never takes part in a
result (MaxPool pads with ``-inf``; AvgPool divides by the real elements). The
window reductions are ``_cpu_kernels.max_pool`` and ``sum_pool``. The
decisions are in ``docs/layers-conv.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from funcnet._src.core import (
    InputShape,
    Layer,
    Params,
    Shape,
    State,
    check_float,
    check_input_shape,
    is_shape,
    shape_error,
)
from funcnet._src.layers import _cpu_kernels
from funcnet._src.layers._checks import check_flags, check_impl
from funcnet._src.layers._window import (
    Padding,
    check_rank,
    output_sizes,
    pad_pair,
    padding_spec,
    per_axis,
    window_tuple,
)


def _valid_counts(
    sizes: Sequence[int], window: Sequence[int], strides: Sequence[int], pads: Sequence[tuple]
) -> np.ndarray:
    """How many real elements each window covers: ``[*out_spatial]``, from shapes alone.

    The count is separable (a product of per-axis counts), so it is built from
    1-D counts without touching the data.
    """
    counts = np.ones((), np.float64)
    for size, k, s, (lo, hi) in zip(sizes, window, strides, pads):
        starts = np.arange((size + lo + hi - k) // s + 1) * s - lo
        axis_count = np.minimum(starts + k, size) - np.maximum(starts, 0)
        counts = np.multiply.outer(counts, axis_count)
    return counts


def _pool(kind: str, window: Any, strides: Any, padding: Any, impl: str, name: str) -> Layer:
    win = window_tuple(name, "window", window)
    impl = check_impl(name, impl)
    n = len(win)
    stride = win if strides is None else per_axis(name, "strides", strides, n)
    pad: Padding = padding_spec(name, padding, n)
    if not isinstance(pad, str):
        for axis, ((lo, hi), k) in enumerate(zip(pad, win)):
            if max(lo, hi) >= k:
                raise ValueError(
                    f"{name}: padding {(lo, hi)} on spatial axis {axis} must be smaller than the "
                    f"window ({k}) on each side, or some windows would hold only padding; use at "
                    f"most {k - 1}."
                )
    ones = (1,) * n

    def spatial_out(shape: Sequence[int | None]) -> tuple[int | None, ...]:
        return output_sizes(name, "window", shape[1:-1], win, stride, ones, pad)

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Shape, Params, State]:
        del key
        shape = check_input_shape(name, input_shape)
        check_rank(name, shape, n, "pooling window", "window")
        return (shape[0], *spatial_out(shape), shape[-1]), {}, {}

    def apply(
        params: Params,
        state: State,
        x: ArrayLike,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[jax.Array, State]:
        del params, key, train
        x = check_float(name, x)
        check_rank(name, x.shape, n, "pooling window", "window")
        spatial_out(x.shape)  # raises if the window does not fit
        sizes = x.shape[1:-1]
        pads = [
            pad_pair(pad, axis, size, k, s)
            for axis, (size, k, s) in enumerate(zip(sizes, win, stride))
        ]
        if kind == "max":
            return _cpu_kernels.max_pool(x, win, stride, pads, impl=impl), state
        acc = jnp.float32 if jnp.finfo(x.dtype).bits < 32 else x.dtype
        sums = _cpu_kernels.sum_pool(x.astype(acc), win, stride, pads, impl=impl)
        counts = _valid_counts(sizes, win, stride, pads)
        y = sums / jnp.asarray(counts, acc).reshape((1, *counts.shape, 1))
        return y.astype(x.dtype), state

    return Layer(init, apply, name)


def MaxPool(
    window: int | Sequence[int],
    strides: int | Sequence[int] | None = None,
    padding: str | Sequence[tuple[int, int]] = "VALID",
    *,
    impl: str = "auto",
    name: str = "MaxPool",
) -> Layer:
    """The maximum over each window of the spatial axes, per channel.

    Args:
        window: the window, an int (1-D) or one int per spatial axis (1 to 3).
        strides: the step between windows; None (the default) uses the window.
        padding: "VALID", "SAME" or one ``(low, high)`` pair per spatial axis;
            padded positions never win the maximum.
        impl: how the window reduction is computed: "auto" (the default) runs
            ``lax.reduce_window`` on GPU and TPU and, on the CPU, an elementwise
            maximum (sum) over shifted slices for windows of at most 9
            elements, whose gradient XLA:CPU runs faster (see
            docs/layers-conv.md); "native" (``reduce_window``) or "im2col"
            (the slices) force one of them on every platform.
        name: the name used in error paths and summaries.

    Returns:
        A parameterless layer mapping ``[batch, *spatial, channels]`` to
        ``[batch, *out_spatial, channels]``.

    Example:
        >>> import jax.numpy as jnp, funcnet as fn
        >>> x = jnp.array([1.0, 3.0, 2.0, 5.0, 4.0]).reshape(1, 5, 1)
        >>> y, _ = fn.MaxPool(2).apply({}, {}, x)
        >>> y.ravel().tolist()
        [3.0, 5.0]
    """
    return _pool("max", window, strides, padding, impl, name)


def AvgPool(
    window: int | Sequence[int],
    strides: int | Sequence[int] | None = None,
    padding: str | Sequence[tuple[int, int]] = "VALID",
    *,
    impl: str = "auto",
    name: str = "AvgPool",
) -> Layer:
    """The mean over each window of the spatial axes, per channel.

    With padding, each window is averaged over its real elements only (the
    padding is not counted), as Keras does.

    Args:
        window: the window, an int (1-D) or one int per spatial axis (1 to 3).
        strides: the step between windows; None (the default) uses the window.
        padding: "VALID", "SAME" or one ``(low, high)`` pair per spatial axis.
        impl: how the window reduction is computed: "auto" (the default) runs
            ``lax.reduce_window`` on GPU and TPU and, on the CPU, an elementwise
            maximum (sum) over shifted slices for windows of at most 9
            elements, whose gradient XLA:CPU runs faster (see
            docs/layers-conv.md); "native" (``reduce_window``) or "im2col"
            (the slices) force one of them on every platform.
        name: the name used in error paths and summaries.

    Returns:
        A parameterless layer mapping ``[batch, *spatial, channels]`` to
        ``[batch, *out_spatial, channels]``.

    Example:
        >>> import jax.numpy as jnp, funcnet as fn
        >>> x = jnp.array([1.0, 3.0, 2.0, 5.0, 4.0]).reshape(1, 5, 1)
        >>> y, _ = fn.AvgPool(2, padding="SAME").apply({}, {}, x)
        >>> y.ravel().tolist()  # the last window holds only 4.0
        [2.0, 3.5, 4.0]
    """
    return _pool("avg", window, strides, padding, impl, name)


def _global_pool(reduce: Callable[..., jax.Array], name: str) -> Layer:
    def check(shape: Sequence[Any]) -> None:
        if len(shape) < 3:
            raise shape_error(
                name,
                f"expected an input of rank >= 3 [batch, *spatial, channels], got shape "
                f"{tuple(shape)}. A [batch, features] input has no spatial axes to pool; "
                "if it is one sequence of scalars, add a channel axis (x[..., None]).",
            )

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Shape, Params, State]:
        del key
        shape = check_input_shape(name, input_shape)
        check(shape)
        return (shape[0], shape[-1]), {}, {}

    def apply(
        params: Params,
        state: State,
        x: ArrayLike,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[jax.Array, State]:
        del params, key, train
        x = check_float(name, x)
        check(x.shape)
        return reduce(x, axis=tuple(range(1, x.ndim - 1))).astype(x.dtype), state

    return Layer(init, apply, name)


def _masked_average(name: str) -> Layer:
    """The mean over the real steps of ``(x [batch, T, channels], mask [batch, T])``."""

    def split(inputs: Any) -> tuple[Any, Any]:
        if is_shape(inputs) or not (isinstance(inputs, (tuple, list)) and len(inputs) == 2):
            got = (
                f"the one shape {tuple(inputs)}"
                if is_shape(inputs)
                else f"an array of shape {inputs.shape}"
                if hasattr(inputs, "shape")
                else repr(inputs)
            )
            raise shape_error(
                name,
                f"built with masked=True, expected (x, mask) with x [batch, T, channels] and a "
                f"boolean mask [batch, T], got {got}. Put it after a layer "
                "that passes the mask on (Embedding(mask_zero=True), Masking, a masked "
                "MultiHeadAttention), or drop masked=True.",
            )
        return inputs[0], inputs[1]

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Shape, Params, State]:
        del key
        x_spec, _ = split(input_shape)
        shape = check_input_shape(name, x_spec, min_rank=3)
        if len(shape) != 3:
            raise shape_error(
                name,
                f"masked=True averages sequences [batch, T, channels], got shape {shape}: a "
                "mask [batch, T] marks steps of one sequence axis.",
            )
        return (shape[0], shape[-1]), {}, {}

    def apply(
        params: Params,
        state: State,
        inputs: Any,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[jax.Array, State]:
        del params, key, train
        x, mask = split(inputs)
        x = check_float(name, x)
        real = jnp.asarray(mask)[:, :, None]
        # Keras's GlobalAveragePooling1D with a mask; a sequence with no real step gives NaN there too.
        total = jnp.sum(jnp.where(real, x, jnp.zeros((), x.dtype)), axis=1)
        return (total / jnp.sum(real.astype(x.dtype), axis=1)).astype(x.dtype), state

    return Layer(init, apply, name)


def GlobalAvgPool(name: str = "GlobalAvgPool", *, masked: bool = False) -> Layer:
    """The mean over all spatial axes: ``[batch, *spatial, channels] -> [batch, channels]``.

    With ``masked=True`` it takes ``(x, mask)``, ``x`` ``[batch, T, channels]``
    and a boolean ``mask`` ``[batch, T]`` (True = a real step, as a masked
    ``MultiHeadAttention`` or ``Embedding(mask_zero=True)`` passes on), and
    averages over the real steps only, as Keras's ``GlobalAveragePooling1D``
    does with a mask.

    Example:
        >>> import jax, jax.numpy as jnp, funcnet as fn
        >>> fn.GlobalAvgPool().init(jax.random.key(0), (None, 7, 7, 32))[0]
        (None, 32)
        >>> x, mask = jnp.array([[[1.0], [3.0], [8.0]]]), jnp.array([[True, True, False]])
        >>> fn.GlobalAvgPool(masked=True).apply({}, {}, (x, mask))[0].tolist()
        [[2.0]]
    """
    check_flags(name, masked=masked)
    return _masked_average(name) if masked else _global_pool(jnp.mean, name)


def GlobalMaxPool(name: str = "GlobalMaxPool") -> Layer:
    """The maximum over all spatial axes: ``[batch, *spatial, channels] -> [batch, channels]``.

    Example:
        >>> import jax, funcnet as fn
        >>> fn.GlobalMaxPool().init(jax.random.key(0), (None, 10, 16))[0]
        (None, 16)
    """
    return _global_pool(jnp.max, name)
