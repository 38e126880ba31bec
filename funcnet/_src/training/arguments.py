"""The arguments every training entry point shares: the model, the optimizer, the metrics.

``fit``, ``fit_many``, ``predict``, ``evaluate``, ``make_train_step`` and
``init_train_state`` check them here, where they arrive, so a mistake names
the argument and the fix instead of failing deep inside JAX or optax.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import optax

from funcnet._src.core import Layer
from funcnet._src.metrics import Metric, get_metric

# Keras 3's optimizer names with their default hyperparameters where optax
# has the same knob (learning rate, epsilon, decay rates, AdamW's weight
# decay), so that optimizer="adam" trains as it does in Keras. Measured on
# keras 3 (keras.optimizers.Adam().learning_rate, .epsilon, ...); the test
# tests/test_bad_inputs_training.py compares them with Keras when installed.
OPTIMIZERS: dict[str, tuple[Callable[..., optax.GradientTransformation], dict[str, float]]] = {
    "sgd": (optax.sgd, {"learning_rate": 0.01}),
    "adam": (optax.adam, {"learning_rate": 0.001, "eps": 1e-7}),
    "adamw": (optax.adamw, {"learning_rate": 0.001, "eps": 1e-7, "weight_decay": 0.004}),
    "rmsprop": (optax.rmsprop, {"learning_rate": 0.001, "decay": 0.9, "eps": 1e-7}),
    "adagrad": (optax.adagrad, {"learning_rate": 0.001, "eps": 1e-7}),
    "adadelta": (optax.adadelta, {"learning_rate": 0.001, "rho": 0.95, "eps": 1e-7}),
    "adamax": (optax.adamax, {"learning_rate": 0.001, "eps": 1e-7}),
    "nadam": (optax.nadam, {"learning_rate": 0.001, "eps": 1e-7}),
    "lion": (optax.lion, {"learning_rate": 0.001}),
    "lamb": (optax.lamb, {"learning_rate": 0.001, "eps": 1e-7}),
}
"""Optimizer names accepted as ``optimizer=`` strings: ``{name: (optax factory, Keras defaults)}``."""


def _called_name(obj: Any) -> str:
    """How to call ``obj`` in a message: ``optax.adam`` or ``fn.Dense``."""
    module = getattr(obj, "__module__", "") or ""
    name = getattr(obj, "__qualname__", getattr(obj, "__name__", type(obj).__name__))
    if module.startswith("funcnet"):
        return f"fn.{name}"
    if module.startswith("optax"):
        return f"optax.{name}"
    return name


def get_optimizer(optimizer: Any, where: str) -> optax.GradientTransformation:
    """An optax optimizer from an optimizer or a Keras name ("adam": Keras's defaults).

    Args:
        optimizer: an ``optax.GradientTransformation``, or a name from
            :data:`OPTIMIZERS` (case-insensitive), built with Keras 3's
            default learning rate (sgd 0.01, the others 0.001).
        where: the calling function, for the error message.

    Example:
        >>> import jax.numpy as jnp
        >>> opt = get_optimizer("adam", "fit")  # optax.adam(0.001, eps=1e-7), as Keras's Adam()
        >>> updates, _ = opt.update({"w": jnp.ones(2)}, opt.init({"w": jnp.zeros(2)}))
        >>> [round(float(u), 4) for u in updates["w"]]
        [-0.001, -0.001]
    """
    if isinstance(optimizer, str):
        name = optimizer.lower()
        if name not in OPTIMIZERS:
            raise ValueError(
                f"{where}: unknown optimizer {optimizer!r}. Valid names: "
                f"{', '.join(sorted(OPTIMIZERS))} (with Keras's default learning rates); or pass "
                "an optax optimizer, e.g. optax.adam(1e-3)."
            )
        factory, defaults = OPTIMIZERS[name]
        return factory(**defaults)
    if isinstance(optimizer, optax.GradientTransformation):
        return optimizer
    if callable(optimizer) and not hasattr(optimizer, "init"):
        called = _called_name(optimizer)
        raise TypeError(
            f"{where}: optimizer must be an optax optimizer, got the function {called} itself. "
            f"Call it with a learning rate, e.g. optimizer={called}(1e-3), or pass a name "
            "such as 'adam'."
        )
    if hasattr(optimizer, "init") and hasattr(optimizer, "update"):
        return optimizer  # a GradientTransformation-like object of one's own
    raise TypeError(
        f"{where}: optimizer must be an optax optimizer (e.g. optax.adam(1e-3)) or a name "
        f"such as 'adam', got {type(optimizer).__name__}: {optimizer!r}."
    )


def check_net(net: Any, where: str) -> Layer:
    """``net`` if it is a funcnet :class:`Layer`; otherwise an error saying what to pass."""
    if isinstance(net, Layer):
        return net
    if callable(net):
        called = _called_name(net)
        kind = "class" if isinstance(net, type) else "function"
        raise TypeError(
            f"{where}: net must be a funcnet Layer, got the {kind} {called} itself. Call it "
            f"with its arguments to build the layer, e.g. {called}(...) (fn.Dense(4) for "
            "fn.Dense), and pass the result; combine layers with fn.serial(...)."
        )
    raise TypeError(
        f"{where}: net must be a funcnet Layer (e.g. fn.Dense(4) or fn.serial(...)), "
        f"got {type(net).__name__}: {net!r:.80}."
    )


def get_metrics(metrics: Any, where: str) -> tuple[tuple[str, Metric], ...]:
    """``(name, function)`` pairs from a list of metrics, or from a single name or function."""
    if isinstance(metrics, str) or callable(metrics):
        metrics = [metrics]  # metrics="mae" means ["mae"], not ["m", "a", "e"]
    if not isinstance(metrics, Iterable):
        raise TypeError(
            f"{where}: metrics must be a list of metric names or functions, e.g. "
            f"metrics=['mae'], got {type(metrics).__name__}: {metrics!r}."
        )
    return tuple(get_metric(m) for m in metrics)


def check_positive_int(where: str, name: str, value: Any, *, allow_none: bool = True) -> None:
    """Raises unless ``value`` is a positive integer (or None when allowed)."""
    if value is None and allow_none:
        return
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        none = " or None" if allow_none else ""
        raise ValueError(f"{where}: {name} must be a positive integer{none}, got {value!r}.")
