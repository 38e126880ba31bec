"""Losses: plain functions ``loss(predictions, targets) -> scalar`` (a batch mean).

They are built on ``optax.losses`` and check their inputs first, so a
shape mismatch fails with a clear message instead of silently broadcasting
(``(N, 1)`` predictions against ``(N,)`` targets would otherwise give an
``N x N`` loss); values are checked too when the arrays are concrete (not
traced). Options are keyword-only; ``get_loss(name, **options)`` fixes them,
e.g. ``get_loss("binary_crossentropy", from_logits=True)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
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


def _concrete(value: Any) -> bool:
    """Whether ``value``'s numbers are known now (not a tracer inside jit or grad)."""
    return not isinstance(value, jax.core.Tracer)


def check_binary_targets(name: str, targets: Any) -> None:
    """Raises if concrete ``targets`` hold values outside ``[0, 1]`` (e.g. -1/+1 labels)."""
    if not _concrete(targets) or np.size(targets) == 0:
        return
    low, high = float(np.min(targets)), float(np.max(targets))
    if low < 0.0 or high > 1.0:
        hint = " For -1/+1 labels use (y + 1) / 2." if low < 0.0 else ""
        raise ValueError(
            f"{name}: targets must be in [0, 1] (0/1 labels or probabilities), got values "
            f"from {low:g} to {high:g}.{hint}"
        )


def check_class_labels(name: str, targets: Any, classes: int | None) -> None:
    """Raises if concrete integer ``targets`` hold labels outside ``[0, classes)``."""
    if not _concrete(targets) or np.size(targets) == 0:
        return
    low, high = int(np.min(targets)), int(np.max(targets))
    if low < 0 or (classes is not None and high >= classes):
        bad = low if low < 0 else high
        valid = f"in [0, {classes})" if classes is not None else ">= 0"
        raise ValueError(
            f"{name}: targets must be class labels {valid}, got the label {bad}. "
            "Map the labels to 0, 1, ..., classes - 1 first (e.g. with np.unique(y, "
            "return_inverse=True))."
        )


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

    Args:
        predictions: ``[...]`` floats.
        targets: the same shape as ``predictions``.
        delta: where the loss turns from quadratic to linear; must be > 0.

    Example:
        >>> float(huber(jnp.array([0.0, 0.0]), jnp.array([0.5, 3.0])))
        1.3125
    """
    if _concrete(delta) and not float(delta) > 0:
        raise ValueError(
            f"huber: delta must be a number > 0 (where the loss turns linear), got {delta!r}. "
            "The default is 1.0; use mae for a purely linear loss."
        )
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
        from_logits: whether ``predictions`` are logits. By name in ``fit``:
            ``loss=fn.losses.get("binary_crossentropy", from_logits=True)``.
        epsilon: probabilities are clipped to ``[epsilon, 1 - epsilon]``, as Keras does.

    Raises:
        ValueError: concrete targets outside ``[0, 1]`` (e.g. -1/+1 labels).

    Example:
        >>> round(float(binary_crossentropy(jnp.array([0.5]), jnp.array([1.0]))), 4)
        0.6931
    """
    predictions, targets = _same_shape("binary_crossentropy", predictions, targets)
    check_binary_targets("binary_crossentropy", targets)
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
        from_logits: whether ``predictions`` are logits. By name in ``fit``:
            ``loss=fn.losses.get("categorical_crossentropy", from_logits=True)``.
        epsilon: probabilities are clipped to ``[epsilon, 1]``, as Keras does.

    Example:
        >>> logits = jnp.array([[0.0, 0.0]])
        >>> round(float(categorical_crossentropy(logits, jnp.array([[1.0, 0.0]]), from_logits=True)), 4)
        0.6931
    """
    targets = jnp.asarray(targets)
    if jnp.issubdtype(targets.dtype, jnp.integer) and targets.shape == jnp.shape(predictions)[:-1]:
        # The reverse of sparse_categorical_crossentropy's float-targets hint.
        raise ValueError(
            f"categorical_crossentropy: targets must be one-hot vectors of the predictions' shape "
            f"{jnp.shape(predictions)}, got integer class labels of shape {targets.shape}. For "
            "integer labels use loss='sparse_categorical_crossentropy', or one-hot encode them "
            "with jax.nn.one_hot(y, classes)."
        )
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
        from_logits: whether ``predictions`` are logits. By name in ``fit``:
            ``loss=fn.losses.get("sparse_categorical_crossentropy", from_logits=True)``.
        epsilon: probabilities are clipped to ``[epsilon, 1]``, as Keras does.

    Raises:
        ValueError: concrete labels outside ``[0, classes)``.

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
    check_class_labels(name, targets, predictions.shape[-1])
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
"""Loss names accepted wherever a loss may be given as a string, as in Keras.

