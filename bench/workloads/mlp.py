"""mlp: a 784-512-512-10 ReLU network, softmax cross-entropy, SGD with momentum, batch 128.

Random-normal inputs and uniform labels (the rate does not depend on the
values). Figures: steady steps per second and compile time. ``--quick``:
784-32-32-10, batch 16.
"""

from __future__ import annotations

from typing import Any

from bench import data
from bench.runner import Context
from bench.spec import Dense, Task
from bench.workloads._throughput import run_throughput

NAME = "mlp"
TITLE = "784-512-512-10 relu, softmax cross-entropy, SGD 0.01 momentum 0.9, batch 128"
REFERENCE_TEXT = "hand-written JAX, jitted step in a Python loop (`jax step loop`)"


def task(width: int) -> Task:
    return Task(
        (Dense(width, "relu"), Dense(width, "relu"), Dense(10)),
        (784,),
        "softmax_ce",
        0.01,
        momentum=0.9,
    )


def reference(record: Any) -> tuple[str, str]:
    return "jax", "step loop"


def run(ctx: Context) -> None:
    width, batch_size, batches = (32, 16, 4) if ctx.quick else (512, 128, 8)
    x, y = data.classification(batches * batch_size, (784,), seed=ctx.seed)
    run_throughput(
        ctx,
        NAME,
        task(width),
        x,
        y,
        batch_size=batch_size,
        steps=8 if ctx.quick else 40,
        rate_metric=True,
    )
