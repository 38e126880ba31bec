"""Callbacks: code that ``fit`` runs between compiled chunks of training.

A callback sees the run through ``self.run`` (a :class:`Run`): the current
train state, the history so far, and ``stop_training``. It may replace
``run.train_state`` (to restore the best params, or change the learning rate)
and set ``run.stop_training = True``.

``fit`` donates the train state's buffers to each compiled chunk, so a
callback that keeps arrays for later must copy them (``jax.device_get``), as
:class:`EarlyStopping` does.

User callbacks are :class:`Callback` subclasses, any object with an
``on_epoch_end(epoch, logs)`` method, or a plain function ``f(epoch, logs)``.
``epoch`` counts from 0; ``logs`` maps names (``"loss"``, ``"val_loss"``,
metric names) to floats.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from funcnet._src.training.step import History, TrainState


@dataclass
class Run:
    """What callbacks see of a training run in progress."""

    train_state: TrainState
    history: History
    epochs: int
    stop_training: bool = False
    stop_reason: str | None = None
    epoch: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def stop(self, reason: str) -> None:
        """Ends training after the current chunk, recording why."""
        self.stop_training = True
        self.stop_reason = reason


class Callback:
    """Base class: override the hooks you need. ``self.run`` is set before training."""

    run: Run

    def set_run(self, run: Run) -> None:
        self.run = run

    def on_train_begin(self) -> None:
        """Called once, before the first epoch."""

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        """Called after every epoch with that epoch's logs."""

    def on_train_end(self) -> None:
        """Called once, after the last epoch (also when training stopped early)."""


class _FunctionCallback(Callback):
    def __init__(self, fn: Callable[[int, dict[str, float]], Any]):
        self.fn = fn

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        self.fn(epoch, logs)


class _ObjectCallback(Callback):
    """Wraps an object that only has some of the hooks."""

    def __init__(self, obj: Any):
        self.obj = obj

    def set_run(self, run: Run) -> None:
        super().set_run(run)
        if hasattr(self.obj, "set_run"):
            self.obj.set_run(run)

    def on_train_begin(self) -> None:
        if hasattr(self.obj, "on_train_begin"):
            self.obj.on_train_begin()

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        self.obj.on_epoch_end(epoch, logs)

    def on_train_end(self) -> None:
        if hasattr(self.obj, "on_train_end"):
            self.obj.on_train_end()


def as_callback(obj: Any) -> Callback:
    """Converts a user callback (object or function) into a :class:`Callback`."""
    if isinstance(obj, Callback):
        return obj
    if hasattr(obj, "on_epoch_end"):
        return _ObjectCallback(obj)
    if callable(obj):
        return _FunctionCallback(obj)
    raise TypeError(
        f"a callback must be a funcnet.Callback, an object with on_epoch_end(epoch, logs), "
        f"or a function f(epoch, logs); got {type(obj).__name__}."
    )


def _improved(mode: str, value: float, best: float, min_delta: float) -> bool:
    if mode == "min":
        return value < best - min_delta
    return value > best + min_delta


def resolve_mode(name: str, mode: str, monitor: str) -> str:
    if mode == "auto":
        return (
            "max"
            if any(word in monitor for word in ("acc", "auc", "precision", "recall"))
            else "min"
        )
    if mode not in ("min", "max"):
        raise ValueError(f"{name}: mode must be 'min', 'max' or 'auto', got {mode!r}.")
    return mode


def _monitored(name: str, monitor: str, logs: dict[str, float]) -> float:
    if monitor not in logs:
        raise ValueError(
            f"{name}: monitor {monitor!r} is not in the logs; available: {', '.join(sorted(logs))}. "
            "Monitoring a 'val_' value needs validation_data or validation_split in fit."
        )
    return logs[monitor]


