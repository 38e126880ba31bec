"""Pieces shared by the JAX-based frameworks: losses, the optimizer, Glorot init, the step loop.

Every JAX library trains with the same optax optimizer and the same loss
formulas, so the only difference between them is how the model is built and
how the step is jitted. The formulas match funcnet's (and Keras's): binary
cross-entropy clips probabilities to ``[1e-7, 1 - 1e-7]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bench.spec import Task, TransformerLM

GLOROT = jax.nn.initializers.glorot_uniform()
EPSILON = 1e-7


def mse(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    return jnp.mean(jnp.square(predictions - targets))


def bce(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    p = jnp.clip(predictions, EPSILON, 1.0 - EPSILON)
    return -jnp.mean(targets * jnp.log(p) + (1.0 - targets) * jnp.log1p(-p))


def softmax_ce(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return jnp.mean(optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels))


LOSSES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "mse": mse,
    "bce": bce,
    "softmax_ce": softmax_ce,
}


def optimizer(task: Task) -> optax.GradientTransformation:
    if task.optimizer == "adam":
        return optax.adam(task.lr)
    return optax.sgd(task.lr, momentum=task.momentum)


ACTIVATIONS: dict[str | None, Callable[[jax.Array], jax.Array]] = {
    None: lambda x: x,
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
}


def params_step(
    task: Task, opt: optax.GradientTransformation, apply: Callable[[Any, jax.Array], jax.Array]
) -> Callable:
    """The pure step ``(params, opt_state, x, y) -> (params, opt_state, loss)``."""
    loss_fn = LOSSES[task.loss]

    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(lambda p: loss_fn(apply(p, x), y))(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


class ParamsStepLoop:
    """A ``jax.jit`` step (params and optimizer state donated) called from a Python loop.

    For every library whose model is a pure ``apply(params, x)``: hand-written
    JAX, Flax Linen and Haiku differ only in how they build ``params`` and
    ``apply``.
    """

    def __init__(self, task: Task, params: Any, apply: Callable[[Any, jax.Array], jax.Array]):
        opt = optimizer(task)
        self.apply, self.params, self.opt_state = apply, params, opt.init(params)
        self.train_step = params_step(task, opt, apply)  # pure, for variants that wrap it
        self._step = jax.jit(self.train_step, donate_argnums=(0, 1))
        self.loss: Any = None

    def prepare(self, x: np.ndarray, y: np.ndarray) -> tuple[Any, Any]:
        return jax.device_put(x), jax.device_put(y)

    def step(self, x: Any, y: Any) -> None:
        self.params, self.opt_state, self.loss = self._step(self.params, self.opt_state, x, y)

    def sync(self) -> None:
        jax.block_until_ready((self.params, self.opt_state))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(jax.jit(self.apply)(self.params, x))


def has_transformer(task: Task) -> bool:
    return any(isinstance(layer, TransformerLM) for layer in task.layers)
