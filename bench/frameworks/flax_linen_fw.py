"""Flax Linen: an ``nn.Module`` applied inside a ``jax.jit`` step with optax (the Linen idiom)."""

from __future__ import annotations

import flax
import flax.linen as nn
import jax
import numpy as np

from bench.frameworks._jax_common import ACTIVATIONS, GLOROT, ParamsStepLoop
from bench.frameworks._lm_flax import LinenLM
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
)

NAME = "flax.linen"
DESCRIPTION = "Flax Linen"


def version() -> str:
    return f"flax {flax.__version__}"


class Model(nn.Module):
    task: Task

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.task.layers:
            if isinstance(layer, Dense):
                x = nn.Dense(layer.units, kernel_init=GLOROT)(x)
                x = ACTIVATIONS[layer.activation](x)
            elif isinstance(layer, Conv):
                x = nn.Conv(layer.features, layer.kernel, padding="VALID", kernel_init=GLOROT)(x)
                x = ACTIVATIONS[layer.activation](x)
            elif isinstance(layer, MaxPool):
                x = nn.max_pool(x, layer.window, strides=layer.window, padding="VALID")
            elif isinstance(layer, Flatten):
                x = x.reshape(x.shape[0], -1)
        return x


class StepLoop(ParamsStepLoop):
    """``model.apply`` inside a ``jax.jit`` step (params and optimizer state donated)."""

    def __init__(self, task: Task, seed: int):
        if any(isinstance(layer, Repeat) for layer in task.layers):
            raise NotSupportedError("no Repeat variant written for Flax Linen (nn.scan)")
        spec = task.layers[0]
        if isinstance(spec, TransformerLM):
            model: nn.Module = LinenLM(spec)
            dummy = np.zeros((1, *task.input_shape), np.int32)
        else:
            model = Model(task)
            dummy = np.zeros((1, *task.input_shape), np.float32)
        params = model.init(jax.random.key(seed), dummy)["params"]
        super().__init__(task, params, lambda p, x: model.apply({"params": p}, x))


VARIANTS = {"jit step loop": Variant("loop", StepLoop, "model.apply in a jax.jit step")}