The three cross-entropies expect probabilities (after a sigmoid or softmax);
for a model that ends in logits say so with
``get_loss("sparse_categorical_crossentropy", from_logits=True)``.
"""

# The losses that read their predictions as probabilities unless from_logits=True.
_PROBABILITY_LOSSES: dict[Any, str] = {
    binary_crossentropy: "binary",
    categorical_crossentropy: "categorical",
    sparse_categorical_crossentropy: "sparse",
}


@functools.cache
def _configured(fn: Loss, options: tuple[tuple[str, Any], ...]) -> Loss:
    # One function per (loss, options): fit caches its compiled programs by
    # the loss, so two get_loss(...) calls with the same options share them.
    configured = functools.partial(fn, **dict(options))
    functools.update_wrapper(configured, fn)
    return configured


def get_loss(loss: str | Loss, **options: Any) -> Loss:
    """Resolves a loss given by name or as a function, with its options fixed.

    Args:
        loss: a name from :data:`LOSSES` (case-insensitive) or a function
            ``loss(predictions, targets) -> scalar``.
        **options: keyword options of the loss, e.g. ``from_logits=True``
            for the cross-entropies or ``delta=2.0`` for ``huber``.

    Returns:
        ``loss(predictions, targets) -> scalar``; pass it as ``fit(..., loss=...)``.
        The same name and options give the same function (so ``fit`` reuses
        its compiled programs).

    Example:
        >>> import funcnet as fn
        >>> loss = fn.losses.get("sparse_categorical_crossentropy", from_logits=True)
        >>> round(float(loss(jnp.array([[2.0, 0.0]]), jnp.array([0]))), 4)
        0.1269
    """
    if isinstance(loss, str) and loss.lower() in LOSSES:
        fn = LOSSES[loss.lower()]
    elif callable(loss) and not isinstance(loss, type):
        fn = loss
    else:
        raise ValueError(
            f"unknown loss {loss!r}. Valid names: {', '.join(sorted(LOSSES))}; or pass a function "
            "loss(predictions, targets) -> scalar."
        )
    if not options:
        return fn
    try:
        return _configured(fn, tuple(sorted(options.items())))
    except TypeError:  # an unhashable option value: no sharing, same function
        return functools.update_wrapper(functools.partial(fn, **options), fn)


get = get_loss


def crossentropy_kind(loss: Loss) -> tuple[str | None, bool]:
    """Which cross-entropy ``loss`` is, and whether it was configured ``from_logits``.

    Returns ``("binary" | "categorical" | "sparse", from_logits)``, or
    ``(None, False)`` for any other loss (or a function of your own).

    Example:
        >>> crossentropy_kind(get_loss("binary_crossentropy", from_logits=True))
        ('binary', True)
    """
    options: dict[str, Any] = {}
    while isinstance(loss, functools.partial):
        options = {**loss.keywords, **options}
        loss = loss.func
    kind = _PROBABILITY_LOSSES.get(loss)
    return kind, bool(options.get("from_logits", False)) if kind else False


def check_first_batch(loss: Loss, predictions: Any, targets: Any, where: str = "fit") -> None:
    """Checks concrete predictions and targets against what a cross-entropy expects.

    Cheap enough for once per run (``fit`` calls it on its first batch, where
    the loss itself is traced and cannot look at values). The targets must be
    0/1 (binary) or labels in range (sparse); and a cross-entropy fed logits
    trains without an error but to a poor model, so without ``from_logits``
    predictions outside ``[0, 1]`` (or, for the categorical losses, rows far
    from summing to 1) stop the run with the fix, ``from_logits=True``.
    Any other loss is not checked.
    """
    kind, from_logits = crossentropy_kind(loss)
    if kind is None:
        return
    name = f"{kind}_crossentropy".replace("sparse_", "sparse_categorical_")
    p = np.asarray(predictions, np.float32)
    labels = np.asarray(targets)
    if kind == "binary":
        check_binary_targets(f"{where} (loss={name!r})", labels)
    elif kind == "sparse" and p.ndim >= 1 and np.issubdtype(labels.dtype, np.integer):
        check_class_labels(f"{where} (loss={name!r})", labels, p.shape[-1])
    if from_logits or p.size == 0 or not np.all(np.isfinite(p)):
        return  # non-finite predictions: the non-finite guard reports them
    low, high = float(p.min()), float(p.max())
    problem = ""
    if low < -1e-3 or high > 1 + 1e-3:
        problem = f"values from {low:.3g} to {high:.3g}, outside [0, 1]"
    elif kind != "binary" and p.ndim >= 1:
        # Loose: a softmax in bfloat16 sums to 1 only within about 1e-2.
        worst = float(np.max(np.abs(p.sum(axis=-1) - 1.0)))
        if worst > 0.05:
            problem = f"rows whose sums are up to {worst:.3g} away from 1"
    if problem:
        final = "sigmoid" if kind == "binary" else "softmax"
        raise ValueError(
            f"{where}: loss={name!r} expects probabilities (after a {final}), but the model's "
            f"predictions on the first batch have {problem}: they look like logits. Use "
            f"loss=fn.losses.get({name!r}, from_logits=True), or end the model with "
            f"fn.{final.capitalize()}()."
        )
