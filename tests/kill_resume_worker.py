"""A training run that checkpoints every epoch, for tests/test_kill_resume.py.

Run as a script, it trains :func:`run`'s model with ``fit(...,
checkpoint=<directory>, resume=True)``, so starting it again after a kill
continues the run; it prints ``epoch <n>`` after each epoch and, with
``--out``, saves the final train state and history there.

``--slow-fsync SECONDS`` makes every ``os.fsync`` sleep first, which widens
the window between writing a checkpoint's bytes and renaming the file into
place: the moment where a kill is most dangerous.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import numpy as np
import optax

import funcnet as fn

NET = fn.serial(fn.Dense(8), fn.BatchNorm(), fn.Relu(), fn.Dropout(0.25), fn.Dense(1))


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(36, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]], np.float32) > 0).astype(np.float32)
    return x, y


def run(epochs: int, **kwargs: Any) -> fn.FitResult:
    """The run under test: shuffling, dropout and batch norm, Adam, a partial last batch."""
    x, y = data()
    return fn.fit(
        NET,
        x,
        y,
        loss=fn.losses.get("binary_crossentropy", from_logits=True),  # NET ends in a logit
        optimizer=optax.adam(0.02),
        epochs=epochs,
        batch_size=8,
        shuffle=True,
        key=7,
        verbose=0,
        **kwargs,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out")
    parser.add_argument("--keep-all", action="store_true")
    parser.add_argument("--slow-fsync", type=float, default=0.0)
    parser.add_argument("--epoch-sleep", type=float, default=0.0)
    args = parser.parse_args()
    if args.slow_fsync:
        fsync = os.fsync

        def slow_fsync(fd: int) -> None:
            time.sleep(args.slow_fsync)
            fsync(fd)

        os.fsync = slow_fsync  # type: ignore[assignment]

    def report(epoch: int, logs: dict[str, float]) -> None:
        print(f"epoch {epoch + 1}", flush=True)
        time.sleep(args.epoch_sleep)

    manager = fn.CheckpointManager(args.directory, max_to_keep=None if args.keep_all else 2)
    result = run(args.epochs, checkpoint=manager, resume=True, callbacks=[report])
    if args.out:
        fn.save(args.out, result.train_state, history=result.history)
    print("done", flush=True)


if __name__ == "__main__":
    sys.exit(main())
