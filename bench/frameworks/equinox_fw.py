"""Equinox: an ``eqx.Module`` pytree trained in an ``eqx.filter_jit`` step (the Equinox idiom).

Equinox layers act on one example, channels-first, so the model is
``jax.vmap``-ed over the batch and images are transposed to ``[batch,
channels, height, width]`` once, in ``prepare``. Equinox's default init is
not Glorot, so the weights are replaced with Glorot-uniform ones and the
biases with zeros (``eqx.tree_at``), to match every other framework.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from bench.frameworks._jax_common import ACTIVATIONS, LOSSES, optimizer
from bench.frameworks._lm_equinox import LM
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

NAME = "equinox"
DESCRIPTION = "Equinox"

# Equinox stores Linear weights [out, in] and Conv2d weights [out, in, kh, kw].
_GLOROT_OUT_IN = jax.nn.initializers.glorot_uniform(in_axis=1, out_axis=0)


def version() -> str:
    return f"equinox {eqx.__version__}"


def _glorot(layer: Any, key: jax.Array) -> Any:
    weight = _GLOROT_OUT_IN(key, layer.weight.shape, jnp.float32)
    return eqx.tree_at(lambda m: (m.weight, m.bias), layer, (weight, jnp.zeros_like(layer.bias)))


def build(task: Task, key: jax.Array) -> eqx.nn.Sequential:
    layers: list[Any] = []
    keys = jax.random.split(key, 2 * len(task.layers))
    for i, (layer, shape) in enumerate(zip(task.layers, input_shapes(task))):
        k_make, k_init = keys[2 * i], keys[2 * i + 1]
        if isinstance(layer, Dense):
            layers.append(_glorot(eqx.nn.Linear(shape[-1], layer.units, key=k_make), k_init))
        elif isinstance(layer, Conv):
            conv = eqx.nn.Conv2d(shape[-1], layer.features, layer.kernel, key=k_make)
            layers.append(_glorot(conv, k_init))
        elif isinstance(layer, MaxPool):
            layers.append(eqx.nn.MaxPool2d(layer.window, stride=layer.window))
        elif isinstance(layer, Flatten):
            layers.append(eqx.nn.Lambda(jnp.ravel))
        if isinstance(layer, (Dense, Conv)) and layer.activation:
            layers.append(eqx.nn.Lambda(ACTIVATIONS[layer.activation]))
    return eqx.nn.Sequential(layers)


def _channels_first(task: Task, x: np.ndarray) -> np.ndarray:
    if len(task.input_shape) == 3:
        return np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2)))
    return x


class StepLoop:
    """``eqx.filter_jit`` over ``step(model, opt_state, x, y)``."""

    def __init__(self, task: Task, seed: int):
        if any(isinstance(layer, Repeat) for layer in task.layers):
            raise NotSupportedError("no Repeat variant written for Equinox")
        self.task = task
        spec = task.layers[0]
        if isinstance(spec, TransformerLM):
            self.model: Any = LM(spec, jax.random.key(seed))
        else:
            self.model = build(task, jax.random.key(seed))
        opt = optimizer(task)
        self.opt_state = opt.init(eqx.filter(self.model, eqx.is_array))
        loss_fn = LOSSES[task.loss]

        def objective(model, x, y):
            return loss_fn(jax.vmap(model)(x), y)

        @eqx.filter_jit
        def step(model, opt_state, x, y):
            loss, grads = eqx.filter_value_and_grad(objective)(model, x, y)
            updates, opt_state = opt.update(grads, opt_state, eqx.filter(model, eqx.is_array))
            return eqx.apply_updates(model, updates), opt_state, loss

        self._step = step
        self.loss: Any = None

    def prepare(self, x: np.ndarray, y: np.ndarray) -> tuple[Any, Any]:
        return jax.device_put(_channels_first(self.task, x)), jax.device_put(y)

    def step(self, x: Any, y: Any) -> None:
        if isinstance(x, np.ndarray):
            x = _channels_first(self.task, x)
        self.model, self.opt_state, self.loss = self._step(self.model, self.opt_state, x, y)

    def sync(self) -> None:
        jax.block_until_ready((eqx.filter(self.model, eqx.is_array), self.opt_state))

    def predict(self, x: np.ndarray) -> np.ndarray:
        run = eqx.filter_jit(lambda m, x: jax.vmap(m)(x))
        return np.asarray(run(self.model, _channels_first(self.task, x)))


VARIANTS = {"filter_jit step loop": Variant("loop", StepLoop, "step decorated with eqx.filter_jit")}
