"""Haiku: ``hk.transform`` of the model, ``apply`` inside a ``jax.jit`` step with optax."""

from __future__ import annotations

import haiku as hk
import jax
import numpy as np

from bench.frameworks._jax_common import ACTIVATIONS, ParamsStepLoop, has_transformer
from bench.spec import Conv, Dense, Flatten, MaxPool, NotSupportedError, Repeat, Task, Variant

NAME = "haiku"
DESCRIPTION = "Haiku"

# Glorot uniform in Haiku's terms: limit sqrt(3 * 1 / fan_avg) = sqrt(6 / (fan_in + fan_out)).
_GLOROT = hk.initializers.VarianceScaling(1.0, "fan_avg", "uniform")


def version() -> str:
    return f"dm-haiku {hk.__version__}"


def _forward(task: Task):
    def forward(x: jax.Array) -> jax.Array:
        for layer in task.layers:
            if isinstance(layer, Dense):
                x = ACTIVATIONS[layer.activation](hk.Linear(layer.units, w_init=_GLOROT)(x))
            elif isinstance(layer, Conv):
                conv = hk.Conv2D(layer.features, layer.kernel, padding="VALID", w_init=_GLOROT)
                x = ACTIVATIONS[layer.activation](conv(x))
            elif isinstance(layer, MaxPool):
                window = (1, *layer.window, 1)
                x = hk.max_pool(x, window_shape=window, strides=window, padding="VALID")
            elif isinstance(layer, Flatten):
                x = hk.Flatten()(x)
        return x

    return forward


class StepLoop(ParamsStepLoop):
    """``model.apply`` inside a ``jax.jit`` step (params and optimizer state donated)."""

    def __init__(self, task: Task, seed: int):
        if any(isinstance(layer, Repeat) for layer in task.layers):
            raise NotSupportedError("no Repeat variant written for Haiku (hk.layer_stack)")
        if has_transformer(task):
            raise NotSupportedError("no Transformer written for Haiku")
        model = hk.without_apply_rng(hk.transform(_forward(task)))
        dummy = np.zeros((1, *task.input_shape), np.float32)
        super().__init__(task, model.init(jax.random.key(seed), dummy), model.apply)


VARIANTS = {"jit step loop": Variant("loop", StepLoop, "transformed apply in a jax.jit step")}
