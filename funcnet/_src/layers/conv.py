"""Convolutions: Conv and ConvTranspose over 1, 2 or 3 spatial axes.

Channels-last (``[batch, *spatial, channels]``), with the rank taken from
``kernel_size`` and kernels laid out ``[*kernel_size, in_channels / groups,
features]``. Both layers compute through ``_cpu_kernels.conv``, which picks
the native convolution or, on the CPU, im2col. The decisions (layout, rank,
padding, ConvTranspose as the adjoint of Conv, initialisation, the CPU
kernels) are in ``docs/layers-conv.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from funcnet._src.core import (
    InputShape,
    Layer,
    Params,
    Shape,
    State,
    check_float,
    check_input_shape,
    expand_to,
    shape_error,
)
from funcnet._src.layers import _cpu_kernels
from funcnet._src.layers._checks import (
    GLOROT_UNIFORM,
    Initializer,
    check_impl,
    is_int,
    positive_int,
)
from funcnet._src.layers._window import (
    Padding,
    check_rank,
    dilated,
    output_sizes,
    pad_pair,
    padding_spec,
    per_axis,
    window_tuple,
)
from funcnet._src.layers.activations import get_activation


class _Geometry(NamedTuple):
    """The checked arguments that Conv and ConvTranspose share."""

    features: int
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: Padding


def _geometry(
    name: str, features: Any, kernel_size: Any, strides: Any, padding: Any, dilation: Any
) -> _Geometry:
    kernel = window_tuple(name, "kernel_size", kernel_size)
    n = len(kernel)
    return _Geometry(
        positive_int(name, "features", features),
        kernel,
        per_axis(name, "strides", strides, n),
        per_axis(name, "dilation", dilation, n),
        padding_spec(name, padding, n),
    )


def _kernel_and_bias(
    key: jax.Array,
    w_shape: tuple[int, ...],
    use_bias: bool,
    w_init: Initializer,
    b_init: Initializer,
    param_dtype: Any,
) -> dict[str, jax.Array]:
    w_key, b_key = jax.random.split(key)
    params = {"w": w_init(w_key, w_shape, param_dtype)}
    if use_bias:
        params["b"] = b_init(b_key, (w_shape[-1],), param_dtype)
    return params


def _plus_bias(y: jax.Array, params: dict[str, jax.Array], use_bias: bool) -> jax.Array:
    return y + expand_to(params["b"].astype(y.dtype), y.ndim) if use_bias else y


def _init_in_channels(name: str, input_shape: InputShape, n: int) -> tuple[Shape, int]:
    """The checked input shape and its number of channels, which init must know."""
    shape = check_input_shape(name, input_shape)
    check_rank(name, shape, n, "convolution", "kernel_size")
    if shape[-1] is None:
        raise shape_error(
            name, f"the last (channels) dimension must be known at init, got shape {shape}."
        )
    return shape, shape[-1]


def _check_apply_input(name: str, x: ArrayLike, n: int, in_channels: int) -> jax.Array:
    x = check_float(name, x)
    check_rank(name, x.shape, n, "convolution", "kernel_size")
    if x.shape[-1] != in_channels:
        raise shape_error(
            name,
            f"expected {in_channels} input channels (the last axis, as given at init), got "
            f"input of shape {x.shape}. Check the previous layer's output, or re-run init "
            "with this input shape.",
        )
    return x


def Conv(
    features: int,
    kernel_size: int | Sequence[int],
    strides: int | Sequence[int] = 1,
    padding: str | Sequence[tuple[int, int]] = "SAME",
    *,
    dilation: int | Sequence[int] = 1,
    feature_group_count: int = 1,
    use_bias: bool = True,
    activation: str | Callable[[jax.Array], jax.Array] | None = None,
    w_init: Initializer = GLOROT_UNIFORM,
    b_init: Initializer = jax.nn.initializers.zeros,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
    impl: str = "auto",
    name: str = "Conv",
) -> Layer:
    """A 1-, 2- or 3-D convolution (cross-correlation) over channels-last inputs.

    Args:
        features: the number of output channels.
        kernel_size: the window, one int per spatial axis: ``(3, 3)`` for images,
            ``(3,)`` or ``3`` for sequences, ``(3, 3, 3)`` for volumes.
        strides: the step between windows, an int for every axis or one per axis.
        padding: "SAME" (output size ``ceil(size / stride)``), "VALID" (no padding)
            or one ``(low, high)`` pair of zeros per spatial axis. The default
            "SAME" is Flax's; Keras's ``Conv2D`` defaults to "valid" (docs/keras.md).
        dilation: the spacing between kernel taps (atrous convolution).
        feature_group_count: split input and output channels into this many
            groups, each convolved separately; equal to the input channels for a
            depthwise convolution (``features`` then a multiple of it).
        use_bias: whether to add the bias ``b``.
        activation: applied after the bias, as in Keras's ``Conv2D(activation=...)``:
            a name from ``funcnet.ACTIVATIONS``, a function, or None (linear).
        w_init: initializer of ``w``, ``[*kernel_size, in_channels / groups,
            features]``.
        b_init: initializer of ``b``, ``[features]``.
        dtype: the computation dtype; None computes in the input's dtype.
        param_dtype: the dtype in which ``w`` and ``b`` are stored.
        impl: how the convolution is computed: "auto" (the default) runs XLA's
            native convolution on GPU and TPU and, on the CPU, im2col (shifted
            slices and one matrix product), which XLA:CPU differentiates
            faster (see docs/layers-conv.md); "native" or "im2col" force one
            of them on every platform. Numerically they agree to rounding.
        name: the name used in error paths and summaries.

    Returns:
        A layer mapping ``[batch, *spatial, in_channels]`` to
        ``[batch, *out_spatial, features]``, with params ``{"w", "b"}``.

    Example:
        >>> import jax, funcnet as fn
        >>> net = fn.Conv(8, (3, 3), strides=2)
        >>> out_shape, params, state = net.init(jax.random.key(0), (None, 28, 28, 1))
        >>> out_shape
        (None, 14, 14, 8)
        >>> jax.tree.map(jax.numpy.shape, params)
        {'b': (8,), 'w': (3, 3, 1, 8)}
    """
    features, kernel, stride, dil, pad = _geometry(
        name, features, kernel_size, strides, padding, dilation
    )
    n = len(kernel)
    groups = positive_int(name, "feature_group_count", feature_group_count)
    impl = check_impl(name, impl)
    act = get_activation(activation, name)
    if features % groups:
        raise ValueError(
            f"{name}: features ({features}) must be divisible by feature_group_count ({groups}): "
            "each group produces features / feature_group_count channels."
        )

    def spatial_out(shape: Sequence[int | None]) -> tuple[int | None, ...]:
        return output_sizes(name, "kernel", shape[1:-1], kernel, stride, dil, pad)

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Shape, Params, State]:
        shape, in_channels = _init_in_channels(name, input_shape, n)
        if in_channels % groups:
            raise shape_error(
                name,
                f"input channels ({in_channels}) must be divisible by feature_group_count "
                f"({groups}), got input shape {shape}. For a depthwise convolution set "
                "feature_group_count to the number of input channels.",
            )
        w_shape = (*kernel, in_channels // groups, features)
        params = _kernel_and_bias(key, w_shape, use_bias, w_init, b_init, param_dtype)
        return (shape[0], *spatial_out(shape), features), params, {}

    def apply(
        params: Params,
        state: State,
        x: ArrayLike,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[jax.Array, State]:
        del key, train
        w = params["w"]
        x = _check_apply_input(name, x, n, w.shape[-2] * groups)
        spatial_out(x.shape)  # raises if the kernel does not fit
        pads = [
            pad_pair(pad, axis, size, dilated(k, d), s)
            for axis, (size, k, d, s) in enumerate(zip(x.shape[1:-1], kernel, dil, stride))
        ]
        compute_dtype = dtype or x.dtype
        y = _cpu_kernels.conv(
            x.astype(compute_dtype),
            w.astype(compute_dtype),
            stride,
            pads,
            rhs_dilation=dil,
            groups=groups,
            impl=impl,
        )
        return act(_plus_bias(y, params, use_bias)), state

    return Layer(init, apply, name)


def _transpose_geometry(
    pad: Padding, axis: int, size: int, extent: int, stride: int
) -> tuple[int, int]:
    """``(output size, elements trimmed from the low end of the full scatter)``."""
    if isinstance(pad, str):
        if pad == "SAME":
            return size * stride, max(extent - stride, 0) // 2
        return size * stride + max(extent - stride, 0), 0
    lo, hi = pad[axis]
    return (size - 1) * stride + extent - lo - hi, lo


def ConvTranspose(
    features: int,
    kernel_size: int | Sequence[int],
    strides: int | Sequence[int] = 1,
    padding: str | Sequence[tuple[int, int]] = "SAME",
    *,
    dilation: int | Sequence[int] = 1,
    output_padding: int | Sequence[int] = 0,
    use_bias: bool = True,
    activation: str | Callable[[jax.Array], jax.Array] | None = None,
    w_init: Initializer = GLOROT_UNIFORM,
    b_init: Initializer = jax.nn.initializers.zeros,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
    impl: str = "auto",
    name: str = "ConvTranspose",
) -> Layer:
    """A 1-, 2- or 3-D transposed convolution (upsampling), channels-last.

    Each input element adds ``x[i] * w[k]`` to output position
    ``i * stride + k * dilation``; the padding then trims this full output. It
    is the gradient of :func:`Conv` with respect to its input.

    Args:
        features: the number of output channels.
        kernel_size: the window, an int (1-D) or one int per spatial axis.
        strides: the upsampling factor, an int for every axis or one per axis.
        padding: "SAME" (output ``size * stride``), "VALID" (output
            ``size * stride + max(extent - stride, 0)``, where extent is the
            dilated kernel size), or one ``(low, high)`` pair per axis, the
            number of elements trimmed from each end of the full output
            ``(size - 1) * stride + extent``.
        dilation: the spacing between kernel taps.
        output_padding: elements added at the high end of each spatial axis of
            the output (an int for every axis or one per axis), which only the
            bias reaches: Keras's ``output_padding``, to reach an output size
            the padding alone cannot give (e.g. an even size from "VALID").
        use_bias: whether to add the bias ``b``.
        activation: applied after the bias, as in Keras's ``Conv2DTranspose(activation=...)``:
            a name from ``funcnet.ACTIVATIONS``, a function, or None (linear).
        w_init: initializer of ``w``, ``[*kernel_size, in_channels, features]``.
        b_init: initializer of ``b``, ``[features]``.
        dtype: the computation dtype; None computes in the input's dtype.
        param_dtype: the dtype in which ``w`` and ``b`` are stored.
        impl: how the convolution is computed: "auto" (the default) runs XLA's
            native convolution on GPU and TPU and, on the CPU, im2col (shifted
            slices and one matrix product), which XLA:CPU differentiates
            faster (see docs/layers-conv.md); "native" or "im2col" force one
            of them on every platform. Numerically they agree to rounding.
        name: the name used in error paths and summaries.

    Returns:
        A layer mapping ``[batch, *spatial, in_channels]`` to
        ``[batch, *out_spatial, features]``, with params ``{"w", "b"}``.

    Example:
        >>> import jax, funcnet as fn
        >>> net = fn.ConvTranspose(4, (3, 3), strides=2)
        >>> out_shape, params, state = net.init(jax.random.key(0), (None, 7, 7, 8))
        >>> out_shape
        (None, 14, 14, 4)
        >>> fn.ConvTranspose(4, (3, 3), 2, "VALID").init(jax.random.key(0), (None, 7, 7, 8))[0]
        (None, 15, 15, 4)
    """
    features, kernel, stride, dil, pad = _geometry(
        name, features, kernel_size, strides, padding, dilation
    )
    n = len(kernel)
    impl = check_impl(name, impl)
    extra: tuple = (
        (output_padding,) * n
        if is_int(output_padding)
        else tuple(output_padding)
        if isinstance(output_padding, (tuple, list))
        else ()
    )
    if len(extra) != n or not all(is_int(v) and v >= 0 for v in extra):
        raise ValueError(
            f"{name}: output_padding must be a non-negative int or a tuple of {n} non-negative "
            f"ints (one per spatial axis), got {output_padding!r}."
        )
    act = get_activation(activation, name)

    def geometry(shape: Sequence[int | None]) -> list[tuple[int, int] | None]:
        result: list[tuple[int, int] | None] = []
        for axis, (size, k, s, d) in enumerate(zip(shape[1:-1], kernel, stride, dil)):
            if size is None:
                result.append(None)
                continue
            extent = dilated(k, d)
            out, trim = _transpose_geometry(pad, axis, size, extent, s)
            out += extra[axis]
            if out < 1:
                raise shape_error(
                    name,
                    f"padding {pad[axis]} trims the whole output on spatial axis {axis}: input "
                    f"size {size} gives a full output of {(size - 1) * s + extent}. Use less "
                    "padding or a larger input.",
                )
            result.append((out, trim))
        return result

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Shape, Params, State]:
        shape, in_channels = _init_in_channels(name, input_shape, n)
        w_shape = (*kernel, in_channels, features)
        params = _kernel_and_bias(key, w_shape, use_bias, w_init, b_init, param_dtype)
        out = tuple(None if g is None else g[0] for g in geometry(shape))
        return (shape[0], *out, features), params, {}

    def apply(
        params: Params,
        state: State,
        x: ArrayLike,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[jax.Array, State]:
        del key, train
        w = params["w"]
        x = _check_apply_input(name, x, n, w.shape[-2])
        pads = []
        for size, k, d, s, g in zip(x.shape[1:-1], kernel, dil, stride, geometry(x.shape)):
            out, trim = g  # type: ignore[misc]
            extent = dilated(k, d)
            # A stride-1 correlation of the stride-dilated input with the flipped
            # kernel: padding extent - 1 on each side would give the full scatter.
            low = extent - 1 - trim
            pads.append((low, out - ((size - 1) * s + 1) - low + extent - 1))
        compute_dtype = dtype or x.dtype
        flipped = jnp.flip(w.astype(compute_dtype), axis=tuple(range(n)))
        y = _cpu_kernels.conv(
            x.astype(compute_dtype),
            flipped,
            (1,) * n,
            pads,
            lhs_dilation=stride,
            rhs_dilation=dil,
            impl=impl,
        )
        return act(_plus_bias(y, params, use_bias)), state

    return Layer(init, apply, name)
