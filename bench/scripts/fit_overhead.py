"""The per-call cost of ``fn.fit`` on small models, and fit against the hand-written epoch scan.

Run from the repository's root: ``python bench/scripts/fit_overhead.py``
(``--quick`` for a short run). Three figures, for the hello workload (Dense(1),
6 points, full batch) and the playground workload (2-4-2-1 tanh/sigmoid, 500
points, batch 10), with the bench's own models and data:

1. **overhead per call**: a warm ``fit(..., epochs=1)`` (the same net, loss
   and optimizer objects, continuing from the last result's train state, as
   the bench's steady state) minus the execution of the compiled epoch
   program that fit runs (``ArrayEngine.run_epoch``: the program's dispatch
   and the fetch of its logs, nothing else), both the median of many calls;
   "fresh" is the same with ``train_state=None`` (the init program runs too,
   and is counted as overhead).
2. **fit / scan over 100 epochs**: ``fit(..., epochs=100)`` against the
   hand-written per-epoch ``lax.scan`` of ``bench/frameworks/jax_fw.py``
   (``EpochScan``) training the same 100 epochs, interleaved.
3. **step call**: ``fn.make_train_step``'s step against a hand-written
   ``jax.jit`` step threading the same key and step count (the bench
   ``overhead`` workload's model: Dense 8 to 8, batch 8).

Every figure is given as wall time and as process CPU time (all threads),
measured interleaved (A, B, A, B, ...) so that a machine loaded by other
work slows both sides alike; the load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

import funcnet as fn
from bench import data
from bench.frameworks import funcnet_fw, jax_fw
from bench.workloads import hello, overhead, playground
from funcnet._src.losses import get_loss
from funcnet._src.training.engine import ArrayEngine, Training
from funcnet._src.training.progress import Progress


def _clock(fun: Callable[[], Any]) -> tuple[float, float]:
    """(wall, cpu) seconds of one call of ``fun``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fun()
    return time.perf_counter() - wall, time.process_time() - cpu


