"""ensemble: 64 playground models trained together versus one after another.

The playground task (circle, 2-4-2-1, SGD 0.03, batch 10, 100 epochs), 64
models from 64 seeds. "Together" is one program over stacked params
(``jax.vmap`` by hand; ``fn.fit_many`` in funcnet); "one after another" runs
the same compiled single-model program 64 times. Figures: the first call of
one epoch (mostly compile), the steady wall time for all models and epochs,
that time per model-step, and the mean final accuracy. ``--quick``: 4
models, 100 points, 3 epochs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench import data
from bench.runner import Context, clock, steps_per_epoch
from bench.spec import accuracy
from bench.workloads.playground import TASK

NAME = "ensemble"
TITLE = "64 playground models (100 epochs each) trained together versus one after another"
REFERENCE_TEXT = "hand-written JAX, `jax.vmap` of the epoch scan (`jax vmap`)"


def reference(record: Any) -> tuple[str, str]:
    return "jax", "vmap"


def run(ctx: Context) -> None:
    n_models, n, epochs = (4, 100, 3) if ctx.quick else (64, 500, 100)
    batch_size = 10
    repeats = min(ctx.repeats, 3)
    x, y = data.circle(n, seed=ctx.seed)
    model_steps = n_models * epochs * steps_per_epoch(n, batch_size)
    for framework, module in ctx.available():
        ensembles = getattr(module, "ENSEMBLE", None)
        if not ensembles:
            ctx.results.skip(NAME, framework, "not measured (no ensemble variant written)")
            continue
        for variant_name, (factory, _description) in ensembles.items():
            with ctx.guard(NAME, framework, variant_name):
                try:
                    group = factory(TASK, ctx.seed, n_models)
                except NotImplementedError as missing:
                    ctx.results.skip(NAME, framework, f"skipped: {missing}", variant_name)
                    continue
                first = clock(lambda group=group: group.fit(x, y, 1, batch_size))
                walls = [
                    clock(lambda group=group: group.fit(x, y, epochs, batch_size))
                    for _ in range(repeats)
                ]
                predictions = np.asarray(group.predict(x))
                mean_accuracy = float(np.mean([accuracy(TASK, p, y) for p in predictions]))
                ctx.record(NAME, framework, variant_name, "first call (1 epoch)", [first], "s")
                ctx.record(NAME, framework, variant_name, "wall time", walls, "s")
                per_step = [w / model_steps * 1e6 for w in walls]
                ctx.record(NAME, framework, variant_name, "per model-step", per_step, "µs")
                ctx.record(
                    NAME, framework, variant_name, "mean accuracy", [mean_accuracy], "", "higher"
                )
