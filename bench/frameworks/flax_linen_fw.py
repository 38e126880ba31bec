"""Flax Linen: an ``nn.Module`` applied inside a ``jax.jit`` step with optax (the Linen idiom)."""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import numpy as np
import optax

from bench.frameworks._jax_common import ACTIVATIONS, GLOROT, LOSSES, optimizer
from bench.spec import Conv, Dense, Flatten, MaxPool, NotSupportedError, Repeat, Task, Variant

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


class StepLoop:
    """``model.apply`` inside a ``jax.jit`` step (params and optimizer state donated)."""

    def __init__(self, task: Task, seed: int):
        if any(isinstance(layer, Repeat) for layer in task.layers):
            raise NotSupportedError("no Repeat variant written for Flax Linen (nn.scan)")
        self.model = Model(task)
        opt = optimizer(task)
        dummy = np.zeros((1, *task.input_shape), np.float32)
        self.params = self.model.init(jax.random.key(seed), dummy)["params"]
        self.opt_state = opt.init(self.params)
        loss_fn, model = LOSSES[task.loss], self.model

        def step(params, opt_state, x, y):
            def objective(p):
                return loss_fn(model.apply({"params": p}, x), y)

            loss, grads = jax.value_and_grad(objective)(params)
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
        return np.asarray(jax.jit(self.model.apply)({"params": self.params}, x))


VARIANTS = {"jit step loop": Variant("loop", StepLoop, "model.apply in a jax.jit step")}
