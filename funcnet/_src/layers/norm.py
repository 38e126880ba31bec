"""Normalization layers: BatchNorm, LayerNorm, GroupNorm and RMSNorm.

Each layer rescales its input to zero mean and unit variance (RMSNorm: unit
root mean square) over some axes, then applies a learned per-feature
``scale`` (init ones) and ``bias`` (init zeros). They differ in which axes the
statistics run over:

* ``BatchNorm``: every axis but the feature axis (the batch and any spatial
  axes). It keeps running statistics in ``state`` for inference.
* ``LayerNorm`` and ``RMSNorm``: the last (feature) axis of each example, or
  the axes given as ``axis``.
* ``GroupNorm``: the spatial axes and the channels of one group, per example
  (the channels on the last axis, or on ``axis``).

The decisions (statistics in float32, biased two-pass variance, Keras's
defaults) are in ``docs/layers-norm-dropout-embed.md`` and ``docs/keras.md``.
"""

from __future__ import annotations

from typing import Any

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
    dtype_of,
    shape_error,
    type_error,
)
from funcnet._src.layers._checks import check_flags, positive_int


def _check_epsilon(name: str, epsilon: float) -> None:
    if not isinstance(epsilon, (int, float)) or isinstance(epsilon, bool) or not epsilon > 0:
        raise ValueError(f"{name}: epsilon must be a positive number, got {epsilon!r}.")


def _float_input_shape(name: str, input_shape: InputShape, min_rank: int) -> tuple:
    shape = check_input_shape(name, input_shape, min_rank=min_rank)
    spec_dtype = dtype_of(input_shape)
    if not jnp.issubdtype(spec_dtype, jnp.floating):
        raise type_error(
            name,
            f"expected floating-point input, got dtype {jnp.dtype(spec_dtype)}. "
            "Normalization needs real values; cast with x.astype(jnp.float32).",
        )
    return shape


def _known(name: str, size: int | None, what: str, shape: tuple) -> int:
    if size is None:
        raise shape_error(name, f"the {what} dimension must be known at init, got shape {shape}.")
    return size


def _affine_params(
    features: int | tuple[int, ...], use_scale: bool, use_bias: bool, param_dtype: Any
) -> dict:
    shape = features if isinstance(features, tuple) else (features,)
    params = {}
    if use_scale:
        params["scale"] = jnp.ones(shape, param_dtype)
    if use_bias:
        params["bias"] = jnp.zeros(shape, param_dtype)
    return params


def _check_axis(name: str, axis: Any) -> tuple[int, ...]:
    """LayerNorm's and RMSNorm's ``axis``: one int or a tuple of distinct ints."""
    axes = (axis,) if isinstance(axis, int) and not isinstance(axis, bool) else axis
    if (
        not isinstance(axes, (tuple, list))
        or not axes
        or not all(isinstance(a, int) and not isinstance(a, bool) for a in axes)
    ):
        raise TypeError(
            f"{name}: axis must be an int or a tuple of ints (the axes normalised over), "
            f"got {axis!r}."
        )
    return tuple(axes)


def _resolve_axes(name: str, axes: tuple[int, ...], shape: tuple) -> tuple[int, ...]:
    """``axes`` as sorted non-negative positions of an input of ``shape``, never the batch."""
    ndim = len(shape)
    resolved = sorted({a % ndim for a in axes if -ndim <= a < ndim})
    if len(resolved) != len(axes) or 0 in resolved:
        raise shape_error(
            name,
            f"axis={axes if len(axes) > 1 else axes[0]} must name distinct non-batch axes of "
            f"the input, got shape {shape} (rank {ndim}). Use axes 1..{ndim - 1} or -1.",
        )
    return tuple(resolved)


def _affine(y: jax.Array, params: dict, shape: tuple[int, ...]) -> jax.Array:
    """``y * scale + bias`` with the per-feature params reshaped to ``shape``."""
    if "scale" in params:
        y = y * params["scale"].astype(y.dtype).reshape(shape)
    if "bias" in params:
        y = y + params["bias"].astype(y.dtype).reshape(shape)
    return y


def _stats_dtype(compute_dtype: Any) -> Any:
    return jnp.promote_types(compute_dtype, jnp.float32)


