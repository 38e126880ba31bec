"""Per-example gradients with ``vmap(grad)``, and differentially private SGD built on them.

A funcnet model is a pure function of its params, so the gradient of one
example's loss is ``jax.grad`` of a function of one example, and the gradients
of a whole batch, one per example, are that function under ``jax.vmap``: one
compiled program, no loop over the batch, no hooks into the layers.

DP-SGD (Abadi et al., 2016) needs exactly that: each example's gradient is
clipped to norm at most C, the clipped gradients are summed, Gaussian noise of
standard deviation ``noise_multiplier * C`` is added, and the sum is averaged.
No one example can move the model by more than C, and the noise hides which
examples were there. (optax ships the same transformation as
``optax.contrib.differentially_private_aggregate``; it is written out here.)

    python examples/per_example_grads.py
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

import funcnet as fn

NET = fn.serial(fn.Dense(16, activation="tanh"), fn.Dense(16, activation="tanh"), fn.Dense(2))


def example_loss_fn(state):
    """``loss(params, x, y)`` of one example: ``x`` is ``[features]``, ``y`` an int class."""
    f = fn.as_params_function(NET, state)

    def loss(params, x, y):
        logits = f(params, x[None])  # a batch of one
        return fn.sparse_categorical_crossentropy(logits, y[None], from_logits=True)

    return loss


@jax.jit
def per_example_grads(state, params, x, y):
    """Each example's gradient: every leaf gains a leading ``[batch]`` axis."""
    return jax.vmap(jax.grad(example_loss_fn(state)), in_axes=(None, 0, 0))(params, x, y)


@jax.jit
def global_norms(grads):
    """``[batch]``: the norm of each example's gradient, over all params."""
    squares = [jnp.sum(g.reshape(g.shape[0], -1) ** 2, axis=1) for g in jax.tree.leaves(grads)]
    return jnp.sqrt(sum(squares))


@jax.jit
def clip(grads, max_norm):
    """Scales each example's gradient down to norm ``max_norm`` if it is longer."""
    scale = jnp.minimum(1.0, max_norm / (global_norms(grads) + 1e-12))
    return jax.tree.map(lambda g: g * scale.reshape((-1,) + (1,) * (g.ndim - 1)), grads)


def dp_sgd_step(optimizer, max_norm, noise_multiplier, batch_size):
    """One jitted DP-SGD step on a random batch: ``step(params, opt_state, state, x, y, key, i)``."""

    @jax.jit
    def step(params, opt_state, state, x, y, key, i):
        pick, *keys = jax.random.split(jax.random.fold_in(key, i), 1 + len(jax.tree.leaves(params)))
        batch = jax.random.choice(pick, len(x), (batch_size,), replace=False)
        clipped = clip(per_example_grads(state, params, x[batch], y[batch]), max_norm)
        leaves, tree = jax.tree.flatten(clipped)
        noisy = [
            (g.sum(0) + noise_multiplier * max_norm * jax.random.normal(k, g.shape[1:]))
            / batch_size
            for g, k in zip(leaves, keys)
        ]
        updates, opt_state = optimizer.update(jax.tree.unflatten(tree, noisy), opt_state)
        return optax.apply_updates(params, updates), opt_state

    return step


def main(steps: int = 1000, batch_size: int = 64, n: int = 1000, max_norm: float = 1.0,
         noise_multiplier: float = 1.0, learning_rate: float = 0.1) -> dict:  # fmt: skip
    """Trains the classifier with DP-SGD; returns its test accuracy, params and state."""
    points, labels = fn.datasets.circle(2 * n, noise=0.1, seed=0)
    x, y = points / 5.0, (labels > 0).astype(np.int32)  # labels -1/+1 -> classes 0/1
    order = np.random.default_rng(0).permutation(len(x))
    (train_x, test_x), (train_y, test_y) = np.split(x[order], 2), np.split(y[order], 2)

    optimizer = optax.sgd(learning_rate, momentum=0.9)
    # init_train_state builds params, model state and optimizer state in one compiled program.
    start = fn.init_train_state(NET, optimizer, (None, 2), key=0)
    params, state, opt_state, key = start.params, start.state, start.opt_state, start.key
    first_norms = global_norms(per_example_grads(state, params, train_x[:64], train_y[:64]))
    step = dp_sgd_step(optimizer, max_norm, noise_multiplier, batch_size)
    train_x, train_y = jnp.asarray(train_x), jnp.asarray(train_y)
    for i in range(steps):
        params, opt_state = step(params, opt_state, state, train_x, train_y, key, i)

    logits = fn.predict(NET, params, state, test_x)
    accuracy = float(np.mean(np.argmax(logits, axis=-1) == test_y))
    print(f"per-example gradient norms at init (64 examples): "
          f"median {np.median(first_norms):.3f}, max {np.max(first_norms):.3f}; clipped to {max_norm}")  # fmt: skip
    print(f"DP-SGD, noise multiplier {noise_multiplier}, {steps} steps of {batch_size}: "
          f"test accuracy {accuracy:.3f}")  # fmt: skip
    return {"accuracy": accuracy, "params": params, "state": state}


if __name__ == "__main__":
    fn.enable_compilation_cache()  # a second run loads its programs from disk
    main()
