"""Losses: plain functions ``loss(predictions, targets) -> scalar`` (a batch mean).

They are built on ``optax.losses`` and check their inputs first, so a
shape mismatch fails with a clear message instead of silently broadcasting
(``(N, 1)`` predictions against ``(N,)`` targets would otherwise give an
``N x N`` loss). Options are keyword-only; use ``functools.partial`` to fix
them, e.g. ``partial(binary_crossentropy, from_logits=True)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

Loss = Callable[[Any, Any], jax.Array]


def _same_shape(
    name: str, predictions: ArrayLike, targets: ArrayLike
) -> tuple[jax.Array, jax.Array]:
    predictions, targets = jnp.asarray(predictions), jnp.asarray(targets)
    if predictions.shape != targets.shape:
        hint = ""
        if predictions.shape == (*targets.shape, 1):
            hint = " Reshape the targets with y.reshape(-1, 1) (or y[..., None])."
        elif targets.shape == (*predictions.shape, 1):
            hint = " The targets have an extra trailing axis: use y[..., 0] or reshape the model output."
        raise ValueError(
            f"{name}: targets must have the predictions' shape {predictions.shape}, "
            f"got {targets.shape}.{hint}"
        )
    if not jnp.issubdtype(predictions.dtype, jnp.floating):
        raise TypeError(f"{name}: predictions must be floating point, got {predictions.dtype}.")
    return predictions, targets.astype(predictions.dtype)


def mse(predictions: ArrayLike, targets: ArrayLike) -> jax.Array:
    """Mean squared error: ``mean((predictions - targets) ** 2)``.

    Args:
        predictions: ``[...]`` floats.
        targets: the same shape as ``predictions``.

    Example:
        >>> float(mse(jnp.array([1.0, 2.0]), jnp.array([1.0, 4.0])))
        2.0
    """
    predictions, targets = _same_shape("mse", predictions, targets)
    return jnp.mean(optax.losses.squared_error(predictions, targets))


def mae(predictions: ArrayLike, targets: ArrayLike) -> jax.Array:
    """Mean absolute error: ``mean(|predictions - targets|)``.

    Example:
        >>> float(mae(jnp.array([1.0, 2.0]), jnp.array([1.0, 4.0])))
        1.0
    """
    predictions, targets = _same_shape("mae", predictions, targets)
    return jnp.mean(jnp.abs(predictions - targets))


def huber(predictions: ArrayLike, targets: ArrayLike, *, delta: float = 1.0) -> jax.Array:
    """Huber loss: quadratic within ``delta`` of the target, linear beyond.

    Example:
        >>> float(huber(jnp.array([0.0, 0.0]), jnp.array([0.5, 3.0])))
        1.3125
    """
    predictions, targets = _same_shape("huber", predictions, targets)
    return jnp.mean(optax.losses.huber_loss(predictions, targets, delta=delta))


def binary_crossentropy(
    predictions: ArrayLike, targets: ArrayLike, *, from_logits: bool = False, epsilon: float = 1e-7
) -> jax.Array:
    """Binary cross-entropy of targets in ``[0, 1]``.

    Args:
        predictions: probabilities (after a sigmoid), or logits when
            ``from_logits=True`` (more stable: prefer it for training).
        targets: the same shape, values in ``[0, 1]``.
        from_logits: whether ``predictions`` are logits.
        epsilon: probabilities are clipped to ``[epsilon, 1 - epsilon]``, as Keras does.

    Example:
        >>> round(float(binary_crossentropy(jnp.array([0.5]), jnp.array([1.0]))), 4)
        0.6931
    """
    predictions, targets = _same_shape("binary_crossentropy", predictions, targets)
    if from_logits:
        return jnp.mean(optax.losses.sigmoid_binary_cross_entropy(predictions, targets))
    p = jnp.clip(predictions, epsilon, 1.0 - epsilon)
    return -jnp.mean(targets * jnp.log(p) + (1.0 - targets) * jnp.log1p(-p))


def categorical_crossentropy(
    predictions: ArrayLike, targets: ArrayLike, *, from_logits: bool = False, epsilon: float = 1e-7
) -> jax.Array:
    """Cross-entropy against one-hot (or soft) targets over the last axis.

    Args:
        predictions: ``[..., classes]`` probabilities, or logits with ``from_logits=True``.
        targets: ``[..., classes]`` one-hot or probability vectors.

    Example:
        >>> logits = jnp.array([[0.0, 0.0]])
        >>> round(float(categorical_crossentropy(logits, jnp.array([[1.0, 0.0]]), from_logits=True)), 4)
        0.6931
    """
    predictions, targets = _same_shape("categorical_crossentropy", predictions, targets)
    if from_logits:
        return jnp.mean(optax.losses.softmax_cross_entropy(predictions, targets))
    p = jnp.clip(predictions, epsilon, 1.0)
    return -jnp.mean(jnp.sum(targets * jnp.log(p), axis=-1))


def sparse_categorical_crossentropy(
    predictions: ArrayLike, targets: ArrayLike, *, from_logits: bool = False, epsilon: float = 1e-7
) -> jax.Array:
    """Cross-entropy against integer class labels.

    Args:
        predictions: ``[..., classes]`` probabilities, or logits with ``from_logits=True``.
        targets: ``[...]`` integer labels in ``[0, classes)``.

    Example:
        >>> logits = jnp.array([[2.0, 0.0], [0.0, 2.0]])
        >>> round(float(sparse_categorical_crossentropy(logits, jnp.array([0, 1]), from_logits=True)), 4)
        0.1269
    """
    name = "sparse_categorical_crossentropy"
    predictions, targets = jnp.asarray(predictions), jnp.asarray(targets)
    if not jnp.issubdtype(targets.dtype, jnp.integer):
        raise TypeError(
            f"{name}: targets must be integer class labels, got dtype {targets.dtype}. "
            "For one-hot targets use categorical_crossentropy; otherwise y.astype(jnp.int32)."
        )
    if predictions.ndim < 1 or predictions.shape[:-1] != targets.shape:
        raise ValueError(
            f"{name}: targets must have shape {predictions.shape[:-1]} (the predictions' "
            f"shape {predictions.shape} without the class axis), got {targets.shape}."
        )
    if from_logits:
        return jnp.mean(
            optax.losses.softmax_cross_entropy_with_integer_labels(predictions, targets)
        )
    p = jnp.take_along_axis(jnp.clip(predictions, epsilon, 1.0), targets[..., None], axis=-1)
    return -jnp.mean(jnp.log(p))


def multi_loss(losses: Sequence[Loss], weights: Sequence[float] | None = None) -> Loss:
    """One loss per output of a multi-output model, combined into their mean.

    With ``weights``, the combination is ``sum(w_i * loss_i) / sum(w_i)``.

    Args:
        losses: one loss (or loss name) per output, in the model's output order.
        weights: optional non-negative weight per output.

    Returns:
        ``loss(predictions, targets)`` over tuples of predictions and targets.

    Example:
        >>> both = multi_loss([mse, mae], weights=[1.0, 3.0])
        >>> float(both((jnp.zeros(2), jnp.zeros(2)), (jnp.full(2, 2.0), jnp.full(2, 2.0))))
        2.5
    """
    fns = [get_loss(loss) for loss in losses]
    if weights is None:
        w = [1.0] * len(fns)
    else:
        w = [float(v) for v in weights]
        if len(w) != len(fns) or any(v < 0 for v in w) or sum(w) == 0:
            raise ValueError(
                f"multi_loss: weights must be {len(fns)} non-negative numbers, not all zero, "
                f"got {list(weights)}."
            )
    total = sum(w)

    def loss(predictions, targets):
        if not isinstance(predictions, (tuple, list)) or len(predictions) != len(fns):
            raise ValueError(
                f"multi_loss: expected a tuple of {len(fns)} predictions (one per loss), "
                f"got {type(predictions).__name__}"
                f"{' of ' + str(len(predictions)) if isinstance(predictions, (tuple, list)) else ''}."
            )
        if not isinstance(targets, (tuple, list)) or len(targets) != len(fns):
            raise ValueError(
                f"multi_loss: expected a tuple of {len(fns)} targets (one per output), "
                f"got {type(targets).__name__}."
            )
        values = [wi * fn(p, t) for wi, fn, p, t in zip(w, fns, predictions, targets)]
        return sum(values) / total

    return loss


LOSSES: dict[str, Loss] = {
    "mse": mse,
    "mean_squared_error": mse,
    "mae": mae,
    "mean_absolute_error": mae,
    "huber": huber,
    "binary_crossentropy": binary_crossentropy,
    "categorical_crossentropy": categorical_crossentropy,
    "sparse_categorical_crossentropy": sparse_categorical_crossentropy,
}
"""Loss names accepted wherever a loss may be given as a string, as in Keras."""


def get_loss(loss: str | Loss) -> Loss:
    """Resolves a loss given by name or as a function."""
    if callable(loss):
        return loss
    if isinstance(loss, str) and loss.lower() in LOSSES:
        return LOSSES[loss.lower()]
    raise ValueError(
        f"unknown loss {loss!r}. Valid names: {', '.join(sorted(LOSSES))}; or pass a function "
        "loss(predictions, targets) -> scalar."
    )
