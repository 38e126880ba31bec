"""Haiku: ``hk.transform`` of the model, ``apply`` inside a ``jax.jit`` step with optax."""

from __future__ import annotations

from typing import Any

import haiku as hk
import jax
import numpy as np
import optax

from bench.frameworks._jax_common import ACTIVATIONS, LOSSES, optimizer
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


class StepLoop:
    """``model.apply`` inside a ``jax.jit`` step (params and optimizer state donated)."""

    def __init__(self, task: Task, seed: int):
        if any(isinstance(layer, Repeat) for layer in task.layers):
            raise NotSupportedError("no Repeat variant written for Haiku (hk.layer_stack)")
        self.model = hk.without_apply_rng(hk.transform(_forward(task)))
        dummy = np.zeros((1, *task.input_shape), np.float32)
        self.params = self.model.init(jax.random.key(seed), dummy)
        opt = optimizer(task)
        self.opt_state = opt.init(self.params)
        loss_fn, model = LOSSES[task.loss], self.model

        def step(params, opt_state, x, y):
            loss, grads = jax.value_and_grad(lambda p: loss_fn(model.apply(p, x), y))(params)
            updates, opt_state = opt.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        self._step = jax.jit(step, donate_argnums=(0, 1))
        self.loss: Any = None

    def prepare(self, x: np.ndarray, y: np.ndarray) -> tuple[Any, Any]:
        return jax.device_put(x), jax.device_put(y)

    def step(self, x: Any, y: Any) -> None:
        self.params, self.opt_state, self.loss = self._step(self.params, self.opt_state, x, y)

    def sync(self) -> None:
        jax.block_until_ready((self.params, self.opt_state))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(jax.jit(self.model.apply)(self.params, x))


VARIANTS = {"jit step loop": Variant("loop", StepLoop, "transformed apply in a jax.jit step")}
