"""Pieces shared by the JAX-based frameworks: losses, the optimizer, Glorot init.

Every JAX library trains with the same optax optimizer and the same loss
formulas, so the only difference between them is how the model is built and
how the step is jitted. The formulas match funcnet's (and Keras's): binary
cross-entropy clips probabilities to ``[1e-7, 1 - 1e-7]``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from bench.spec import Task

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
    return optax.sgd(task.lr, momentum=task.momentum)


ACTIVATIONS: dict[str | None, Callable[[jax.Array], jax.Array]] = {
    None: lambda x: x,
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
}
