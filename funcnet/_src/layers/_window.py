"""Window geometry shared by the convolution and pooling layers (private).

A convolution kernel and a pooling window slide over the spatial axes of a
channels-last input ``[batch, *spatial, channels]`` in the same way, so the
argument checks, the padding rules and the output sizes live here once.

Padding is resolved to explicit ``(low, high)`` pairs from the input's sizes
before any computation, so ``init`` (which sees shapes) and ``apply`` (which
sees arrays) share one formula, and the convolution primitive only ever
receives explicit pairs. "SAME" follows TensorFlow and ``jax.lax``: the output
has ``ceil(size / stride)`` positions and an odd total padding puts the extra
element at the high end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from funcnet._src.core import shape_error
from funcnet._src.layers._checks import is_int

Padding = str | tuple[tuple[int, int], ...]

LAYOUTS = {
    1: "[batch, length, channels]",
    2: "[batch, height, width, channels]",
    3: "[batch, depth, height, width, channels]",
}


def _as_tuple(value: Any, repeat: int) -> tuple | None:
    """An int repeated ``repeat`` times, or any non-string iterable as a tuple."""
    if is_int(value):
        return (value,) * repeat
    if isinstance(value, str):
        return None
    try:
        return tuple(value)
    except TypeError:
        return None


def window_tuple(layer: str, what: str, value: Any) -> tuple[int, ...]:
    """A kernel size or pooling window: an int (1-D) or 1 to 3 positive ints."""
    values = _as_tuple(value, 1)
    if values is None or not 1 <= len(values) <= 3 or not all(is_int(v) and v >= 1 for v in values):
        raise ValueError(
            f"{layer}: {what} must be a positive int (1-D) or a tuple of 1 to 3 positive "
            f"ints, one per spatial axis, e.g. (3, 3) for images; got {value!r}."
        )
    return tuple(int(v) for v in values)


def per_axis(layer: str, what: str, value: Any, n: int) -> tuple[int, ...]:
    """Strides or dilation: one positive int for every axis, or one per axis."""
    values = _as_tuple(value, n)
    if values is None or len(values) != n or not all(is_int(v) and v >= 1 for v in values):
        raise ValueError(
            f"{layer}: {what} must be a positive int or a tuple of {n} positive ints "
            f"(one per spatial axis), got {value!r}."
        )
    return tuple(int(v) for v in values)


def padding_spec(layer: str, padding: Any, n: int) -> Padding:
    """ "SAME", "VALID" (any case) or ``n`` pairs of non-negative ``(low, high)``."""
    if isinstance(padding, str) and padding.upper() in ("SAME", "VALID"):
        return padding.upper()
    try:
        pairs = tuple((int(lo), int(hi)) for lo, hi in padding)
        ok = len(pairs) == n and all(lo >= 0 and hi >= 0 for lo, hi in pairs)
        ok = ok and all(is_int(v) for pair in padding for v in pair)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        example = ", ".join(["(1, 1)"] * n) + ("," if n == 1 else "")
        raise ValueError(
            f'{layer}: padding must be "SAME", "VALID" or {n} pairs of non-negative ints '
            f"(low, high), one per spatial axis, e.g. ({example}); got {padding!r}."
        )
    return pairs


def dilated(size: int, dilation: int) -> int:
    """The extent of a window of ``size`` taps spaced ``dilation`` apart."""
    return (size - 1) * dilation + 1


def pad_pair(padding: Padding, axis: int, size: int, extent: int, stride: int) -> tuple[int, int]:
    """The ``(low, high)`` padding of one spatial axis of ``size`` elements."""
    if padding == "VALID":
        return (0, 0)
    if padding == "SAME":
        out = -(-size // stride)
        total = max((out - 1) * stride + extent - size, 0)
        return (total // 2, total - total // 2)
    return padding[axis]  # type: ignore[return-value]


def check_rank(layer: str, shape: Sequence[Any], n: int, what: str, arg: str) -> None:
    """Raises unless ``shape`` is ``[batch, *n spatial, channels]``.

    ``what`` names the layer's kind ("convolution") and ``arg`` the argument
    that fixed its rank ("kernel_size"), so the message can point at either fix.
    """
    if len(shape) == n + 2:
        return
    m = len(shape) - 2
    if len(shape) == n + 1:
        hint = (
            "If a channel axis is missing, add one (x[..., None]); if the batch axis is "
            "missing, add one (x[None])."
        )
    elif 1 <= m <= 3:
        hint = f"Reshape the input, or give {arg} {m} entries (one per spatial axis) for a {m}-D {what}."
    elif m > 3:
        hint = "Reshape the input: at most 3 spatial axes are supported."
    else:
        hint = "Reshape the input to [batch, *spatial, channels]."
    raise shape_error(
        layer,
        f"expected an input of rank {n + 2} {LAYOUTS[n]} for a {n}-D {what}, "
        f"got shape {tuple(shape)}. {hint}",
    )


def output_sizes(
    layer: str,
    what: str,
    spatial: Sequence[int | None],
    window: Sequence[int],
    strides: Sequence[int],
    dilation: Sequence[int],
    padding: Padding,
) -> tuple[int | None, ...]:
    """The output's spatial sizes; ``None`` (unknown) sizes stay ``None``.

    Raises when a window does not fit in its padded axis.
    """
    out: list[int | None] = []
    for axis, (size, k, s, d) in enumerate(zip(spatial, window, strides, dilation)):
        if size is None:
            out.append(None)
            continue
        extent = dilated(k, d)
        lo, hi = pad_pair(padding, axis, size, extent, s)
        if size + lo + hi < extent:
            extra = f" (dilated to {extent})" if d > 1 else ""
            padded = f"{size} + padding {lo} + {hi}" if lo or hi else f"{size}"
            raise shape_error(
                layer,
                f"the {what} is larger than the input on spatial axis {axis}: {what} size "
                f'{k}{extra}, input size {padded}. Use padding="SAME", a smaller {what}, '
                "or a larger input.",
            )
        out.append((size + lo + hi - extent) // s + 1)
    return tuple(out)
