"""hello: one Dense neuron learns y = 2x - 1 from six points ("Hello Keras").

Full batch (6 points), SGD 0.01, MSE, 500 epochs (50 with ``--quick``).
Figures: the whole run's wall time including init and compile, the steady
time per step, and the trained model's prediction for x = 10 (Keras gets
about 18.98; the exact rule gives 19).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench import data
from bench.runner import Context
from bench.spec import Dense, Task
from bench.workloads._epochs import run_epochs

NAME = "hello"
TITLE = "Dense(1) on y = 2x - 1 (6 points, full batch, SGD 0.01, MSE, 500 epochs)"
REFERENCE_TEXT = "hand-written JAX, whole-epoch `lax.scan` (`jax epoch scan`)"
TASK = Task((Dense(1),), (1,), "mse", 0.01)


def reference(record: Any) -> tuple[str, str]:
    return "jax", "epoch scan"


def run(ctx: Context) -> None:
    x, y = data.hello()
    epochs = 50 if ctx.quick else 500

    def quality(model: Any) -> tuple[str, float, str, str]:
        prediction = float(np.asarray(model.predict(np.array([[10.0]], np.float32)))[0, 0])
        return "predict(10)", prediction, "", ""

    run_epochs(
        ctx,
        NAME,
        TASK,
        x,
        y,
        epochs=epochs,
        batch_size=len(x),
        steady_epochs=20 if ctx.quick else 200,
        total_metric=("fit time", "ms", 1e3),
        quality=quality,
    )
