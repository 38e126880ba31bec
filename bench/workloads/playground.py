"""playground: the TensorFlow Playground circle, a 2-4-2-1 tanh network.

500 points (100 with ``--quick``), tanh hidden units, a sigmoid output,
binary cross-entropy, SGD 0.03, batch 10, 100 epochs (5 with ``--quick``).
Figures: the whole run's wall time (including compile), the steady time per
step, and the final accuracy on the training points. The steady run is as
long as the whole run (100 epochs, 5000 steps), so that a per-call cost of a
fit (argument checks, moving the data to the device) weighs on it as it does
on a real run, not ten times more.
"""

from __future__ import annotations

from typing import Any

from bench import data
from bench.runner import Context
from bench.spec import Dense, Task, accuracy
from bench.workloads._epochs import run_epochs

NAME = "playground"
TITLE = (
    "circle dataset (500 points), 2-4-2-1 tanh/sigmoid, binary cross-entropy, "
    "SGD 0.03, batch 10, 100 epochs"
)
REFERENCE_TEXT = "hand-written JAX, whole-epoch `lax.scan` (`jax epoch scan`)"
TASK = Task((Dense(4, "tanh"), Dense(2, "tanh"), Dense(1, "sigmoid")), (2,), "bce", 0.03)


def reference(record: Any) -> tuple[str, str]:
    return "jax", "epoch scan"


def run(ctx: Context) -> None:
    x, y = data.circle(100 if ctx.quick else 500, seed=ctx.seed)

    def quality(model: Any) -> tuple[str, float, str, str]:
        return "accuracy", accuracy(TASK, model.predict(x), y), "", "higher"

    run_epochs(
        ctx,
        NAME,
        TASK,
        x,
        y,
        epochs=5 if ctx.quick else 100,
        batch_size=10,
        steady_epochs=2 if ctx.quick else 100,
        total_metric=("total time", "s", 1.0),
        quality=quality,
    )
