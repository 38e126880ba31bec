"""The protocol shared by hello and playground: a whole training run, then the steady state.

For every framework variant:

1. whole run, ``repeats`` times: build a fresh model (so init, tracing and
   compiling are included) and train ``epochs`` epochs; the clock covers
   everything up to the trained params being ready. The last run's model is
   kept for the quality figure (prediction or accuracy).
2. steady state, ``repeats`` times, on that already compiled model: train
   ``steady_epochs`` more epochs and divide by the number of steps. A "fit"
   variant calls its fit again with the same objects (funcnet's ``fit`` and
   Keras cache their compiled programs per model object).

Each of the two phases stops repeating after half the run's time budget.

Loop variants shuffle on the host with numpy and pass numpy slices to the
step (a plain hand-written loop); fit variants shuffle however their
framework does (funcnet and the hand-written epoch scan: on the device).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.runner import Context, clock, make, steps_per_epoch, train_epochs
from bench.spec import Task


def run_epochs(
    ctx: Context,
    workload: str,
    task: Task,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    steady_epochs: int,
    total_metric: tuple[str, str, float],
    quality: Callable[[Any], tuple[str, float, str, str]],
) -> None:
    """Measures every variant; ``total_metric`` is (name, unit, scale from seconds).

    ``quality(model)`` returns ``(metric, value, unit, better)`` for the trained model.
    """
    total_name, total_unit, scale = total_metric
    steps = steps_per_epoch(len(x), batch_size)
    for framework, variant_name, variant in ctx.variants(workload):
        with ctx.guard(workload, framework, variant_name):
            holder: dict[str, Any] = {}

            def whole_run(variant=variant, holder=holder) -> None:
                model = make(variant, task, ctx.seed)
                if variant.kind == "fit":
                    model.fit(x, y, epochs, batch_size)
                else:
                    train_epochs(model, x, y, epochs, batch_size, np.random.default_rng(0))
                holder["model"] = model

            started = time.perf_counter()
            totals = []
            for _ in range(ctx.repeats):
                totals.append(clock(whole_run) * scale)
                if time.perf_counter() - started > ctx.budget / 2:
                    break
            model = holder["model"]
            metric, value, unit, better = quality(model)

            def steady(variant=variant, model=model) -> None:
                if variant.kind == "fit":
                    model.fit(x, y, steady_epochs, batch_size)
                else:
                    train_epochs(model, x, y, steady_epochs, batch_size, np.random.default_rng(1))

            started = time.perf_counter()
            per_step = []
            for _ in range(ctx.repeats):
                per_step.append(clock(steady) / (steady_epochs * steps) * 1e6)
                if time.perf_counter() - started > ctx.budget / 2:
                    break
            note = ctx.budget_note(min(len(totals), len(per_step)))
            ctx.record(workload, framework, variant_name, total_name, totals, total_unit, note=note)
            ctx.record(workload, framework, variant_name, "per step", per_step, "µs")
            ctx.record(workload, framework, variant_name, metric, [value], unit, better)
