"""Dropout: randomly zero inputs while training.

``rate`` is the probability of dropping a value (as in Keras, Flax and
PyTorch); kept values are scaled by ``1 / (1 - rate)``, so inference is the
identity. ``Dropout(noise_shape=...)`` draws one decision per slice of a
smaller shape broadcast over the input (Keras's ``noise_shape``); the spatial
dropouts are that with whole channels dropped. The decisions are in
``docs/layers-norm-dropout-embed.md``.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    shape_error,
)

NoiseShape = tuple[int | None, ...]


def _check_rate(name: str, rate: float) -> None:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
        raise ValueError(
            f"{name}: rate is the probability of dropping a value and must be in [0, 1), "
            f"got {rate!r}. For a keep probability p, pass rate=1 - p."
        )


def _check_noise_shape(name: str, noise_shape: Sequence[int | None] | None) -> NoiseShape | None:
    if noise_shape is None:
        return None
    if isinstance(noise_shape, (str, bytes)) or not isinstance(noise_shape, Sequence):
        entries_ok = False
    else:
        entries_ok = all(
            d is None or (isinstance(d, int) and not isinstance(d, bool) and d > 0)
            for d in noise_shape
        )
    if not entries_ok:
        raise ValueError(
            f"{name}: noise_shape must be a tuple of positive ints or None, one per input axis "
            f"(None takes the input's size), got {noise_shape!r}. For example "
            "noise_shape=(None, 1, None) shares one decision along the time axis of "
            "[batch, time, features]."
        )
    return tuple(noise_shape)  # type: ignore[arg-type]


def _check_broadcasts(name: str, noise_shape: NoiseShape, shape: Shape) -> None:
    """Raises unless ``noise_shape`` has one entry per axis of ``shape`` and broadcasts to it.

    ``shape`` may hold None (an unknown batch at init); an int entry then
    stays unchecked until ``apply`` sees the array.
    """
    if len(noise_shape) != len(shape):
        raise shape_error(
            name,
            f"noise_shape={noise_shape} has {len(noise_shape)} entries but the input has "
            f"shape {shape} (rank {len(shape)}): give one entry per input axis, batch included "
            "(None takes the input's size, 1 shares one decision along that axis).",
        )
    bad = [
        i
        for i, (d, size) in enumerate(zip(noise_shape, shape))
        if d is not None and d != 1 and size is not None and d != size
    ]
    if bad:
        raise shape_error(
            name,
            f"noise_shape={noise_shape} does not broadcast to the input shape {shape}: entry "
            f"{bad[0]} is {noise_shape[bad[0]]}. Each entry must be None, 1 or the input's size "
            "on that axis.",
        )


def _dropout(
    rate: float, noise_shape: NoiseShape | None, rank: int | None, kind: str, name: str
) -> Layer:
    """The dropout layer of every kind: one keep decision per element of
    ``noise_shape`` (the whole input when None), broadcast over the input.
    ``rank`` is the exact input rank the layer takes (None: any)."""

    def check_rank(shape: Shape) -> None:
        if rank is not None and len(shape) != rank:
            raise shape_error(
                name,
                f"expected an input of rank {rank} (batch dimension included), got shape {shape}.",
            )

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Shape, Params, State]:
        del key
        shape = check_input_shape(name, input_shape, min_rank=0)
        check_rank(shape)
        if noise_shape is not None:
            _check_broadcasts(name, noise_shape, shape)
        return shape, {}, {}

    def apply(
        params: Params,
        state: State,
        x: ArrayLike,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[jax.Array, State]:
        del params
        x = check_float(name, x)
        check_rank(x.shape)
        if not train or rate == 0:
            return x, state
        if key is None:
            raise shape_error(
                name,
                f"{kind} needs a key when train=True: call net.apply(params, state, x, "
                "train=True, key=jax.random.key(0)) (fit and the train step pass one for you).",
            )
        if noise_shape is None:
            keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
        else:
            _check_broadcasts(name, noise_shape, x.shape)
            drawn = tuple(size if d is None else d for d, size in zip(noise_shape, x.shape))
            keep = jnp.broadcast_to(jax.random.bernoulli(key, 1.0 - rate, drawn), x.shape)
        return jnp.where(keep, x / (1.0 - rate), jnp.zeros((), x.dtype)), state

    return Layer(init, apply, name)


def Dropout(
    rate: float, *, noise_shape: Sequence[int | None] | None = None, name: str = "Dropout"
) -> Layer:
    """Inverted dropout: zeroes each value with probability ``rate`` when training.

    With ``train=True`` each value is kept with probability ``1 - rate`` and
    scaled by ``1 / (1 - rate)``, so the mean is preserved; with
    ``train=False`` (the default) the input passes through unchanged.

    Args:
        rate: the probability of dropping each value, in [0, 1).
        noise_shape: Keras's ``noise_shape``: the shape of the keep mask,
            broadcast over the input, one entry per input axis (batch
            included). None entries take the input's size, 1 shares one
            decision along that axis: ``(None, 1, None)`` over
            ``[batch, time, features]`` drops the same features at every
            step. None (the default) draws one decision per value.
        name: the name used in error paths and summaries.

    Returns:
        A parameterless layer mapping ``[batch, ...]`` to the same shape.
        ``apply`` needs ``key=`` when ``train=True``: a ``jax.random.key`` or
        an integer seed (``key=42`` is ``key=jax.random.key(42)``).

    Example:
        >>> import jax, jax.numpy as jnp, funcnet as fn
        >>> net = fn.Dropout(0.5)
        >>> _, params, state = net.init(jax.random.key(0), (None, 4))
        >>> x = jnp.ones((1, 4))
        >>> net.apply(params, state, x)[0]  # inference: the identity
        Array([[1., 1., 1., 1.]], dtype=float32)
        >>> y, _ = net.apply(params, state, x, train=True, key=jax.random.key(1))
        >>> sorted(set(y.ravel().tolist()) - {0.0, 2.0})  # dropped or doubled
        []
        >>> bool((net.apply(params, state, x, train=True, key=1)[0] == y).all())  # a seed
        True
        >>> shared = fn.Dropout(0.5, noise_shape=(None, 1, None))  # one mask for all steps
        >>> y, _ = shared.apply({}, {}, jnp.ones((2, 3, 4)), train=True, key=1)
        >>> bool((y == y[:, :1, :]).all())
        True
    """
    _check_rate(name, rate)
    return _dropout(rate, _check_noise_shape(name, noise_shape), None, "Dropout", name)


def _spatial(rate: float, spatial_rank: int, data_format: str, name: str) -> Layer:
    _check_rate(name, rate)
    if data_format != "channels_last":
        permutation = (0, *range(2, spatial_rank + 2), 1)
        raise ValueError(
            f"{name}: data_format={data_format!r} is not supported: funcnet's layers are "
            "channels-last, data_format='channels_last'. Transpose the input to "
            f"channels-last with x.transpose{permutation}, or, to keep channels-first data, "
            f"use Dropout(rate, noise_shape=(None, None{', 1' * spatial_rank})), which drops "
            "whole channels of channels-first input."
        )
    noise_shape = (None, *(1,) * spatial_rank, None)
    return _dropout(rate, noise_shape, spatial_rank + 2, name, name)


def SpatialDropout1D(rate: float, *, name: str = "SpatialDropout1D") -> Layer:
    """Dropout of whole channels of a sequence: ``[batch, time, channels]``.

    When training, each channel of each example is dropped (zero at every
    step) with probability ``rate`` or kept and scaled by ``1 / (1 - rate)``:
    Keras's ``SpatialDropout1D``, which is ``Dropout(rate,
    noise_shape=(None, 1, None))``. Neighbouring steps of a feature map are
    correlated, so dropping single values would hardly regularise. Inference
    is the identity.

    Args:
        rate: the probability of dropping each channel, in [0, 1).
        name: the name used in error paths and summaries.

    Returns:
        A parameterless layer mapping ``[batch, time, channels]`` to the same
        shape; ``apply`` needs ``key=`` when ``train=True``.

    Example:
        >>> import jax, jax.numpy as jnp, funcnet as fn
        >>> net = fn.SpatialDropout1D(0.5)
        >>> _, params, state = net.init(jax.random.key(0), (None, 3, 4))
        >>> y, _ = net.apply(params, state, jnp.ones((2, 3, 4)), train=True, key=0)
        >>> bool((y == y[:, :1, :]).all())  # a channel is dropped at every step or none
        True
    """
    return _spatial(rate, 1, "channels_last", name)


def SpatialDropout2D(
    rate: float, *, data_format: str = "channels_last", name: str = "SpatialDropout2D"
) -> Layer:
    """Dropout of whole feature maps of images: ``[batch, height, width, channels]``.

    When training, each channel of each example is dropped (zero over the
    whole image) with probability ``rate`` or kept and scaled by
    ``1 / (1 - rate)``: Keras's ``SpatialDropout2D``, which is ``Dropout(rate,
    noise_shape=(None, 1, 1, None))``. Inference is the identity.

    Args:
        rate: the probability of dropping each channel, in [0, 1).
        data_format: ``"channels_last"`` only, as every funcnet layer;
            ``"channels_first"`` raises an error naming the transpose.
        name: the name used in error paths and summaries.

    Returns:
        A parameterless layer mapping ``[batch, height, width, channels]`` to
        the same shape; ``apply`` needs ``key=`` when ``train=True``.

    Example:
        >>> import jax, jax.numpy as jnp, funcnet as fn
        >>> net = fn.SpatialDropout2D(0.5)
        >>> _, params, state = net.init(jax.random.key(0), (None, 2, 2, 4))
        >>> y, _ = net.apply(params, state, jnp.ones((3, 2, 2, 4)), train=True, key=0)
        >>> bool((y == y[:, :1, :1, :]).all())  # each map all dropped or all kept
        True
    """
    return _spatial(rate, 2, data_format, name)


def SpatialDropout3D(
    rate: float, *, data_format: str = "channels_last", name: str = "SpatialDropout3D"
) -> Layer:
    """Dropout of whole feature maps of volumes: ``[batch, d1, d2, d3, channels]``.

    When training, each channel of each example is dropped (zero over the
    whole volume) with probability ``rate`` or kept and scaled by
    ``1 / (1 - rate)``: Keras's ``SpatialDropout3D``, which is ``Dropout(rate,
    noise_shape=(None, 1, 1, 1, None))``. Inference is the identity.

    Args:
        rate: the probability of dropping each channel, in [0, 1).
        data_format: ``"channels_last"`` only, as every funcnet layer;
            ``"channels_first"`` raises an error naming the transpose.
        name: the name used in error paths and summaries.

    Returns:
        A parameterless layer mapping ``[batch, d1, d2, d3, channels]`` to the
        same shape; ``apply`` needs ``key=`` when ``train=True``.

    Example:
        >>> import jax, jax.numpy as jnp, funcnet as fn
        >>> net = fn.SpatialDropout3D(0.5)
        >>> _, params, state = net.init(jax.random.key(0), (None, 2, 2, 2, 4))
        >>> y, _ = net.apply(params, state, jnp.ones((3, 2, 2, 2, 4)), train=True, key=0)
        >>> bool((y == y[:, :1, :1, :1, :]).all())  # each map all dropped or all kept
        True
    """
    return _spatial(rate, 3, data_format, name)
