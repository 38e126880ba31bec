"""The Keras callbacks users reach for, under Keras 3's names and meanings.

``CSVLogger``, ``TensorBoard``, ``LearningRateScheduler``, ``LambdaCallback``
and ``BackupAndRestore`` take Keras's arguments and do what Keras's do, on
funcnet's per-epoch hooks (:class:`~funcnet.Callback`). ``fit`` runs each
epoch as compiled chunks of steps, so there are no per-batch hooks: the
arguments that ask for them (``update_freq="batch"``, an integer
``save_freq``, ``on_train_batch_end``) are refused with a message rather than
accepted and ignored. Every argument is checked when the callback is built,
before any training.
"""

from __future__ import annotations

import csv
import importlib.util
import inspect
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

import jax
import numpy as np

from funcnet._src.files.manager import CheckpointManager
from funcnet._src.training.callbacks import (
    Callback,
    Logs,
    injected_hyperparam,
    with_hyperparam,
)

PathLike = str | os.PathLike


def _check_path(name: str, argument: str, value: Any) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise TypeError(
            f"{name}: {argument} must be a non-empty path (str or os.PathLike), got "
            f"{type(value).__name__}: {value!r:.60}."
        )
    return Path(value)


def _check_writable_dir(name: str, argument: str, directory: Path) -> None:
    """``directory`` exists (or can be created) and is writable; else a clear error now, not mid-run."""
    existing = directory
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(
            f"{name}: {argument} {str(directory)!r} cannot be a directory: {str(existing)!r} is "
            "a file. Give a path inside a directory."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(
            f"{name}: {argument} {str(directory)!r} is not writable (no write permission in "
            f"{str(existing)!r}). Give a directory you can write to."
        )


def _check_bool(name: str, argument: str, value: Any) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: {argument} must be True or False, got {value!r}.")


def _is_writer() -> bool:
    """Only process 0 writes files, as with fit's checkpoints."""
    return jax.process_index() == 0


class CSVLogger(Callback):
    """Writes each epoch's logs as a row of a CSV file, as Keras 3's ``CSVLogger``.

    The file is Keras's, byte for byte: an ``epoch`` column (counting from
    0), then the log names sorted; when the logs hold no ``val_`` names, a
    ``val_<name>`` column is added for each, filled with ``NA``. Rows are
    flushed as they are written, so the file can be read during training.

    Args:
        filename: the CSV file; its directory must exist.
        separator: the one-character field separator.
        append: add to an existing file (no second header) instead of
            overwriting it, e.g. when continuing a run.

    Example:
        >>> import tempfile, numpy as np, optax, funcnet as fn
        >>> path = tempfile.mkdtemp() + "/log.csv"
        >>> x = np.ones((4, 2), np.float32)
        >>> _ = fn.fit(fn.Dense(1), x, x[:, :1], loss="mse", optimizer=optax.sgd(0.1), epochs=2,
        ...            callbacks=[fn.CSVLogger(path)], verbose=0)
        >>> open(path).read().splitlines()[0]
        'epoch,loss,val_loss'
    """

    def __init__(self, filename: PathLike, separator: str = ",", append: bool = False):
        path = _check_path("CSVLogger", "filename", filename)
        if path.is_dir():
            raise IsADirectoryError(
                f"CSVLogger: filename {str(path)!r} is a directory; give a file name such as "
                f"{str(path / 'training.csv')!r}."
            )
        if not path.parent.is_dir():
            raise FileNotFoundError(
                f"CSVLogger: the directory of {str(path)!r} does not exist; create it first "
                "(os.makedirs) or give a file in an existing directory."
            )
        _check_writable_dir("CSVLogger", "filename's directory", path.parent)
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(
                f"CSVLogger: separator must be one character such as ',' or ';', got {separator!r}."
            )
        _check_bool("CSVLogger", "append", append)
        self.filename = str(path)
        self.sep = separator
        self.append = bool(append)
        self.keys: list[str] | None = None
        self.file: TextIO | None = None
        self.writer: csv.DictWriter[str] | None = None

    def on_train_begin(self) -> None:
        if not _is_writer():
            return
        header = True
        if self.append and os.path.exists(self.filename):
            with open(self.filename) as existing:
                header = not existing.readline()
        if self.file is not None and not self.file.closed:
            self.file.close()
        # newline="": the csv module writes its own line ends (Keras's \r\n, the excel dialect).
        self.file = open(self.filename, "a" if self.append else "w", newline="")
        self.header, self.keys, self.writer = header, None, None

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        if self.file is None:
            return
        if self.keys is None:
            self.keys = sorted(logs)
            if self.keys and not any(key.startswith("val_") for key in self.keys):
                self.keys += [f"val_{key}" for key in self.keys]
        if self.writer is None:
            dialect = type("Dialect", (csv.excel,), {"delimiter": self.sep})
            self.writer = csv.DictWriter(
                self.file, fieldnames=["epoch", *self.keys], dialect=dialect
            )
            if self.header:
                self.writer.writeheader()
        self.writer.writerow({"epoch": epoch, **{k: logs.get(k, "NA") for k in self.keys}})
        self.file.flush()

    def on_train_end(self) -> None:
        if self.file is not None and not self.file.closed:
            self.file.close()
        self.file, self.writer = None, None


def _learning_rate(callback: Callback) -> float | None:
    rate = injected_hyperparam(callback.run.train_state.opt_state, "learning_rate")
    return None if rate is None else float(np.asarray(rate))


class TensorBoard(Callback):
    """Writes each epoch's logs as TensorBoard scalars, as Keras 3's ``TensorBoard``.

    As in Keras, the training logs go to ``log_dir/train`` and the
    validation logs (``val_<name>``, without the prefix) to
    ``log_dir/validation``, each named ``epoch_<name>`` at step ``epoch``
    (counting from 0), so ``epoch_loss`` shows training and validation loss
    on one chart. An injected learning rate is logged as
    ``epoch_learning_rate``. Written with tensorboardX
    (``pip install 'funcnet[tensorboard]'``); view with
    ``tensorboard --logdir <log_dir>``.

    Args:
        log_dir: the directory for the event files (created if needed).
        histogram_freq: every this many epochs, a histogram of every
            parameter (named by its path in the params, e.g.
            ``params/0/w``) under ``train``; 0 writes none.
        update_freq: only ``"epoch"``: fit runs an epoch as compiled chunks,
            so there are no per-batch logs to write.

    Example:
        >>> import tempfile, numpy as np, optax, funcnet as fn
        >>> board = fn.TensorBoard(tempfile.mkdtemp())
        >>> x = np.ones((4, 2), np.float32)
        >>> _ = fn.fit(fn.Dense(1), x, x[:, :1], loss="mse", optimizer=optax.sgd(0.1), epochs=2,
        ...            callbacks=[board], verbose=0)
        >>> sorted(p.name for p in board.path.iterdir())
        ['train']
    """

    def __init__(
        self, log_dir: PathLike = "logs", histogram_freq: int = 0, update_freq: str = "epoch"
    ):
        path = _check_path("TensorBoard", "log_dir", log_dir)
        _check_writable_dir("TensorBoard", "log_dir", path)
        if (
            not isinstance(histogram_freq, (int, np.integer))
            or isinstance(histogram_freq, bool)
            or histogram_freq < 0
        ):
            raise ValueError(
                f"TensorBoard: histogram_freq must be an integer >= 0 (0: no histograms), got "
                f"{histogram_freq!r}."
            )
        if update_freq != "epoch":
            raise ValueError(
                f"TensorBoard: update_freq must be 'epoch', got {update_freq!r}. fit runs each "
                "epoch as compiled chunks of steps, so it logs once per epoch."
            )
        if importlib.util.find_spec("tensorboardX") is None:
            raise ImportError(
                "TensorBoard needs the tensorboardX package to write event files: "
                "pip install 'funcnet[tensorboard]' (or pip install tensorboardX)."
            )
        self.path = path
        self.log_dir = str(path)
        self.histogram_freq = int(histogram_freq)
        self.writers: dict[str, Any] = {}

    def _writer(self, kind: str) -> Any:
        # Created on first use, as Keras does: no empty validation folder without validation.
        if kind not in self.writers:
            from tensorboardX import SummaryWriter

            self.writers[kind] = SummaryWriter(str(self.path / kind))
        return self.writers[kind]

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        if not _is_writer():
            return
        train = {k: v for k, v in logs.items() if not k.startswith("val_")}
        validation = {k[4:]: v for k, v in logs.items() if k.startswith("val_")}
        rate = _learning_rate(self)
        if rate is not None:
            train.setdefault("learning_rate", rate)
        for kind, values in (("train", train), ("validation", validation)):
            if values:
                writer = self._writer(kind)
                for name, value in values.items():
                    writer.add_scalar(f"epoch_{name}", float(value), global_step=epoch)
                writer.flush()
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            writer = self._writer("train")
            params = jax.device_get(self.run.train_state.params)
            for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
                name = "params" + "".join(f"/{_key_name(k)}" for k in path)
                writer.add_histogram(name, np.asarray(leaf, np.float32), global_step=epoch)
            writer.flush()

    def on_train_end(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers = {}


def _key_name(key: Any) -> str:
    for attribute in ("key", "idx", "name"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def _positional_arity(function: Callable[..., Any]) -> tuple[int, int] | None:
    """(required, most) positional arguments ``function`` takes, or None when unknown."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    positional = [p for p in parameters if p.kind in kinds]
    required = sum(p.default is inspect.Parameter.empty for p in positional)
    if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return required, 1 << 30
    return required, len(positional)


class LearningRateScheduler(Callback):
    """Sets the learning rate before every epoch to ``schedule(epoch, lr)``, as Keras 3's.

    ``epoch`` counts from 0 and ``lr`` is the current rate (a float); a
    one-argument ``schedule(epoch)`` works too (Keras's older form). The
    optimizer must inject its learning rate, as for
    :class:`~funcnet.ReduceLROnPlateau`:
    ``optax.inject_hyperparams(optax.sgd)(learning_rate=0.01)``; the rate is
    changed in the optimizer state between epochs, so nothing recompiles.
    Each epoch's rate is logged as ``learning_rate``.

    Args:
        schedule: ``schedule(epoch, lr) -> new lr`` (a number >= 0).
        verbose: 1 prints each epoch's rate.

    Example:
        >>> import numpy as np, optax, funcnet as fn
        >>> halve = fn.LearningRateScheduler(lambda epoch, lr: lr if epoch == 0 else lr / 2)
        >>> opt = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
        >>> x = np.ones((4, 2), np.float32)
        >>> result = fn.fit(fn.Dense(1), x, x[:, :1], loss="mse", optimizer=opt, epochs=3,
        ...                 callbacks=[halve], verbose=0)
        >>> [round(rate, 4) for rate in result.history["learning_rate"]]
        [0.1, 0.05, 0.025]
    """

    def __init__(self, schedule: Callable[..., Any], verbose: int = 0):
        if not callable(schedule):
            raise TypeError(
                f"LearningRateScheduler: schedule must be a function schedule(epoch, lr) -> new "
                f"learning rate, got {type(schedule).__name__}: {schedule!r:.40}."
            )
        arity = _positional_arity(schedule)
        if arity is not None and not arity[0] <= 2 <= arity[1] and arity != (1, 1):
            raise TypeError(
                f"LearningRateScheduler: schedule must take (epoch, lr) (or just epoch); it "
                f"takes {arity[0]} required positional argument{'s' * (arity[0] != 1)}. "
                "Write it as def schedule(epoch, lr): return ..."
            )
        if verbose not in (0, 1) or isinstance(verbose, bool):
            raise ValueError(f"LearningRateScheduler: verbose must be 0 or 1, got {verbose!r}.")
        self.schedule = schedule
        self.takes_lr = arity is None or arity != (1, 1)
        self.verbose = verbose

    def on_train_begin(self) -> None:
        if injected_hyperparam(self.run.train_state.opt_state, "learning_rate") is None:
            raise ValueError(
                "LearningRateScheduler needs an optimizer whose learning rate is injected: build "
                "it with optax.inject_hyperparams, e.g. "
                "optax.inject_hyperparams(optax.sgd)(learning_rate=0.01)."
            )

    def on_epoch_begin(self, epoch: int, logs: Logs) -> None:
        rate = _learning_rate(self)
        new = self.schedule(epoch, rate) if self.takes_lr else self.schedule(epoch)
        value = np.asarray(new) if isinstance(new, (np.ndarray, jax.Array, np.generic)) else new
        if isinstance(value, np.ndarray):
            value = value.item() if value.size == 1 and value.dtype.kind in "iuf" else value
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise TypeError(
                f"LearningRateScheduler: schedule({epoch}, {rate}) returned "
                f"{type(new).__name__}: {new!r:.40}; it must return the new learning rate as a "
                "number."
            )
        if not math.isfinite(value) or value < 0:
            raise ValueError(
                f"LearningRateScheduler: schedule({epoch}, {rate}) returned {value!r}; a learning "
                "rate must be a finite number >= 0."
            )
        ts = self.run.train_state
        self.run.train_state = ts._replace(
            opt_state=with_hyperparam(ts.opt_state, "learning_rate", value)
        )
        if self.verbose:
            print(
                f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {value}.",
                flush=True,
            )

    def epoch_logs(self, epoch: int, logs: Logs) -> Mapping[str, float]:
        # ReduceLROnPlateau logs the same injected rate: whichever comes first logs it.
        rate = _learning_rate(self)
        return {} if rate is None or "learning_rate" in logs else {"learning_rate": rate}


_LAMBDA_HOOKS = ("on_epoch_begin", "on_epoch_end", "on_train_begin", "on_train_end")


class LambdaCallback(Callback):
    """A callback from functions, with Keras 3's signatures.

    ``on_epoch_begin(epoch, logs)`` and ``on_epoch_end(epoch, logs)`` get the
    epoch (counting from 0) and the logs (empty at the beginning of an
    epoch); ``on_train_begin(logs)`` gets empty logs and
    ``on_train_end(logs)`` the last epoch's, as in Keras. Keras's per-batch
    hooks (``on_train_batch_begin``, ``on_train_batch_end``) are refused:
    fit runs an epoch as compiled chunks and calls nothing between steps.

    Example:
        >>> import numpy as np, optax, funcnet as fn
        >>> seen = []
        >>> log = fn.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(epoch))
        >>> x = np.ones((4, 2), np.float32)
        >>> _ = fn.fit(fn.Dense(1), x, x[:, :1], loss="mse", optimizer=optax.sgd(0.1), epochs=3,
        ...            callbacks=[log], verbose=0)
        >>> seen
        [0, 1, 2]
    """

    def __init__(
        self,
        on_epoch_begin: Callable[[int, Logs], Any] | None = None,
        on_epoch_end: Callable[[int, Logs], Any] | None = None,
        on_train_begin: Callable[[Logs], Any] | None = None,
        on_train_end: Callable[[Logs], Any] | None = None,
        **kwargs: Any,
    ):
        for name in kwargs:
            if name in (
                "on_train_batch_begin",
                "on_train_batch_end",
                "on_batch_begin",
                "on_batch_end",
            ):
                raise ValueError(
                    f"LambdaCallback: {name} is not supported: fit runs each epoch as compiled "
                    "chunks of steps and calls no Python between batches. Use on_epoch_end, or "
                    "fit(..., steps_per_execution=k) with a smaller epoch."
                )
            raise TypeError(
                f"LambdaCallback: unknown hook {name!r}; the hooks are {', '.join(_LAMBDA_HOOKS)}."
            )
        given = dict(
            zip(_LAMBDA_HOOKS, (on_epoch_begin, on_epoch_end, on_train_begin, on_train_end))
        )
        for name, function in given.items():
            if function is not None and not callable(function):
                raise TypeError(
                    f"LambdaCallback: {name} must be a function, got "
                    f"{type(function).__name__}: {function!r:.40}."
                )
        self.functions = {name: f for name, f in given.items() if f is not None}
        self.last_logs: Logs = {}

    def _call(self, name: str, *args: Any) -> None:
        if name in self.functions:
            self.functions[name](*args)

    def on_train_begin(self) -> None:
        self.last_logs = {}
        self._call("on_train_begin", {})

    def on_epoch_begin(self, epoch: int, logs: Logs) -> None:
        self._call("on_epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        self.last_logs = logs
        self._call("on_epoch_end", epoch, logs)

    def on_train_end(self) -> None:
        self._call("on_train_end", self.last_logs)


class BackupAndRestore(Callback):
    """Backs the run up after every epoch and resumes an interrupted run, as Keras 3's.

    ``fit(..., callbacks=[fn.BackupAndRestore(backup_dir)])`` is
    ``fit(..., checkpoint=backup_dir, resume=True)`` with the backup removed
    after a fit that completes: the same script, run again after a crash or
    preemption, continues from the last completed epoch (train state, key,
    optimizer state and history) and ends with the params an uninterrupted
    run would have had. The backup is a :class:`~funcnet.CheckpointManager`
    directory written after every other callback; the directory holds one run.

    Differences from Keras, on purpose: the history returned after a resume
    holds every epoch (Keras's only the resumed ones); ``delete_checkpoint``
    removes the backup's checkpoint files and then the directory if it is
    empty, never other files.

    Args:
        backup_dir: the directory for the backup (created if needed).
        save_freq: ``"epoch"`` (fit backs up at epoch ends; an integer
            number of batches is refused).
        double_checkpoint: keep the previous backup too, so a damaged newest
            file falls back to it.
        delete_checkpoint: remove the backup after a fit that completes
            (stopped early included).

    Example:
        >>> import tempfile, numpy as np, optax, funcnet as fn
        >>> backup = fn.BackupAndRestore(tempfile.mkdtemp() + "/backup")
        >>> x = np.ones((4, 2), np.float32)
        >>> _ = fn.fit(fn.Dense(1), x, x[:, :1], loss="mse", optimizer=optax.sgd(0.1), epochs=2,
        ...            callbacks=[backup], verbose=0)
        >>> backup.path.exists()  # removed after a completed fit
        False
    """

    def __init__(
        self,
        backup_dir: PathLike,
        save_freq: str = "epoch",
        double_checkpoint: bool = False,
        delete_checkpoint: bool = True,
    ):
        path = _check_path("BackupAndRestore", "backup_dir", backup_dir)
        _check_writable_dir("BackupAndRestore", "backup_dir", path)
        if save_freq != "epoch":
            raise ValueError(
                f"BackupAndRestore: save_freq must be 'epoch', got {save_freq!r}. fit runs each "
                "epoch as compiled chunks and backs up at the end of every epoch."
            )
        _check_bool("BackupAndRestore", "double_checkpoint", double_checkpoint)
        _check_bool("BackupAndRestore", "delete_checkpoint", delete_checkpoint)
        self.path = path
        self.backup_dir = str(path)
        self.save_freq = save_freq
        self.double_checkpoint = bool(double_checkpoint)
        self.delete_checkpoint = bool(delete_checkpoint)

    def manager(self) -> CheckpointManager:
        """The backup's checkpoint manager: the newest epoch, and the one before with ``double_checkpoint``."""
        return CheckpointManager(self.path, max_to_keep=2 if self.double_checkpoint else 1)

    def take_over(self, checkpoint: Any, resume: Any, train_state_given: bool) -> tuple[Any, Any]:
        """fit's ``(checkpoint, resume)`` with this backup: ``(manager, True)``; refuses a second source."""
        if checkpoint is not None or (resume is not False and resume is not None):
            raise ValueError(
                "fit: BackupAndRestore backs up to and resumes from its backup_dir; give it, or "
                "checkpoint=/resume=, not both (BackupAndRestore(d) is checkpoint=d, resume=True "
                "plus removing the backup when fit completes)."
            )
        if train_state_given:
            raise ValueError(
                "fit: BackupAndRestore resumes from its backup_dir, so it cannot also continue "
                "from train_state; drop one of them."
            )
        return self.manager(), True

    def on_train_end(self) -> None:
        if not self.delete_checkpoint or not _is_writer() or not self.path.is_dir():
            return
        manager = self.manager()
        for step in manager.steps():
            manager.path(step).unlink(missing_ok=True)
        try:
            self.path.rmdir()
        except OSError:
            pass  # other files live there: they are not the backup's to delete