def interleaved(calls: int, **funs: Callable[[], Any]) -> dict[str, tuple[float, float]]:
    """Median (wall, cpu) seconds per call of each function, called in turn ``calls`` times."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in funs}
    for _ in range(calls):
        for name, fun in funs.items():
            times[name].append(_clock(fun))
    return {
        name: (statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts))
        for name, ts in times.items()
    }


def _workloads(quick: bool) -> dict[str, tuple[Any, np.ndarray, np.ndarray, int]]:
    x_h, y_h = data.hello()
    x_p, y_p = data.circle(500, seed=0)
    return {
        "hello": (hello.TASK, x_h, y_h, len(x_h)),
        "playground": (playground.TASK, x_p, y_p, 10),
    }


class EngineEpoch:
    """The compiled epoch that ``fit`` runs, called directly (dispatch and log fetch only)."""

    def __init__(self, task: Any, x: np.ndarray, y: np.ndarray, batch_size: int):
        net, optimizer = funcnet_fw.build(task), funcnet_fw.optimizer(task)
        training = Training(net, get_loss(funcnet_fw.loss(task)), optimizer)
        self.ts = fn.init_train_state(net, optimizer, (None, *x.shape[1:]), key=0)
        x_dev, y_dev = jax.device_put((x, y))
        self.engine = ArrayEngine(
            training, x_dev, y_dev, batch_size=batch_size, shuffle=True,
            steps_per_execution=None, loop="auto", like=self.ts,
        )  # fmt: skip
        self.progress = Progress(0, 1, None)
        self.net = net  # kept alive: the engine's programs are cached per model, weakly

    def __call__(self) -> None:
        self.ts, _ = self.engine.run_epoch(self.ts, 0, self.progress)


def overhead_per_call(calls: int, quick: bool) -> None:
    print("1. warm fit(epochs=1) minus the compiled epoch program (median ms per call)")
    print(f"   {'workload':<11}{'fit(1)':>17}{'program':>17}{'overhead':>17}{'fresh ovh':>17}")
    for name, (task, x, y, batch_size) in _workloads(quick).items():
        model = funcnet_fw.Fit(task, 0)
        fresh = funcnet_fw.Fit(task, 0)
        program = EngineEpoch(task, x, y, batch_size)

        def fit_once(model=model, x=x, y=y, batch_size=batch_size) -> None:
            model.fit(x, y, 1, batch_size)

        def fit_fresh(fresh=fresh, x=x, y=y, batch_size=batch_size) -> None:
            fresh.result = None  # init from the key again, every call
            fresh.fit(x, y, 1, batch_size)

        for _ in range(5):  # compile everything first
            fit_once(), fit_fresh(), program()
        med = interleaved(calls, fit=fit_once, program=program, fresh=fit_fresh)

        def pair(wall: float, cpu: float) -> str:
            return f"{wall * 1e3:7.3f}/{cpu * 1e3:<7.3f}"

        over = [med["fit"][i] - med["program"][i] for i in (0, 1)]
        fresh_over = [med["fresh"][i] - med["program"][i] for i in (0, 1)]
        print(
            f"   {name:<11}{pair(*med['fit']):>17}{pair(*med['program']):>17}"
            f"{pair(*over):>17}{pair(*fresh_over):>17}   (wall/cpu)"
        )


def fit_versus_scan(repeats: int, epochs: int) -> None:
    print(f"2. fit(epochs={epochs}) against the hand-written per-epoch scan (median ms per run)")
    for name, (task, x, y, batch_size) in _workloads(False).items():
        model = funcnet_fw.Fit(task, 0)
        scan = jax_fw.EpochScan(task, 0)
        model.fit(x, y, 2, batch_size), scan.fit(x, y, 2, batch_size)  # compile
        med = interleaved(
            repeats,
            fit=lambda m=model, x=x, y=y, b=batch_size: m.fit(x, y, epochs, b),
            scan=lambda s=scan, x=x, y=y, b=batch_size: s.fit(x, y, epochs, b),
        )
        (fw, fc), (sw, sc) = med["fit"], med["scan"]
        print(
            f"   {name:<11} fit {fw * 1e3:8.2f} wall {fc * 1e3:8.2f} cpu | scan {sw * 1e3:8.2f} "
            f"wall {sc * 1e3:8.2f} cpu | ratio {fw / sw:.2f}x wall, {fc / sc:.2f}x cpu"
        )


def step_call(steps: int, repeats: int) -> None:
    print(f"3. one train step called from Python (median µs per step over {steps} steps)")
    task = overhead.TASK
    x, y = data.regression(8, 8, seed=0)
    loops = {
        "fn.make_train_step": funcnet_fw.StepLoop(task, 0),
        "jax step, key and step": jax_fw.KeyedStepLoop(task, 0),
        "jax step": jax_fw.StepLoop(task, 0),
    }
    batches = {name: loop.prepare(x, y) for name, loop in loops.items()}

    def runner(name: str) -> Callable[[], None]:
        loop, (xb, yb) = loops[name], batches[name]

        def run() -> None:
            for _ in range(steps):
                loop.step(xb, yb)
            loop.sync()

        return run

    for name in loops:
        runner(name)()  # compile
    med = interleaved(repeats, **{name: runner(name) for name in loops})
    for name, (wall, cpu) in med.items():
        print(f"   {name:<24}{wall / steps * 1e6:8.2f} wall {cpu / steps * 1e6:8.2f} cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls (a smoke run)")
    args = parser.parse_args()
    calls, repeats = (100, 5) if args.quick else (300, 15)
    print(f"jax {jax.__version__} on {jax.default_backend()}; load average {os.getloadavg()}")
    overhead_per_call(calls, args.quick)
    fit_versus_scan(repeats, 10 if args.quick else 100)
    step_call(200 if args.quick else 2000, repeats)
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
