"""The protocol shared by mlp, cnn and overhead: compile time and steady step rate.

The data is ``batches`` fixed batches of synthetic examples. Each repeat
builds a fresh model and:

- loop variants: converts the batches once to the framework's own arrays
  (``prepare``: on the device, in its layout), times the first step (trace,
  compile and run: the "compile" figure), takes two warm-up steps, then
  times ``steps`` steps cycling through the batches;
- fit variants: the first ``fit`` of one epoch over the batches (compile
  plus ``batches`` steps) is timed, then ``steps / batches`` epochs in one
  more ``fit``; "compile" is the first call less ``batches`` steps at the
  median steady rate (or the whole first call, noted, when noise makes that
  difference negative).

A variant stops repeating once it has used the run's time budget (noted in
the table), so one pathologically slow variant cannot hold the run for long.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from bench.runner import Context, clock, make
from bench.spec import Task


def run_throughput(
    ctx: Context,
    workload: str,
    task: Task,
    x: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int,
    steps: int,
    rate_metric: bool,
    compile_unit: tuple[str, float] = ("s", 1.0),
    rate: tuple[str, float] = ("steps/s", 1.0),
) -> None:
    """Records "compile" and either a rate (``rate_metric``) or "per step" in µs.

    ``rate`` names the rate and what one step counts: ``("steps/s", 1.0)``, or
    ``("tokens/s", tokens per batch)``.
    """
    batches = len(x) // batch_size
    steps = max(batches, steps - steps % batches)
    for framework, variant_name, variant in ctx.variants(workload):
        with ctx.guard(workload, framework, variant_name):
            firsts, per_step = [], []
            started = time.perf_counter()
            for _ in range(ctx.repeats):
                model = make(variant, task, ctx.seed)
                if variant.kind == "loop":
                    data = [
                        model.prepare(
                            x[i * batch_size : (i + 1) * batch_size],
                            y[i * batch_size : (i + 1) * batch_size],
                        )
                        for i in range(batches)
                    ]
                    model.sync()

                    def first(model=model, data=data) -> None:
                        model.step(*data[0])
                        model.sync()

                    def run(model=model, data=data, n=steps) -> None:
                        for i in range(n):
                            model.step(*data[i % len(data)])
                        model.sync()

                    firsts.append(clock(first))
                    run(n=2)
                    per_step.append(clock(run) / steps)
                else:
                    firsts.append(clock(lambda model=model: model.fit(x, y, 1, batch_size)))
                    epochs = steps // batches
                    steady = clock(lambda model=model, e=epochs: model.fit(x, y, e, batch_size))
                    per_step.append(steady / (epochs * batches))
                if time.perf_counter() - started > ctx.budget:
                    break
            note = ctx.budget_note(len(per_step))
            if variant.kind == "loop":
                compiles = firsts
            else:
                # The first fit call also ran one epoch of steps: take their steady time off.
                typical = statistics.median(per_step) * batches
                compiles = [f - typical for f in firsts]
                if min(compiles) <= 0:
                    compiles = firsts
                    note = "; ".join(
                        filter(None, [note, "compile not separable from the steps: first fit call"])
                    )
            unit, scale = compile_unit
            ctx.record(
                workload,
                framework,
                variant_name,
                "compile",
                [c * scale for c in compiles],
                unit,
                note=note,
            )
            if rate_metric:
                name, per = rate
                rates = [per / t for t in per_step]
                ctx.record(workload, framework, variant_name, name, rates, name, "higher")
            else:
                micros = [t * 1e6 for t in per_step]
                ctx.record(workload, framework, variant_name, "per step", micros, "µs")
