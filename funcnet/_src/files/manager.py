"""``CheckpointManager``: a directory of numbered checkpoints.

Checkpoints are files ``<prefix>-<step:08d>.safetensors``; the manager keeps
the last ``max_to_keep`` (and, with ``best=``, the best by a metric), and
``restore()`` loads the newest readable one. It knows nothing of training:
``fit``'s checkpoint callback and resume are in ``funcnet._src.training``.
The policies and why are in ``docs/checkpoints.md``, section
"CheckpointManager".
"""

from __future__ import annotations

import math
import os
import re
import warnings
from pathlib import Path
from typing import Any

import jax

from funcnet._src.core import InputShape, Layer
from funcnet._src.files.checkpoint import (
    CheckpointInfo,
    checkpoint_info,
    load,
    save,
)
from funcnet._src.files.format import CheckpointError, CheckpointMismatchError
from funcnet._src.files.numbering import DEFAULT_PREFIX, SUFFIX, file_name, numbered_files
from funcnet._src.metrics import resolve_mode
from funcnet._src.parallel.sharded_io import gather_for_save


class CheckpointManager:
    """Saves numbered checkpoints in a directory, keeping the last few and the best.

    Args:
        directory: where the checkpoints live (created if needed).
        max_to_keep: how many of the newest checkpoints to keep; None keeps all.
        best: a metric name ("val_loss", "accuracy"): the checkpoint with its
            best value is kept as well, and :meth:`best` finds it.
        mode: "min", "max" or "auto" (max for accuracy-like names), for ``best``.
        prefix: the file name prefix.

    Example:
        >>> import tempfile, jax.numpy as jnp, funcnet as fn
        >>> manager = fn.CheckpointManager(tempfile.mkdtemp(), max_to_keep=2, best="loss")
        >>> for step, loss in enumerate([0.5, 0.1, 0.3, 0.4]):
        ...     _ = manager.save(step, {"w": jnp.full(2, step)}, metrics={"loss": loss})
        >>> manager.steps(), manager.best().name
        ([1, 2, 3], 'ckpt-00000001.safetensors')
        >>> params, info = manager.restore(like={"w": jnp.zeros(2, jnp.int32)})
        >>> params["w"].tolist(), info.metadata["step"]
        ([3, 3], 3)
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        max_to_keep: int | None = 3,
        best: str | None = None,
        mode: str = "auto",
        prefix: str = DEFAULT_PREFIX,
    ):
        if not isinstance(directory, (str, os.PathLike)):
            raise TypeError(
                "CheckpointManager: directory must be a path (str or os.PathLike), got "
                f"{type(directory).__name__}."
            )
        if Path(directory).exists() and not Path(directory).is_dir():
            raise NotADirectoryError(
                f"CheckpointManager: {directory} is a file, not a directory. Give the directory "
                "that holds (or will hold) the numbered checkpoints; read one file with "
                "fn.load(path)."
            )
        if best is not None and not isinstance(best, str):
            raise TypeError(
                f"CheckpointManager: best must be a metric name such as 'val_loss', or None; "
                f"got {type(best).__name__}."
            )
        if max_to_keep is not None and (
            not isinstance(max_to_keep, int) or isinstance(max_to_keep, bool) or max_to_keep < 1
        ):
            raise ValueError(
                f"CheckpointManager: max_to_keep must be a positive integer or None, got {max_to_keep!r}."
            )
        if not isinstance(prefix, str) or not re.fullmatch(r"[A-Za-z0-9_.]+", prefix):
            raise ValueError(
                f"CheckpointManager: prefix must be letters, digits, '_' or '.', got {prefix!r}."
            )
        if mode not in ("min", "max", "auto"):
            raise ValueError(
                f"CheckpointManager: mode must be 'min', 'max' or 'auto', got {mode!r}."
            )
        self.directory = Path(directory)
        self.max_to_keep = max_to_keep
        self.best_metric = best
        self.mode = resolve_mode("CheckpointManager", mode, best or "")
        self.prefix = prefix
        self.directory.mkdir(parents=True, exist_ok=True)
        if jax.process_index() == 0:  # the writer; another process's cleanup could hit its file
            for leftover in self.directory.glob(f".{prefix}-*{SUFFIX}.*.tmp"):
                leftover.unlink(missing_ok=True)

    def __repr__(self) -> str:
        return f"CheckpointManager({str(self.directory)!r}, steps={self.steps()})"

    def path(self, step: int) -> Path:
        """The file of checkpoint ``step`` (which need not exist yet)."""
        if not _is_step(step):
            raise ValueError(f"CheckpointManager.path: step must be an integer >= 0, got {step!r}.")
        return self.directory / file_name(self.prefix, step)

    def steps(self) -> list[int]:
        """The steps of the checkpoints on disk, oldest first."""
        return list(numbered_files(self.directory, self.prefix))

    def latest(self) -> Path | None:
        """The newest checkpoint's file, or None."""
        steps = self.steps()
        return self.path(steps[-1]) if steps else None

    def _metric(self, step: int) -> float | None:
        try:
            value = (
                checkpoint_info(self.path(step)).metadata.get("metrics", {}).get(self.best_metric)
            )
        except (CheckpointError, FileNotFoundError):
            return None
        return None if value is None or math.isnan(value) else float(value)

    def best(self) -> Path | None:
        """The file with the best value of the ``best`` metric (the oldest among ties), or None."""
        if self.best_metric is None:
            raise ValueError(
                'CheckpointManager: best() needs a metric; create the manager with best="val_loss" '
                "(or another logged name)."
            )
        step = self._best_step()
        return None if step is None else self.path(step)

    def _best_step(self) -> int | None:
        scored = [
            (value, step) for step in self.steps() if (value := self._metric(step)) is not None
        ]
        if not scored:
            return None
        sign = 1 if self.mode == "min" else -1
        _, step = min(scored, key=lambda pair: (sign * pair[0], pair[1]))
        return step

    def save(
        self,
        step: int,
        tree: Any,
        *,
        history: dict[str, list[float]] | None = None,
        metrics: dict[str, float] | None = None,
        net: Layer | None = None,
        input_shape: InputShape | None = None,
        metadata: dict[str, Any] | None = None,
        model: dict[str, Any] | None = None,
    ) -> Path:
        """Writes checkpoint ``step`` (see :func:`funcnet.save`), then drops old ones.

        With several processes (:mod:`funcnet.distributed`), call it on every
        process with the same arguments: arrays sharded across processes are
        gathered (:func:`~funcnet.gather_for_save`, a collective), process 0
        writes and prunes, and every process waits until the file is on disk,
        so any of them may read it next. The directory must be one that every
        process sees (a shared filesystem) for ``restore`` to work on all of them.

        Args:
            step: a non-negative integer naming the checkpoint; newer is larger.
            tree: the pytree to save (a TrainState, params, ...).
            history: the training history so far.
            metrics: this checkpoint's logs (``{"val_loss": 0.3, ...}``); must
                hold the ``best`` metric if the manager has one.
            net: the model, described in the file (with ``input_shape``).
            input_shape: the model's input shape.
            metadata: more JSON values; ``step`` and ``metrics`` are added to it.
            model: a :func:`~funcnet._src.files.checkpoint.describe_model` result, instead
                of ``net`` and ``input_shape``.

        Returns:
            The path written.
        """
        if not _is_step(step):
            raise ValueError(f"CheckpointManager.save: step must be an integer >= 0, got {step!r}.")
        if metadata is not None and not isinstance(metadata, dict):
            raise TypeError(
                f"CheckpointManager.save: metadata must be a dict, got {type(metadata).__name__}."
            )
        try:
            metrics = {str(k): float(v) for k, v in (metrics or {}).items()}
        except (AttributeError, TypeError, ValueError):
            raise TypeError(
                "CheckpointManager.save: metrics must be a dict of numbers such as "
                f'{{"val_loss": 0.3}}, got {metrics!r:.80}.'
            ) from None
        if self.best_metric is not None and self.best_metric not in metrics:
            raise ValueError(
                f"CheckpointManager.save: best={self.best_metric!r} is not in metrics; available: "
                f"{', '.join(sorted(metrics)) or 'none'}. Monitoring a 'val_' value in fit needs "
                "validation_data or validation_split."
            )
        meta = {**(metadata or {}), "step": step, "metrics": metrics}
        path = self.path(step)
        if jax.process_count() > 1:
            tree = gather_for_save(tree)  # every process takes part, in the same order
        if jax.process_index() == 0:
            save(
                path,
                tree,
                history=history,
                net=net,
                input_shape=input_shape,
                metadata=meta,
                model=model,
            )
            self._prune()
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f"funcnet checkpoint {step}")
        return path

    def _prune(self) -> None:
        steps = self.steps()
        if self.max_to_keep is None:
            return
        keep = set(steps[-self.max_to_keep :])
        if self.best_metric is not None and (best := self._best_step()) is not None:
            keep.add(best)
        for step in steps:
            if step not in keep:
                self.path(step).unlink(missing_ok=True)

    def restore(
        self,
        like: Any,
        *,
        step: int | str | None = None,
        net: Layer | None = None,
        input_shape: InputShape | None = None,
    ) -> tuple[Any, CheckpointInfo]:
        """Loads a checkpoint into ``like``'s structure (see :func:`funcnet.load`).

        Args:
            like: a pytree of the expected structure.
            step: a step number on disk (see :meth:`steps`), "best", or None for
                the newest readable checkpoint (an unreadable newest file is
                skipped with a warning).
            net: if given (with ``input_shape``), the saved model must be this one.
            input_shape: the model's input shape.

        Returns:
            ``(tree, info)``: the restored pytree and the checkpoint's
            :class:`~funcnet.CheckpointInfo` (history, metadata with ``step``
            and ``metrics``).
        """
        if step == "best":
            best = self.best()
            if best is None:
                raise FileNotFoundError(f"CheckpointManager: no checkpoint in {self.directory}.")
            candidates = [best]
        elif step is not None:
            steps = self.steps()
            on_disk = ", ".join(map(str, steps)) or "none yet"
            if not _is_step(step):
                raise ValueError(
                    f"CheckpointManager.restore: step must be a step number on disk ({on_disk}), "
                    f"'best', or None for the newest readable checkpoint; got {step!r}."
                )
            if step not in steps:
                raise FileNotFoundError(
                    f"CheckpointManager.restore: no checkpoint for step={step} in "
                    f"{self.directory}; the steps on disk are: {on_disk}."
                )
            candidates = [self.path(step)]
        else:
            candidates = [self.path(s) for s in reversed(self.steps())]
        if not candidates:
            raise FileNotFoundError(f"CheckpointManager: no checkpoint in {self.directory}.")
        for i, path in enumerate(candidates):
            try:
                tree = load(path, like, net=net, input_shape=input_shape)
                return tree, checkpoint_info(path)
            except CheckpointMismatchError:
                raise
            except CheckpointError as error:
                if step is not None or i == len(candidates) - 1:
                    raise
                warnings.warn(f"{error} Restoring the checkpoint before it.", stacklevel=2)
        raise AssertionError("unreachable")


def _is_step(step: Any) -> bool:
    return isinstance(step, int) and not isinstance(step, bool) and step >= 0