class EarlyStopping(Callback):
    """Stops when a monitored value has stopped improving for ``patience`` epochs.

    Args:
        monitor: the log to watch ("val_loss", "loss", "val_accuracy", ...).
        patience: epochs without improvement before stopping.
        min_delta: the smallest change that counts as an improvement.
        mode: "min", "max", or "auto" (max for accuracy-like names).
        restore_best: put back the params and state of the best epoch when stopping.

    Example:
        >>> stop = EarlyStopping(monitor="loss", patience=2)
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        *,
        patience: int = 0,
        min_delta: float = 0.0,
        mode: str = "auto",
        restore_best: bool = False,
    ):
        self.monitor = monitor
        self.patience = patience
        self.min_delta = abs(min_delta)
        self.mode = resolve_mode("EarlyStopping", mode, monitor)
        self.restore_best = restore_best

    def on_train_begin(self) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = -1
        self.wait = 0
        self.best_state: Any = None

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        value = _monitored("EarlyStopping", self.monitor, logs)
        if _improved(self.mode, value, self.best, self.min_delta):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                # Copied to the host: the device buffers are donated to the next chunk.
                ts = self.run.train_state
                self.best_state = jax.device_get((ts.params, ts.state))
            return
        self.wait += 1
        if self.wait > self.patience:
            self.run.stop(
                f"EarlyStopping: {self.monitor} did not improve for {self.wait} epochs "
                f"(best {self.best:.6g} at epoch {self.best_epoch + 1})"
            )

    def on_train_end(self) -> None:
        if self.restore_best and self.best_state is not None and self.run.stop_training:
            params, state = jax.tree.map(jax.numpy.asarray, self.best_state)
            self.run.train_state = self.run.train_state._replace(params=params, state=state)


def find_hyperparams(opt_state: Any) -> dict[str, Any] | None:
    """The ``hyperparams`` dict of the first ``optax.inject_hyperparams`` state in ``opt_state``."""
    if hasattr(opt_state, "hyperparams") and isinstance(opt_state.hyperparams, dict):
        return opt_state.hyperparams
    if isinstance(opt_state, (tuple, list)):
        for child in opt_state:
            found = find_hyperparams(child)
            if found is not None:
                return found
    return None


def replace_hyperparam(opt_state: Any, name: str, value: Any) -> Any:
    """``opt_state`` with the injected hyperparameter ``name`` set to ``value``."""
    if hasattr(opt_state, "hyperparams") and isinstance(opt_state.hyperparams, dict):
        old = opt_state.hyperparams[name]
        new = dict(opt_state.hyperparams)
        new[name] = jax.numpy.asarray(value, dtype=jax.numpy.result_type(old))
        return opt_state._replace(hyperparams=new)
    if isinstance(opt_state, (tuple, list)):
        children = [replace_hyperparam(child, name, value) for child in opt_state]
        return (
            type(opt_state)(*children)
            if hasattr(opt_state, "_fields")
            else type(opt_state)(children)
        )
    return opt_state


class ReduceLROnPlateau(Callback):
    """Multiplies the learning rate by ``factor`` when a monitored value stops improving.

    The optimizer must expose its learning rate through
    ``optax.inject_hyperparams``, e.g. ``optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)``;
    the rate is changed in the optimizer state between compiled chunks, so
    nothing recompiles.

    Args:
        monitor: the log to watch.
        factor: the multiplier, in (0, 1).
        patience: epochs without improvement before reducing.
        min_delta: the smallest change that counts as an improvement.
        min_lr: the rate never goes below this.
        mode: "min", "max" or "auto".
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        *,
        factor: float = 0.1,
        patience: int = 10,
        min_delta: float = 1e-4,
        min_lr: float = 0.0,
        mode: str = "auto",
    ):
        if not 0.0 < factor < 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor must be in (0, 1), got {factor!r}.")
        self.monitor = monitor
        self.factor = factor
        self.patience = patience
        self.min_delta = abs(min_delta)
        self.min_lr = min_lr
        self.mode = resolve_mode("ReduceLROnPlateau", mode, monitor)

    def on_train_begin(self) -> None:
        hyperparams = find_hyperparams(self.run.train_state.opt_state)
        if hyperparams is None or "learning_rate" not in hyperparams:
            raise ValueError(
                "ReduceLROnPlateau needs an optimizer whose learning rate is injected: build it "
                "with optax.inject_hyperparams, e.g. "
                "optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)."
            )
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait = 0

    def learning_rate(self) -> float:
        hyperparams = find_hyperparams(self.run.train_state.opt_state)
        assert hyperparams is not None
        return float(np.asarray(hyperparams["learning_rate"]))

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        value = _monitored("ReduceLROnPlateau", self.monitor, logs)
        logs["learning_rate"] = self.learning_rate()
        if _improved(self.mode, value, self.best, self.min_delta):
            self.best, self.wait = value, 0
            return
        self.wait += 1
        if self.wait > self.patience:
            new_lr = max(self.learning_rate() * self.factor, self.min_lr)
            ts = self.run.train_state
            opt_state = replace_hyperparam(ts.opt_state, "learning_rate", new_lr)
            self.run.train_state = ts._replace(opt_state=opt_state)
            self.wait = 0


class TerminateOnNaN(Callback):
    """Stops training at the first non-finite loss and keeps the last finite params.

    The compiled training loop itself detects the first non-finite loss or
    gradient and leaves the train state as it was before that step; this
    callback turns the detection into a stop with a message naming the epoch
    and step. ``fit`` adds it unless ``on_nonfinite="skip"``.
    """

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        bad = self.run.extra.get("nonfinite")
        if bad is not None:
            bad_epoch, bad_step = bad
            self.run.stop(
                f"TerminateOnNaN: non-finite loss or gradient at epoch {bad_epoch + 1}, step "
                f"{bad_step + 1} of that epoch; kept the params from before that step"
            )


class ModelCheckpoint(Callback):
    """Calls ``save(epoch, train_state, logs)`` every ``every`` epochs: the hook checkpoints plug into.

    Args:
        save: a function that writes the train state (and may keep the best by ``logs``).
        every: save every this many epochs (the last epoch is always saved).
    """

    def __init__(self, save: Callable[[int, TrainState, dict[str, float]], Any], *, every: int = 1):
        if every < 1:
            raise ValueError(f"ModelCheckpoint: every must be >= 1, got {every!r}.")
        self.save = save
        self.every = every

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        if (epoch + 1) % self.every == 0 or epoch + 1 == self.run.epochs or self.run.stop_training:
            self.save(epoch, self.run.train_state, logs)
