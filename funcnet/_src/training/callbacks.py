"""Callbacks: code that ``fit`` runs between epochs.

A callback sees the run through ``self.run`` (a :class:`Run`): the current
train state, the history so far (this epoch's logs included), the first
non-finite step, and ``stop_training``. It may replace ``run.train_state``
(to restore the best params, or change the learning rate) and call
``run.stop(reason)``. The ``logs`` it gets are read-only; a callback adds
values to them by returning them from :meth:`Callback.epoch_logs`.

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
import optax

from funcnet._src.core import InputShape, Layer
from funcnet._src.files.checkpoint import describe_model
from funcnet._src.files.manager import CheckpointManager
from funcnet._src.metrics import resolve_mode
from funcnet._src.training.step import History, NonFinite, TrainState

Logs = Mapping[str, float]
"""An epoch's logs as callbacks see them: read-only (a ``types.MappingProxyType``)."""


@dataclass
class Run:
    """A training run in progress: the one owner of its train state.

    ``fit`` creates it, replaces ``train_state`` after every epoch, appends
    every epoch's logs to ``history`` before the callbacks run, and records the
    run's first non-finite step in ``nonfinite``. Callbacks read it and may
    replace ``train_state`` or call :meth:`stop`.

    Example:
        >>> import optax, funcnet as fn
        >>> ts = fn.init_train_state(fn.Dense(1), optax.sgd(0.1), (None, 1))
        >>> run = Run(train_state=ts, history={"loss": []}, epochs=3)
        >>> run.stop("enough"); run.stop_training, run.stop_reason
        (True, 'enough')
    """

    train_state: TrainState
    history: History
    epochs: int
    stop_training: bool = False
    stop_reason: str | None = None
    epoch: int = 0
    nonfinite: NonFinite | None = None

    def stop(self, reason: str) -> None:
        """Ends training after the current epoch, recording why."""
        self.stop_training = True
        self.stop_reason = reason


class Callback:
    """Base class: override the hooks you need. ``self.run`` is set before training."""

    run: Run

    def set_run(self, run: Run) -> None:
        self.run = run

    def on_train_begin(self) -> None:
        """Called once, before the first epoch."""

    def epoch_logs(self, epoch: int, logs: Logs) -> Mapping[str, float]:
        """Values to add to the epoch's logs (and history); none by default.

        Called for every callback before any :meth:`on_epoch_end`, so every
        callback, the history, the checkpoint and the progress bar see the
        same, complete logs, whatever the callbacks' order.
        """
        return {}

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        """Called after every epoch with that epoch's logs (read-only)."""

    def on_train_end(self) -> None:
        """Called once, after the last epoch (also when training stopped early)."""


class _FunctionCallback(Callback):
    def __init__(self, fn: Callable[[int, Logs], Any]):
        self.fn = fn

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
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

    def epoch_logs(self, epoch: int, logs: Logs) -> Mapping[str, float]:
        if hasattr(self.obj, "epoch_logs"):
            return self.obj.epoch_logs(epoch, logs)
        return {}

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
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


def _monitored(name: str, monitor: str, logs: Logs) -> float:
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

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
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


def _in_hyperparams(path: tuple[Any, ...], value: Any) -> bool:
    """Whether ``path`` ends in the ``hyperparams`` of an ``optax.inject_hyperparams`` state."""
    return len(path) >= 2 and getattr(path[-2], "name", None) == "hyperparams"


def injected_hyperparam(opt_state: Any, name: str) -> Any:
    """The value of the hyperparameter ``name`` that ``optax.inject_hyperparams`` put in ``opt_state``, or None.

    Example:
        >>> import jax.numpy as jnp, optax
        >>> opt = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
        >>> round(float(injected_hyperparam(opt.init(jnp.zeros(2)), "learning_rate")), 6)
        0.1
    """
    return optax.tree_utils.tree_get(opt_state, name, filtering=_in_hyperparams)


def with_hyperparam(opt_state: Any, name: str, value: Any) -> Any:
    """``opt_state`` with the injected hyperparameter ``name`` set to ``value`` (in its dtype)."""
    old = injected_hyperparam(opt_state, name)
    new = jax.numpy.asarray(value, dtype=jax.numpy.result_type(old))
    return optax.tree_utils.tree_set(opt_state, _in_hyperparams, **{name: new})


