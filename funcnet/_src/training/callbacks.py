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
``on_epoch_end(epoch, logs)`` method (and, if it likes, ``on_train_begin()``,
``on_epoch_begin(epoch, logs)``, ``on_train_end()``), or a plain function
``f(epoch, logs)``.
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

    def on_epoch_begin(self, epoch: int, logs: Logs) -> None:
        """Called before every epoch trains, with empty logs (Keras's signature).

        It may replace ``run.train_state``, e.g. to set a new learning rate.
        """

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

    def on_epoch_begin(self, epoch: int, logs: Logs) -> None:
        if hasattr(self.obj, "on_epoch_begin"):
            self.obj.on_epoch_begin(epoch, logs)

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


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _check_count(name: str, argument: str, value: Any) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name}: {argument} must be an integer >= 0, got {value!r}.")


def _check_verbose(name: str, verbose: Any) -> None:
    if verbose not in (0, 1) or isinstance(verbose, bool):
        raise ValueError(
            f"{name}: verbose must be 0 (silent) or 1 (say what it does), got {verbose!r}."
        )


class EarlyStopping(Callback):
    """Stops training when a monitored value has stopped improving, as Keras 3's ``EarlyStopping``.

    The arguments, their order and defaults, and the counting are Keras's:
    each monitored epoch that is not an improvement of more than
    ``min_delta`` on the best value so far adds one to a wait count (an
    improvement resets it), and training stops at the end of the epoch where
    the count reaches ``patience`` (never after the first epoch). So with
    ``patience=3`` and a loss that stops improving after epoch 1, training
    stops after epoch 4, as in Keras. The first monitored epoch is always the
    first best.

    One difference, on purpose: a ``monitor`` missing from the logs is an
    error (Keras warns and never stops).

    Args:
        monitor: the log to watch ("val_loss", "loss", "val_accuracy", ...).
        min_delta: the smallest change that counts as an improvement (its
            absolute value is used).
        patience: epochs without improvement after which training stops.
        verbose: 1 prints the epoch it stopped at and the epoch restored.
        mode: "min", "max", or "auto" (max for accuracy-like names, min otherwise).
        baseline: a value to beat: an epoch that improves on the best so far
            but not on ``baseline`` does not reset the wait, so a run that
            never beats it stops after ``patience`` epochs.
        restore_best_weights: at the end of training (stopped early or not),
            put back the params and state of the epoch with the best value
            (the optimizer state stays the last epoch's, as in Keras).
        start_from_epoch: epochs to train before monitoring starts (a warm-up).
        restore_best: another name for ``restore_best_weights`` (funcnet's
            earlier spelling).

    Example:
        >>> import numpy as np, optax, funcnet as fn
        >>> stop = fn.EarlyStopping(monitor="loss", patience=3)
        >>> x = np.arange(100, dtype=np.float32).reshape(5, 20)
        >>> result = fn.fit(fn.Dense(10), x, np.zeros((5, 10)), loss="mse", optimizer=optax.sgd(0.0),
        ...                 epochs=10, batch_size=1, shuffle=False, callbacks=[stop], verbose=0)
        >>> len(result.history["loss"])  # as in Keras's example: only 4 epochs are run
        4
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0.0,
        patience: int = 0,
        verbose: int = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
        *,
        restore_best: bool | None = None,
    ):
        if not isinstance(monitor, str):
            raise TypeError(
                f"EarlyStopping: monitor must be the name of a log such as 'val_loss', got "
                f"{type(monitor).__name__}: {monitor!r:.40}."
            )
        if not _is_real(min_delta) or not math.isfinite(min_delta):
            raise ValueError(
                f"EarlyStopping: min_delta must be a finite number, got {min_delta!r}."
            )
        _check_count("EarlyStopping", "patience", patience)
        _check_verbose("EarlyStopping", verbose)
        if baseline is not None and (not _is_real(baseline) or math.isnan(baseline)):
            raise ValueError(f"EarlyStopping: baseline must be a number or None, got {baseline!r}.")
        _check_count("EarlyStopping", "start_from_epoch", start_from_epoch)
        if restore_best is not None:
            if restore_best_weights and not restore_best:
                raise ValueError(
                    "EarlyStopping: restore_best is another name for restore_best_weights; "
                    "give one of them."
                )
            restore_best_weights = restore_best
        if not isinstance(restore_best_weights, (bool, np.bool_)):
            raise TypeError(
                f"EarlyStopping: restore_best_weights must be True or False, got {restore_best_weights!r}."
            )
        self.monitor = monitor
        self.min_delta = abs(float(min_delta))
        self.patience = int(patience)
        self.verbose = verbose
        self.mode = resolve_mode("EarlyStopping", mode, monitor)
        self.baseline = None if baseline is None else float(baseline)
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = int(start_from_epoch)

    @property
    def restore_best(self) -> bool:
        """``restore_best_weights`` under funcnet's earlier name."""
        return self.restore_best_weights

    def on_train_begin(self) -> None:
        # Reset, so one instance serves several fits (as in Keras).
        self.wait = 0
        self.stopped_epoch = 0
        self.best: float | None = None
        self.best_epoch = 0
        self.best_state: Any = None

    def _improves_on(self, value: float, reference: float | None) -> bool:
        return reference is None or _improved(self.mode, value, reference, self.min_delta)

    def _keep(self, epoch: int) -> None:
        # Copied to the host: the device buffers are donated to the next chunk.
        ts = self.run.train_state
        self.best_state = jax.device_get((ts.params, ts.state))
        self.best_epoch = epoch

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        value = _monitored("EarlyStopping", self.monitor, logs)
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_state is None:
            self._keep(epoch)
        self.wait += 1
        if self._improves_on(value, self.best):
            self.best, self.best_epoch = value, epoch
            if self.restore_best_weights:
                self._keep(epoch)
            if self._improves_on(value, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            target = "" if self.baseline is None else f" on the baseline {self.baseline:.6g}"
            self.run.stop(
                f"EarlyStopping: {self.monitor} did not improve{target} for {self.wait} "
                f"epoch{'s' * (self.wait != 1)} (best {self.best:.6g} at epoch {self.best_epoch + 1})"
            )

    def on_train_end(self) -> None:
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping", flush=True)
        if self.restore_best_weights and self.best_state is not None:
            if self.verbose:
                print(
                    "Restoring model weights from the end of the best epoch: "
                    f"{self.best_epoch + 1}.",
                    flush=True,
                )
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
        # With LearningRateScheduler too, both would log the same injected rate: once is enough.
        return {} if "learning_rate" in logs else {"learning_rate": self.learning_rate()}

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
