"""overhead: a tiny model (Dense 8 to 8, batch 8), so a step is almost all framework overhead.

Figures: microseconds per step (a jitted step called from Python, for loop
variants; for fit variants the per-step share of a fit call) and compile time.
"""

from __future__ import annotations

from typing import Any

from bench import data
from bench.runner import Context
from bench.spec import Dense, Task
from bench.workloads._throughput import run_throughput

NAME = "overhead"
TITLE = "Dense 8 to 8, batch 8, MSE, SGD 0.01: the cost of one step called from Python"
REFERENCE_TEXT = "hand-written JAX, jitted step in a Python loop (`jax step loop`)"
TASK = Task((Dense(8),), (8,), "mse", 0.01)


def reference(record: Any) -> tuple[str, str]:
    return "jax", "step loop"


def run(ctx: Context) -> None:
    batches = 16
    x, y = data.regression(batches * 8, 8, seed=ctx.seed)
    run_throughput(
        ctx,
        NAME,
        TASK,
        x,
        y,
        batch_size=8,
        steps=320 if ctx.quick else 4000,
        rate_metric=False,
        compile_unit=("ms", 1e3),
    )