class ReduceLROnPlateau(Callback):
    """Multiplies the learning rate by ``factor`` when a monitored value stops improving.

    The optimizer must expose its learning rate through
    ``optax.inject_hyperparams``, e.g. ``optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)``;
    the rate is changed in the optimizer state between compiled chunks, so
    nothing recompiles. Each epoch's rate is logged as ``learning_rate``.

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
        if injected_hyperparam(self.run.train_state.opt_state, "learning_rate") is None:
            raise ValueError(
                "ReduceLROnPlateau needs an optimizer whose learning rate is injected: build it "
                "with optax.inject_hyperparams, e.g. "
                "optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)."
            )
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait = 0

    def learning_rate(self) -> float:
        """The learning rate in the run's optimizer state now."""
        rate = injected_hyperparam(self.run.train_state.opt_state, "learning_rate")
        return float(np.asarray(rate))

    def epoch_logs(self, epoch: int, logs: Logs) -> Mapping[str, float]:
        return {"learning_rate": self.learning_rate()}

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        value = _monitored("ReduceLROnPlateau", self.monitor, logs)
        if _improved(self.mode, value, self.best, self.min_delta):
            self.best, self.wait = value, 0
            return
        self.wait += 1
        if self.wait > self.patience:
            new_lr = max(self.learning_rate() * self.factor, self.min_lr)
            ts = self.run.train_state
            opt_state = with_hyperparam(ts.opt_state, "learning_rate", new_lr)
            self.run.train_state = ts._replace(opt_state=opt_state)
            self.wait = 0


class TerminateOnNaN(Callback):
    """Stops training at the first non-finite loss or gradient and keeps the last finite params.

    The compiled training loop itself detects the first non-finite loss or
    gradient (``run.nonfinite``) and, with ``on_nonfinite="stop"``, leaves the
    train state as it was before that step; this callback turns the
    detection into a stop with a message naming the epoch and step. ``fit``
    adds it when ``on_nonfinite="stop"`` (the default) and the callbacks hold none.
    """

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        bad = self.run.nonfinite
        if bad is not None:
            self.run.stop(
                f"TerminateOnNaN: {bad.describe()}; kept the params from before that step"
            )


class ModelCheckpoint(Callback):
    """Saves the train state every ``every`` epochs: to a :class:`~funcnet.CheckpointManager`, or through a function.

    With a manager, checkpoint ``e`` holds the state after ``e`` completed
    epochs, the history so far and that epoch's logs (as ``metrics``), so
    ``fit(..., resume=manager)`` continues from it; ``fit(checkpoint=...)``
    does the same after every callback. As a callback it saves the train
    state as the callbacks before it in the list leave it.

    Args:
        save: a :class:`~funcnet.CheckpointManager`, or a function
            ``save(epoch, train_state, logs)``.
        every: save every this many epochs (the last epoch, and the epoch
            training stops at, are always saved).
        net: with a manager, the model to describe in each file (needs ``input_shape``).
        input_shape: the model's input shape.

    Example:
        >>> import tempfile, funcnet as fn
        >>> saver = ModelCheckpoint(fn.CheckpointManager(tempfile.mkdtemp()), every=5)
    """

    def __init__(
        self,
        save: CheckpointManager | Callable[[int, TrainState, Logs], Any],
        *,
        every: int = 1,
        net: Layer | None = None,
        input_shape: InputShape | None = None,
    ):
        if every < 1:
            raise ValueError(f"ModelCheckpoint: every must be >= 1, got {every!r}.")
        if net is not None and input_shape is None:
            raise ValueError(
                "ModelCheckpoint: net needs input_shape too, e.g. input_shape=(None, 784)."
            )
        self.every = every
        self.manager = save if isinstance(save, CheckpointManager) else None
        self.save = self._to_manager if isinstance(save, CheckpointManager) else save
        # Described once, not at every save: it traces the model's init.
        self.model = describe_model(net, input_shape) if net is not None else None

    def _to_manager(self, epoch: int, train_state: TrainState, logs: Logs) -> None:
        assert self.manager is not None
        self.manager.save(
            epoch + 1,
            train_state,
            history=self.run.history,
            metrics=dict(logs),
            metadata={"epoch": epoch + 1},
            model=self.model,
        )

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        if (epoch + 1) % self.every == 0 or epoch + 1 == self.run.epochs or self.run.stop_training:
            self.save(epoch, self.run.train_state, logs)
