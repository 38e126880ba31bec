"""Progress display for ``fit``: a tqdm bar (verbose=1) or one line per epoch (verbose=2).

Until the first steps are done the bar says it is compiling (the first call
of each compiled program traces and compiles it, which can take seconds
before any step runs). A run that stops early ends with the epoch it
stopped at and the reason, on the bar and on a line of its own.
"""

from __future__ import annotations

import sys
from typing import Any


def _format(logs: dict[str, float]) -> str:
    return " - ".join(f"{name}: {value:.4g}" for name, value in logs.items())


class Progress:
    """Shows training progress; silent when ``verbose`` is 0."""

    def __init__(self, verbose: int, epochs: int, steps_per_epoch: int | None):
        self.verbose = verbose
        self.epochs = epochs
        self.bar: Any = None
        if verbose == 1 and epochs > 0:
            from tqdm.auto import tqdm

            total = epochs * steps_per_epoch if steps_per_epoch else None
            self.bar = tqdm(
                total=total,
                unit="step",
                file=sys.stderr,
                dynamic_ncols=True,
                leave=True,
                desc="compiling",
            )

    def steps_done(self, epoch: int, steps: int, logs: dict[str, float] | None = None) -> None:
        """Advances the bar by ``steps`` training steps of ``epoch`` (0-based)."""
        if self.bar is not None:
            self.bar.set_description(f"epoch {epoch + 1}/{self.epochs}", refresh=False)
            if logs:
                self.bar.set_postfix_str(_format(logs), refresh=False)
            self.bar.update(steps)

    def epoch_done(self, epoch: int, logs: dict[str, float]) -> None:
        if self.verbose == 2:
            print(f"Epoch {epoch + 1}/{self.epochs} - {_format(logs)}", flush=True)
        elif self.bar is not None:
            self.bar.set_postfix_str(_format(logs))

    def close(self, message: str | None = None, epoch: int | None = None) -> None:
        """Ends the display; ``message`` says why training stopped early at ``epoch`` (0-based)."""
        stopped = None
        if message:
            where = (
                f"stopped at epoch {epoch + 1}/{self.epochs}" if epoch is not None else "stopped"
            )
            stopped = f"{where}: {message}"
        if self.bar is not None:
            if stopped is not None:
                self.bar.set_description(where, refresh=False)
            self.bar.close()
        if stopped and self.verbose:
            print(stopped, file=sys.stderr, flush=True)
