"""cnn: conv3x3(32), conv3x3(64), maxpool 2x2, dense(128), dense(10) on 28x28x1, batch 64.

The PyTorch MNIST example's network (VALID convolutions, ReLU, no dropout) on
random-normal images. Figures: steady steps per second and compile time.
``--quick``: 12x12x1 images, conv 4 and 8, dense 16, batch 8.
"""

from __future__ import annotations

from typing import Any

from bench import data
from bench.runner import Context
from bench.spec import Conv, Dense, Flatten, MaxPool, Task
from bench.workloads._throughput import run_throughput

NAME = "cnn"
TITLE = "conv3x3(32), conv3x3(64), maxpool, dense(128), dense(10) on 28x28x1, batch 64"
REFERENCE_TEXT = "hand-written JAX, jitted step in a Python loop (`jax step loop`)"


def task(size: int, c1: int, c2: int, hidden: int) -> Task:
    return Task(
        (Conv(c1), Conv(c2), MaxPool(), Flatten(), Dense(hidden, "relu"), Dense(10)),
        (size, size, 1),
        "softmax_ce",
        0.01,
        momentum=0.9,
    )


def reference(record: Any) -> tuple[str, str]:
    return "jax", "step loop"


def run(ctx: Context) -> None:
    if ctx.quick:
        size, c1, c2, hidden, batch_size, batches, steps = 12, 4, 8, 16, 8, 2, 4
    else:
        size, c1, c2, hidden, batch_size, batches, steps = 28, 32, 64, 128, 64, 4, 8
    x, y = data.classification(batches * batch_size, (size, size, 1), seed=ctx.seed)
    run_throughput(
        ctx,
        NAME,
        task(size, c1, c2, hidden),
        x,
        y,
        batch_size=batch_size,
        steps=steps,
        rate_metric=True,
    )
