"""Metrics: plain functions ``metric(predictions, targets) -> scalar`` (batch means)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from funcnet._src.losses import mae, mse

Metric = Callable[[Any, Any], jax.Array]


def accuracy(predictions: ArrayLike, targets: ArrayLike) -> jax.Array:
    """The fraction of examples whose highest-scoring class is the target.

    This is the categorical accuracy: it needs a class axis of at least two
    scores. The name ``"accuracy"`` in ``fit(metrics=[...])`` is read by
    shape, as Keras reads it, so a one-unit
    sigmoid output gets :func:`binary_accuracy` there.

    Args:
        predictions: ``[..., classes]`` scores (logits or probabilities), ``classes >= 2``.
        targets: ``[...]`` integer labels, or ``[..., classes]`` one-hot vectors.

    Raises:
        ValueError: a class axis of size 1 (its argmax is always 0, so every
            model would score 100%), or targets of another shape.

    Example:
        >>> float(accuracy(jnp.array([[0.1, 0.9], [0.8, 0.2]]), jnp.array([1, 1])))
        0.5
    """
    predictions, targets = jnp.asarray(predictions), jnp.asarray(targets)
    if predictions.ndim >= 1 and predictions.shape[-1] == 1:
        raise ValueError(
            f"accuracy: predictions of shape {predictions.shape} have a class axis of size 1, "
            "whose argmax is always 0 (every model would score 100%). For one sigmoid output "
            "use binary_accuracy (metrics=['accuracy'] in fit reads a one-unit output that way)."
        )
    if targets.shape == predictions.shape:
        targets = jnp.argmax(targets, axis=-1)
    elif predictions.ndim < 1 or targets.shape != predictions.shape[:-1]:
        raise ValueError(
            f"accuracy: targets must be labels of shape {predictions.shape[:-1]} or one-hot "
            f"of shape {predictions.shape}, got {targets.shape}."
        )
    return jnp.mean(jnp.argmax(predictions, axis=-1) == targets)


def accuracy_by_shape(predictions: ArrayLike, targets: ArrayLike) -> jax.Array:
    """``"accuracy"`` as Keras reads the name: binary, sparse or one-hot by the shapes.

    - predictions with one unit (``[..., 1]``) or no class axis (the same
      shape as 1-D targets): :func:`binary_accuracy` at threshold 0.5;
    - targets with one axis fewer than the predictions (or a last axis of
      size 1): integer labels, sparse categorical accuracy;
    - otherwise one-hot targets: categorical accuracy.

    The shapes are static, so the choice is made once when ``fit`` compiles.

    Example:
        >>> float(accuracy_by_shape(jnp.array([[0.2], [0.7]]), jnp.array([[0.0], [0.0]])))
        0.5
        >>> float(accuracy_by_shape(jnp.array([[0.1, 0.9]]), jnp.array([1])))
        1.0
    """
    predictions, targets = jnp.asarray(predictions), jnp.asarray(targets)
    if (
        predictions.ndim == 0
        or predictions.shape[-1] == 1
        or (predictions.ndim == 1 and targets.shape == predictions.shape)
    ):
        if targets.shape != predictions.shape and targets.size == predictions.size:
            targets = targets.reshape(predictions.shape)  # [N] labels for an [N, 1] output
        return binary_accuracy(predictions, targets)
    if targets.ndim == predictions.ndim and targets.shape[-1] == 1:
        targets = targets[..., 0]  # [N, 1] labels, as Keras accepts them
    return accuracy(predictions, targets)


def binary_accuracy(
    predictions: ArrayLike, targets: ArrayLike, *, threshold: float = 0.5
) -> jax.Array:
    """The fraction of predictions on the target's side of ``threshold``.

    Args:
        predictions: probabilities (use ``threshold=0.0`` for logits).
        targets: the same shape, values 0 or 1.

    Example:
        >>> float(binary_accuracy(jnp.array([0.2, 0.7, 0.9]), jnp.array([0.0, 1.0, 0.0])))
        0.6666666865348816
    """
    predictions, targets = jnp.asarray(predictions), jnp.asarray(targets)
    if predictions.shape != targets.shape:
        raise ValueError(
            f"binary_accuracy: targets must have the predictions' shape {predictions.shape}, "
            f"got {targets.shape}."
        )
    return jnp.mean((predictions > threshold) == (targets > 0.5))


METRICS: dict[str, Metric] = {
    # By shape, as Keras reads the name (binary, sparse or categorical).
    "accuracy": accuracy_by_shape,
    "acc": accuracy_by_shape,
    "categorical_accuracy": accuracy,
    "sparse_categorical_accuracy": accuracy,
    "binary_accuracy": binary_accuracy,
    # Regression losses double as metrics, as in Keras.
    "mae": mae,
    "mse": mse,
}
"""Metric names accepted wherever a metric may be given as a string."""


def get_metric(metric: str | Metric) -> tuple[str, Metric]:
    """Resolves a metric by name or function, returning ``(name, function)``."""
    if isinstance(metric, str):
        if metric in METRICS:
            return metric, METRICS[metric]
        raise ValueError(f"unknown metric {metric!r}. Valid names: {', '.join(sorted(METRICS))}.")
    if callable(metric):
        return getattr(metric, "__name__", "metric"), metric
    raise TypeError(f"a metric must be a name or a function, got {type(metric).__name__}.")


def resolve_mode(name: str, mode: str, monitor: str) -> str:
    """Whether lower or higher values of the log ``monitor`` are better: "min" or "max".

    ``mode="auto"`` is "max" for accuracy-like names (acc, auc, precision,
    recall) and "min" otherwise; ``name`` names the caller in the error.

    Example:
        >>> resolve_mode("EarlyStopping", "auto", "val_accuracy")
        'max'
    """
    if mode == "auto":
        return (
            "max"
            if any(word in monitor for word in ("acc", "auc", "precision", "recall"))
            else "min"
        )
    if mode not in ("min", "max"):
        raise ValueError(f"{name}: mode must be 'min', 'max' or 'auto', got {mode!r}.")
    return mode
