"""Resuming ``fit`` from a checkpoint: ``fit(..., checkpoint=..., resume=...)``.

``fit``'s checkpoints are numbered by completed epochs and hold the epoch,
the train state, the history so far and the epoch's logs (written by
:class:`~funcnet.ModelCheckpoint`), which is everything needed to continue
the run exactly. Callbacks' own state (EarlyStopping's patience counter) is
not saved.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np

from funcnet._src.core import InputShape, Layer
from funcnet._src.files.checkpoint import (
    checkpoint_info,
    describe_model,
    load,
    model_differences,
)
from funcnet._src.files.format import CheckpointError, CheckpointMismatchError
from funcnet._src.files.manager import CheckpointManager
from funcnet._src.files.numbering import SUFFIX
from funcnet._src.training.step import History, TrainState


def as_manager(where: Any, what: str = "checkpoint") -> CheckpointManager:
    """A manager from a :class:`CheckpointManager` or a directory path."""
    if isinstance(where, CheckpointManager):
        return where
    if isinstance(where, (str, os.PathLike)):
        return CheckpointManager(where)
    raise TypeError(
        f"fit: {what} must be a CheckpointManager or a directory path, got {type(where).__name__}."
    )


def resume_fit(
    resume: Any,
    checkpoint: Any,
    train_state: TrainState,
    net: Layer,
    input_shape: InputShape,
    train_state_given: bool = False,
) -> tuple[TrainState, int, History | None]:
    """fit's ``resume=`` option: ``(train state, epochs already done, history so far)``.

    ``resume=True`` reads ``checkpoint``'s newest file; a manager or a
    directory its newest file; a file path that file. No checkpoint yet (an
    empty or new directory) starts afresh, so the same script starts and
    restarts a run.
    """
    if resume is False or resume is None:
        _warn_of_an_earlier_run(checkpoint)
        return train_state, 0, None
    if train_state_given:
        raise ValueError(
            "fit: give train_state (continue from it) or resume (continue from a checkpoint), "
            "not both."
        )
    if resume is True:
        if checkpoint is None:
            raise ValueError(
                "fit: resume=True resumes from the checkpoint directory; pass checkpoint=<dir> "
                "too, or resume=<dir, file or CheckpointManager>."
            )
        resume = checkpoint
    if isinstance(resume, (str, os.PathLike)) and (
        Path(resume).is_file() or str(resume).endswith(SUFFIX)
    ):
        _refuse_another_model(resume, Path(resume), net, input_shape)
        tree = load(resume, train_state, net=net, input_shape=input_shape)
        info = checkpoint_info(resume)
    else:
        manager = as_manager(resume, "resume")
        if not manager.steps():
            _check_processes_agree(0, resume)
            return train_state, 0, None
        _refuse_another_model(manager.directory, manager.latest(), net, input_shape)
        tree, info = manager.restore(train_state, net=net, input_shape=input_shape)
    history = {name: list(values) for name, values in info.history.items()}
    epoch = int(info.metadata.get("epoch", len(next(iter(history.values()), []))))
    _check_processes_agree(epoch, resume)
    return tree, epoch, history


def _warn_of_an_earlier_run(checkpoint: Any) -> None:
    """Warns when a fresh run is given a checkpoint directory that already holds a run.

    The new run's checkpoints 1, 2, ... replace the old ones by number, and the
    manager keeps the newest steps, so until the new run passes the old one
    the directory's ``latest()`` and ``best()`` would be the old run's.
    """
    if checkpoint is None or not isinstance(checkpoint, (str, os.PathLike, CheckpointManager)):
        return  # fit reports a wrong type
    manager = as_manager(checkpoint)
    steps = manager.steps()
    if steps:
        warnings.warn(
            f"fit: the checkpoint directory {manager.directory} already holds checkpoints of "
            f"an earlier run (steps {', '.join(map(str, steps))}), and this run starts afresh "
            "(resume=False): their steps and this run's would mix. Pass resume=True to "
            "continue that run, or give this run a directory of its own.",
            stacklevel=4,
        )


def _refuse_another_model(
    where: Any, newest: Path | None, net: Layer, input_shape: InputShape
) -> None:
    """Refuses to resume a run whose newest checkpoint was written by another model.

    Resuming would at best fail on the first mismatched shape, with a message
    about ``like``; at worst (same shapes, other layers) continue the other
    run's weights in this model, its ``latest()`` and ``best()`` mixing two runs.
    """
    if newest is None:
        return
    try:
        saved = checkpoint_info(newest).model
    except (CheckpointError, FileNotFoundError):
        return  # unreadable: restoring reports it (or falls back to an older file)
    differences = model_differences(saved, describe_model(net, input_shape))
    if not differences:
        return
    n = len(differences)
    raise CheckpointMismatchError(
        f"fit: the checkpoint to resume from, {newest}, was written by a different model "
        f"({n} difference{'s' * (n > 1)}; the checkpoint's model first, this one's second):\n  "
        + "\n  ".join(differences)
        + f"\nresume continues a run only with the model that wrote it. To train this model, "
        f"give it a checkpoint directory of its own (one directory holds one run), or delete "
        f"the checkpoints in {where} to start over there.",
        differences,
    )


def _check_processes_agree(epoch: int, resume: Any) -> None:
    """With several processes, all must resume from the same epoch, or all raise.

    Process 0 writes the checkpoints; a process that cannot see them (a
    directory on its own disk) would start afresh and wait forever in the
    first collective. One tiny all-gather turns that into the same error on
    every process.
    """
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    epochs = [int(e) for e in multihost_utils.process_allgather(np.int32(epoch))]
    if len(set(epochs)) > 1:
        found = ", ".join(f"process {i} at epoch {e}" for i, e in enumerate(epochs))
        where = resume.directory if isinstance(resume, CheckpointManager) else resume
        raise ValueError(
            f"fit: the processes resumed from different checkpoints in {str(where)!r} ({found}). "
            "Process 0 writes the checkpoints, so every process must read the same directory: "
            "put it on a filesystem that every host shares."
        )
