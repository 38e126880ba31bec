"""What every workload uses: the run's context, timing, and the loops that drive a framework.

Timing rules (the same for every framework):

- wall-clock ``time.perf_counter``; JAX work is awaited with
  ``jax.block_until_ready`` (each Trainer's ``sync``) before the clock stops;
- the first call (tracing and compiling) is timed apart from the steady
  state, and a fresh model object is built for every compile measurement,
  because JAX caches compiled programs per jitted function;
- a figure is the median over ``repeats`` samples; ``gc.collect()`` runs
  before each timed region so a collection of earlier garbage does not land
  in it.
"""

from __future__ import annotations

import contextlib
import gc
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from bench.report import Record, Results
from bench.spec import NotSupportedError, Task, Variant


@dataclass
class Context:
    """The run's settings, the loaded frameworks and the results collected so far."""

    quick: bool
    repeats: int
    frameworks: dict[str, ModuleType | str]
    results: Results = field(default_factory=Results)
    seed: int = 0
    verbose: bool = True
    budget: float = 90.0
    """Seconds after which a variant stops taking more repeats (it keeps those it has)."""

    def log(self, message: str) -> None:
        if self.verbose:
            print(message, file=sys.stderr, flush=True)

    def budget_note(self, samples: int) -> str:
        if samples < self.repeats:
            return f"{samples} of {self.repeats} repeats (time budget {self.budget:g} s)"
        return ""

    def available(self) -> Iterator[tuple[str, ModuleType]]:
        for name, module in self.frameworks.items():
            if not isinstance(module, str):
                yield name, module

    def variants(self, workload: str, kinds: tuple[str, ...] = ("loop", "fit")):
        """Every (framework, variant name, variant) to run; records skips for the rest."""
        for name, module in self.frameworks.items():
            if isinstance(module, str):
                self.results.skip(workload, name, module)
                continue
            for variant_name, variant in module.VARIANTS.items():
                if variant.workloads is not None and workload not in variant.workloads:
                    continue
                if variant.kind in kinds:
                    yield name, variant_name, variant

    @contextlib.contextmanager
    def guard(self, workload: str, framework: str, variant: str | None) -> Iterator[None]:
        """Runs one measurement; an error or NotSupportedError becomes a note, not a crash."""
        self.log(f"  {workload}: {framework} {variant or ''}")
        try:
            yield
        except NotSupportedError as reason:
            self.results.skip(workload, framework, f"not supported: {reason}", variant)
        except Exception as error:
            traceback.print_exc(file=sys.stderr)
            self.results.skip(
                workload, framework, f"error: {type(error).__name__}: {error}"[:300], variant
            )

    def record(
        self,
        workload: str,
        framework: str,
        variant: str | None,
        metric: str,
        samples: list[float],
        unit: str,
        better: str = "lower",
        note: str = "",
    ) -> Record:
        return self.results.add(
            Record(
                workload,
                framework,
                variant,
                metric,
                statistics.median(samples),
                unit,
                better,
                samples=[float(s) for s in samples],
                note=note,
            )
        )


def clock(run: Callable[[], Any]) -> float:
    """Seconds that ``run()`` takes (it must block until its work is done)."""
    gc.collect()
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def train_epochs(
    trainer: Any,
    x: np.ndarray,
    y: np.ndarray,
    epochs: int,
    batch_size: int,
    rng: np.random.Generator,
) -> None:
    """A hand-written epoch loop: shuffle on the host, numpy slices into ``step``, then sync."""
    n = len(x)
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            trainer.step(x[index], y[index])
    trainer.sync()


def steps_per_epoch(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


def make(variant: Variant, task: Task, seed: int) -> Any:
    return variant.make(task, seed)
