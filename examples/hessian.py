"""Hessian-vector products and the top Hessian eigenvalue of a trained network.

The Hessian of a loss over ``d`` params is a ``d x d`` matrix, too large to
form for any real network; but its product with a vector is the derivative of
the gradient along that vector, which costs about two gradients:
``jax.jvp(jax.grad(loss), (w,), (v,))`` ("forward over reverse"). Because a
funcnet model is a pure function of its params, the loss over the training
set is a plain function ``loss(w)`` of one flat vector, and JAX composes its
transformations on it freely.

Power iteration on the product finds the Hessian's largest eigenvalue (the
loss's sharpness): its largest in magnitude, which near a minimum is the top
one. Gradient descent with learning rate ``lr`` is stable only where the
sharpness is below ``2 / lr``; full-batch training is known to drive it up
to about that edge (Cohen et al., 2021).

    python examples/hessian.py
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

import funcnet as fn


def flat_loss(net, result, x, y):
    """The training loss as a function of one flat vector of params, and that vector."""
    weights, unravel = ravel_pytree(result.params)
    f = fn.as_params_function(net, result.state)
    return jax.jit(lambda w: fn.mse(f(unravel(w), x), y)), weights


def hvp(loss, w, v):
    """The Hessian of ``loss`` at ``w`` times ``v`` (both ``[d]``), without forming the Hessian."""
    return jax.jvp(jax.grad(loss), (w,), (v,))[1]


@functools.partial(jax.jit, static_argnums=(0, 3))
def top_eigenvalue(loss, w, key, iterations):
    """Power iteration on ``v -> H v``: the dominant eigenvalue and its unit eigenvector."""

    def step(_, v):
        hv = hvp(loss, w, v)
        return hv / jnp.linalg.norm(hv)

    v = jax.lax.fori_loop(0, iterations, step, jax.random.normal(key, w.shape))
    return v @ hvp(loss, w, v), v  # the Rayleigh quotient of the converged vector


def main(hidden: tuple[int, ...] = (32, 32), n: int = 400, epochs: int = 2000,
         learning_rate: float = 0.3, iterations: int = 200) -> dict:  # fmt: skip
    """Trains a regression net by full-batch gradient descent; returns its sharpness."""
    x, y = fn.datasets.reg_gauss(n, seed=0)
    x, y = x / 6.0, y[:, None]  # the square [-6, 6]^2 scaled to [-1, 1]^2
    net = fn.serial(*[fn.Dense(h, activation="tanh") for h in hidden], fn.Dense(1))
    result = fn.fit(net, x, y, loss="mse", optimizer=optax.sgd(learning_rate), epochs=epochs,
                    batch_size=n, verbose=0)  # fmt: skip
    loss, weights = flat_loss(net, result, x, y)
    eigenvalue, _ = top_eigenvalue(loss, weights, jax.random.key(0), iterations)
    eigenvalue = float(eigenvalue)
    print(f"{weights.size} params, training loss {float(loss(weights)):.4f} after {epochs} steps")
    print(f"top Hessian eigenvalue {eigenvalue:.2f}; "
          f"gradient descent at lr {learning_rate} is stable below 2 / lr = {2 / learning_rate:.2f}")  # fmt: skip
    return {"loss": loss, "weights": weights, "eigenvalue": eigenvalue}


if __name__ == "__main__":
    fn.enable_compilation_cache()  # a second run loads its programs from disk
    main()
