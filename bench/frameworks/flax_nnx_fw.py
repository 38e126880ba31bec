"""Flax NNX: a stateful ``nnx.Module`` and ``nnx.Optimizer`` trained in an ``nnx.jit`` step.

Two variants: the plain ``@nnx.jit`` step of the NNX tutorials, and
``nnx.jit_partial(..., graph=False)``, which flattens the model and optimizer
once and so cuts the per-call Python work (where this Flax version has it).
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import numpy as np
from flax import nnx

from bench.frameworks._jax_common import ACTIVATIONS, GLOROT, LOSSES, optimizer
from bench.frameworks._lm_flax import NNXLM
from bench.spec import (
    Conv,
    Dense,
    Flatten,
    MaxPool,
    NotSupportedError,
    Repeat,
    Task,
    TransformerLM,
    Variant,
    input_shapes,
)

NAME = "flax.nnx"
DESCRIPTION = "Flax NNX"


def version() -> str:
    return f"flax {flax.__version__}"


class Model(nnx.Module):
    def __init__(self, task: Task, rngs: nnx.Rngs):
        self.task = task
        layers: list[Any] = []
        for layer, shape in zip(task.layers, input_shapes(task)):
            if isinstance(layer, Dense):
                layers.append(nnx.Linear(shape[-1], layer.units, kernel_init=GLOROT, rngs=rngs))
            elif isinstance(layer, Conv):
                layers.append(
                    nnx.Conv(
                        shape[-1],
                        layer.features,
                        layer.kernel,
                        padding="VALID",
                        kernel_init=GLOROT,
                        rngs=rngs,
                    )
                )
            else:
                layers.append(None)
        self.layers = nnx.List(layers)

    def __call__(self, x: jax.Array) -> jax.Array:
        for spec, layer in zip(self.task.layers, self.layers):
            if isinstance(spec, (Dense, Conv)):
                x = ACTIVATIONS[spec.activation](layer(x))
            elif isinstance(spec, MaxPool):
                x = nnx.max_pool(x, spec.window, strides=spec.window, padding="VALID")
            elif isinstance(spec, Flatten):
                x = x.reshape(x.shape[0], -1)
        return x


class StepLoop:
    """``@nnx.jit`` over ``train_step(model, optimizer, x, y)``."""

    partial = False

    def __init__(self, task: Task, seed: int):
        if any(isinstance(layer, Repeat) for layer in task.layers):
            raise NotSupportedError("no Repeat variant written for Flax NNX")
        spec = task.layers[0]
        if isinstance(spec, TransformerLM):
            self.model: nnx.Module = NNXLM(spec, nnx.Rngs(seed))
        else:
            self.model = Model(task, nnx.Rngs(seed))
        self.optimizer = nnx.Optimizer(self.model, optimizer(task), wrt=nnx.Param)
        loss_fn = LOSSES[task.loss]

        def train_step(model, opt, x, y):
            loss, grads = nnx.value_and_grad(lambda m: loss_fn(m(x), y))(model)
            opt.update(model, grads)
            return loss

        if self.partial:
            if not hasattr(nnx, "jit_partial"):
                raise NotSupportedError(f"nnx.jit_partial is not in flax {flax.__version__}")
            self._step = nnx.jit_partial(train_step, self.model, self.optimizer, graph=False)
        else:
            jitted = nnx.jit(train_step)
            self._step = lambda x, y: jitted(self.model, self.optimizer, x, y)
        self.loss: Any = None

    def prepare(self, x: np.ndarray, y: np.ndarray) -> tuple[Any, Any]:
        return jax.device_put(x), jax.device_put(y)

    def step(self, x: Any, y: Any) -> None:
        self.loss = self._step(x, y)

    def sync(self) -> None:
        jax.block_until_ready((self.loss, nnx.state(self.model)))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(nnx.jit(lambda m, x: m(x))(self.model, x))


class PartialStepLoop(StepLoop):
    """``nnx.jit_partial(train_step, model, optimizer)``: the graph flattened once."""

    partial = True


VARIANTS = {
    "nnx.jit step loop": Variant("loop", StepLoop, "train_step decorated with nnx.jit"),
    "nnx.jit_partial step loop": Variant(
        "loop", PartialStepLoop, "nnx.jit_partial(train_step, model, optimizer, graph=False)"
    ),
}