def _check_features(name: str, x: jax.Array, axis: int, features: int) -> None:
    if x.shape[axis] != features:
        raise shape_error(
            name,
            f"expected {features} features on axis {axis} (the size given at init), got input "
            f"of shape {x.shape}. Check the previous layer's output, or re-run init with "
            "this input shape.",
        )


def _normalize(x: jax.Array, axes: Any, epsilon: float, *, center: bool = True) -> jax.Array:
    """``(x - mean) / sqrt(var + epsilon)`` over ``axes`` (biased, two-pass variance);
    without ``center``, RMSNorm's ``x / sqrt(mean(x**2) + epsilon)``."""
    if center:
        x = x - jnp.mean(x, axis=axes, keepdims=True)
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=axes, keepdims=True) + epsilon)


def _feature_norm(
    name: str,
    epsilon: float,
    use_scale: bool,
    use_bias: bool,
    dtype: Any,
    param_dtype: Any,
    *,
    center: bool = True,
    num_groups: int | None = None,
    axis: tuple[int, ...] = (-1,),
) -> Layer:
    """The per-example norms, with params per feature (the last axis).

    Statistics run over the last axis (LayerNorm; RMSNorm without ``center``),
    or over ``axis`` with params shaped as those axes, or, with ``num_groups``,
    over the other non-batch axes and one group of the channels on ``axis[0]``.
    """
    last_only = axis == (-1,)
    _check_epsilon(name, epsilon)
    check_flags(name, use_scale=use_scale, use_bias=use_bias)

    def channel_axis(shape: tuple) -> int:
        """GroupNorm's channel axis as a non-negative position (never the batch)."""
        return _resolve_axes(name, axis, shape)[0]

    def check_groups(shape: tuple, c: int) -> None:
        if num_groups is not None and shape[c] % num_groups:
            where = "the last axis" if c == len(shape) - 1 else f"axis {c}"
            raise shape_error(
                name,
                f"num_groups={num_groups} must divide the number of channels ({where}), "
                f"got input of shape {shape} with {shape[c]} channels. Choose a num_groups "
                f"that divides {shape[c]}.",
            )

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Shape, Params, State]:
        del key
        shape = _float_input_shape(name, input_shape, min_rank=2)
        if num_groups is not None:
            c = channel_axis(shape)
            what = "last (channel)" if c == len(shape) - 1 else f"axis {c} (channel)"
            channels = _known(name, shape[c], what, shape)
            check_groups(shape, c)
            return shape, _affine_params(channels, use_scale, use_bias, param_dtype), {}
        if not last_only:
            axes = _resolve_axes(name, axis, shape)
            sizes = tuple(_known(name, shape[a], f"axis {a}", shape) for a in axes)
            return shape, _affine_params(sizes, use_scale, use_bias, param_dtype), {}
        features = _known(name, shape[-1], "last (feature)", shape)
        return shape, _affine_params(features, use_scale, use_bias, param_dtype), {}

    def apply(
        params: Params,
        state: State,
        x: ArrayLike,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[jax.Array, State]:
        del key, train
        x = check_float(name, x)
        if num_groups is None and x.ndim < 1:
            raise shape_error(name, f"expected an input of rank >= 1, got a scalar {x.shape}.")
        if num_groups is not None and x.ndim < 2:
            raise shape_error(
                name,
                f"expected an input of rank >= 2, [batch, ..., channels], got shape {x.shape}.",
            )
        compute_dtype = dtype or x.dtype
        x_stats = x.astype(_stats_dtype(compute_dtype))
        if num_groups is None and not last_only:
            axes = _resolve_axes(name, axis, x.shape)
            sizes = tuple(x.shape[a] for a in axes)
            if params and next(iter(params.values())).shape != sizes:
                raise shape_error(
                    name,
                    f"expected axes {axes} of sizes {next(iter(params.values())).shape} (as "
                    f"given at init), got input of shape {x.shape}. Re-run init with this "
                    "input shape.",
                )
            y = _normalize(x_stats, axes, epsilon, center=center)
            per_axis = tuple(x.shape[i] if i in axes else 1 for i in range(x.ndim))
            return _affine(y, params, per_axis).astype(compute_dtype), state
        c = x.ndim - 1 if num_groups is None else channel_axis(x.shape)
        if params:
            _check_features(
                name, x, c if c < x.ndim - 1 else -1, next(iter(params.values())).shape[0]
            )
        if num_groups is None:
            y = _normalize(x_stats, -1, epsilon, center=center)
        else:
            check_groups(x.shape, c)
            size = x.shape[c] // num_groups
            grouped = x_stats.reshape((*x.shape[:c], num_groups, size, *x.shape[c + 1 :]))
            # Per example and group: every axis but the batch axis and the group axis c.
            axes = tuple(i for i in range(1, x.ndim + 1) if i != c)
            y = _normalize(grouped, axes, epsilon).reshape(x.shape)
        per_feature = tuple(x.shape[c] if i == c else 1 for i in range(x.ndim))
        return _affine(y, params, per_feature).astype(compute_dtype), state

    return Layer(init, apply, name)


def BatchNorm(
    *,
    momentum: float = 0.99,
    epsilon: float = 1e-3,
    axis: int = -1,
    use_scale: bool = True,
    use_bias: bool = True,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
    name: str = "BatchNorm",
) -> Layer:
    """Batch normalization with running statistics (Keras defaults).

    With ``train=True`` the input is normalised with the mean and (biased)
    variance of the batch, over every axis but ``axis``, and the returned
    state holds ``momentum * running + (1 - momentum) * batch``. With
    ``train=False`` the running statistics are used and the state comes back
    unchanged.

    Args:
        momentum: the weight of the old running statistics in each update, in [0, 1].
        epsilon: added to the variance before the square root.
        axis: the feature axis of the input (not the batch axis 0); -1 for
            channels-last, 1 for channels-first.
        use_scale: whether to learn ``scale`` (multiplied after normalising).
        use_bias: whether to learn ``bias`` (added after scaling).
        dtype: the output dtype; None keeps the input's. Statistics are float32.
        param_dtype: the dtype in which ``scale`` and ``bias`` are stored.
        name: the name used in error paths and summaries.

    Returns:
        A layer mapping ``[batch, ..., features]`` to the same shape, with
        params ``{"scale": [features], "bias": [features]}`` and state
        ``{"mean": [features], "var": [features]}`` (float32).

    Example:
        >>> import jax, jax.numpy as jnp, funcnet as fn
        >>> net = fn.BatchNorm()
        >>> _, params, state = net.init(jax.random.key(0), (None, 2))
        >>> x = jnp.array([[1.0, 10.0], [3.0, 30.0]])
        >>> y, state = net.apply(params, state, x, train=True)
        >>> y.round(2)
        Array([[-1., -1.],
               [ 1.,  1.]], dtype=float32)
        >>> [round(m, 4) for m in state["mean"].tolist()]  # 0.99 * 0 + 0.01 * [2, 20]
        [0.02, 0.2]
    """
    if (
        isinstance(momentum, bool)
        or not isinstance(momentum, (int, float))
        or not 0 <= momentum <= 1
    ):
        raise ValueError(f"{name}: momentum must be a number in [0, 1], got {momentum!r}.")
    _check_epsilon(name, epsilon)
    if not isinstance(axis, int) or isinstance(axis, bool):
        raise TypeError(f"{name}: axis must be an integer, got {axis!r}.")
    check_flags(name, use_scale=use_scale, use_bias=use_bias)

    def feature_axis(ndim: int, shape: tuple) -> int:
        if ndim < 2 or not -ndim <= axis < ndim or axis % ndim == 0:
            raise shape_error(
                name,
                f"axis={axis} must name a feature axis other than the batch axis 0, but the "
                f"input has shape {shape} (rank {ndim}). BatchNorm needs a batch axis and a "
                "feature axis, e.g. (None, features) with axis=-1.",
            )
        return axis % ndim

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Shape, Params, State]:
        del key
        shape = _float_input_shape(name, input_shape, min_rank=2)
        features = _known(name, shape[feature_axis(len(shape), shape)], "feature", shape)
        state = {
            "mean": jnp.zeros((features,), jnp.float32),
            "var": jnp.ones((features,), jnp.float32),
        }
        return shape, _affine_params(features, use_scale, use_bias, param_dtype), state

    def apply(
        params: Params,
        state: State,
        x: ArrayLike,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[jax.Array, State]:
        del key
        x = check_float(name, x)
        ax = feature_axis(x.ndim, x.shape)
        features = state["mean"].shape[0]
        _check_features(name, x, ax, features)
        compute_dtype = dtype or x.dtype
        x_stats = x.astype(_stats_dtype(compute_dtype))
        per_feature = tuple(features if i == ax else 1 for i in range(x.ndim))
        if train:
            others = tuple(i for i in range(x.ndim) if i != ax)
            mean = jnp.mean(x_stats, axis=others)
            var = jnp.mean(jnp.square(x_stats - mean.reshape(per_feature)), axis=others)
            new_state = {
                k: (momentum * state[k] + (1 - momentum) * batch).astype(state[k].dtype)
                for k, batch in (("mean", mean), ("var", var))
            }
        else:
            mean = state["mean"].astype(x_stats.dtype)
            var = state["var"].astype(x_stats.dtype)
            new_state = state
        y = (x_stats - mean.reshape(per_feature)) * jax.lax.rsqrt(
            var.reshape(per_feature) + epsilon
        )
        return _affine(y, params, per_feature).astype(compute_dtype), new_state

    return Layer(init, apply, name)


def LayerNorm(
    *,
    epsilon: float = 1e-3,
    axis: int | tuple[int, ...] = -1,
    use_scale: bool = True,
    use_bias: bool = True,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
    name: str = "LayerNorm",
) -> Layer:
    """Layer normalization over the last axis of each example.

    ``y = (x - mean) / sqrt(var + epsilon) * scale + bias``, where ``mean``
    and the biased ``var`` are taken over the last axis.

    Args:
        epsilon: added to the variance before the square root; 1e-3 as in Keras's
            ``LayerNormalization`` (Flax and PyTorch use 1e-6 and 1e-5: pass
            ``epsilon=1e-6`` to port their models, where small variances matter).
        axis: the axis, or tuple of axes, normalised over (never the batch axis
            0), as Keras's ``LayerNormalization(axis=...)``; ``scale`` and
            ``bias`` then have those axes' sizes, e.g. ``axis=(1, 2, 3)`` over
            ``[batch, H, W, C]`` gives params ``[H, W, C]``.
        use_scale: whether to learn ``scale``.
        use_bias: whether to learn ``bias``.
        dtype: the output dtype; None keeps the input's. Statistics are float32.
        param_dtype: the dtype in which ``scale`` and ``bias`` are stored.
        name: the name used in error paths and summaries.

    Returns:
        A layer mapping ``[batch, ..., features]`` to the same shape, with
        params ``{"scale": [features], "bias": [features]}``.

    Example:
        >>> import jax, jax.numpy as jnp, funcnet as fn
        >>> net = fn.LayerNorm()
        >>> _, params, state = net.init(jax.random.key(0), (None, 3))
        >>> y, _ = net.apply(params, state, jnp.array([[1.0, 2.0, 3.0]]))
        >>> [round(v, 3) for v in y[0].tolist()]  # [-1, 0, 1] / sqrt(2/3 + 1e-3)
        [-1.224, 0.0, 1.224]
    """
    axes = _check_axis(name, axis)
    return _feature_norm(name, epsilon, use_scale, use_bias, dtype, param_dtype, axis=axes)


def RMSNorm(
    *,
    epsilon: float = 1e-6,
    axis: int | tuple[int, ...] = -1,
    use_scale: bool = True,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
    name: str = "RMSNorm",
) -> Layer:
    """Root-mean-square normalization over the last axis (no centring, no bias).

    ``y = x / sqrt(mean(x**2) + epsilon) * scale``, the normalization of T5
    and LLaMA: cheaper than LayerNorm and as effective in transformers.

    Args:
        epsilon: added to the mean square before the square root.
        axis: the axis, or tuple of axes, the mean square is taken over (never
            the batch axis 0), as Keras's ``RMSNormalization(axis=...)``;
            ``scale`` then has those axes' sizes, e.g. ``axis=(1, 2)`` over
            ``[batch, time, features]`` gives ``scale`` ``[time, features]``.
        use_scale: whether to learn ``scale``.
        dtype: the output dtype; None keeps the input's. Statistics are float32.
        param_dtype: the dtype in which ``scale`` is stored.
        name: the name used in error paths and summaries.

    Returns:
        A layer mapping ``[batch, ..., features]`` to the same shape, with
        params ``{"scale": [features]}``.

    Example:
        >>> import jax, jax.numpy as jnp, funcnet as fn
        >>> net = fn.RMSNorm()
        >>> _, params, state = net.init(jax.random.key(0), (None, 2))
        >>> y, _ = net.apply(params, state, jnp.array([[3.0, 4.0]]))
        >>> [round(v, 3) for v in y[0].tolist()]  # [3, 4] / sqrt(12.5)
        [0.849, 1.131]
        >>> over_time = fn.RMSNorm(axis=1)  # per feature, over the steps of [batch, time, features]
        >>> _, params, _ = over_time.init(jax.random.key(0), (None, 2, 3))
        >>> params["scale"].shape
        (2,)
    """
    axes = _check_axis(name, axis)
    return _feature_norm(
        name, epsilon, use_scale, False, dtype, param_dtype, center=False, axis=axes
    )


def GroupNorm(
    num_groups: int = 32,
    *,
    epsilon: float = 1e-3,
    axis: int = -1,
    use_scale: bool = True,
    use_bias: bool = True,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
    name: str = "GroupNorm",
) -> Layer:
    """Group normalization of channels-last inputs, per example.

    The ``channels`` (the last axis, or ``axis``) are split into ``num_groups`` contiguous groups; each
    group of each example is normalised with the mean and biased variance
    over the spatial axes and that group's channels. ``num_groups=1`` is a
    LayerNorm over all non-batch axes; ``num_groups=channels`` is instance
    normalization. Then a per-channel ``scale`` and ``bias`` are applied.

    Args:
        num_groups: the number of groups; must divide the number of channels.
            32 by default, as Keras's ``GroupNormalization(groups=32)`` and Flax's.
        epsilon: added to the variance before the square root; 1e-3 as in Keras
            (Flax uses 1e-6).
        axis: the channel axis (not the batch axis 0), as Keras's
            ``GroupNormalization(axis=...)``: -1 for channels-last, 1 for
            ``[batch, channels, ...]``. The statistics run over every other
            non-batch axis and the channels of one group.
        use_scale: whether to learn ``scale``.
        use_bias: whether to learn ``bias``.
        dtype: the output dtype; None keeps the input's. Statistics are float32.
        param_dtype: the dtype in which ``scale`` and ``bias`` are stored.
        name: the name used in error paths and summaries.

    Returns:
        A layer mapping ``[batch, ..., channels]`` to the same shape, with
        params ``{"scale": [channels], "bias": [channels]}``.

    Example:
        >>> import jax, jax.numpy as jnp, funcnet as fn
        >>> net = fn.GroupNorm(2)
        >>> _, params, state = net.init(jax.random.key(0), (None, 4))
        >>> y, _ = net.apply(params, state, jnp.array([[1.0, 3.0, 10.0, 30.0]]))
        >>> y.round(3)
        Array([[-1., 1., -1., 1.]], dtype=float32)
        >>> first = fn.GroupNorm(2, axis=1)  # channels-first: [batch, channels, length]
        >>> y, _ = first.apply(params, state, jnp.array([[[1.0], [3.0], [10.0], [30.0]]]))
        >>> y[..., 0].round(3)
        Array([[-1., 1., -1., 1.]], dtype=float32)
    """
    num_groups = positive_int(name, "num_groups", num_groups)
    if not isinstance(axis, int) or isinstance(axis, bool):
        raise TypeError(f"{name}: axis must be an integer (the channel axis), got {axis!r}.")
    return _feature_norm(
        name,
        epsilon,
        use_scale,
        use_bias,
        dtype,
        param_dtype,
        num_groups=num_groups,
        axis=(axis,),
    )
