"""Layers with hand-written backward passes, checked and trained.

Two layers whose gradients are not the derivative of their forward, by design:

1. ``StraightThroughQuantize``: rounds activations to a grid in the forward
   pass and lets the gradient through unchanged in the backward pass (the
   straight-through estimator), since the true derivative of rounding is zero
   almost everywhere and would stop all learning below it.
2. ``GradClipDense``: a dense layer whose backward computes exact gradients for
   its own params but clips the gradient it sends to its input, to keep a
   gradient spike from reaching the layers below.

``funcnet.check_layer_grads`` compares each with autodiff and finite
differences, reports where they differ (which is the point of these layers),
and confirms each against the rule it is meant to follow. Then both go into a
model built with ``funcnet.serial`` and ``funcnet.Dense``, trained with
``funcnet.fit`` and optax.

Run:
    python examples/custom_layer.py
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import funcnet as fn


def StraightThroughQuantize(step: float = 0.25, name: str = "Quantize") -> fn.Layer:
    """Rounds ``x`` to multiples of ``step``; the backward pass is the identity."""

    def forward(params, x):
        return jnp.round(x / step) * step, ()

    def backward(residuals, dy):
        return None, dy

    return fn.custom_vjp_layer(forward, backward, lambda key, shape: {}, name=name)


def GradClipDense(units: int, clip: float = 1.0, name: str = "GradClipDense") -> fn.Layer:
    """``x @ w + b`` over ``[batch, in]``; the gradient sent to ``x`` is clipped to ``[-clip, clip]``."""

    def init_params(key, shape):
        w = jax.nn.initializers.glorot_uniform()(key, (shape[-1], units), jnp.float32)
        return {"w": w, "b": jnp.zeros((units,), jnp.float32)}

    def forward(params, x):
        w, b = params["w"].astype(x.dtype), params["b"].astype(x.dtype)
        return x @ w + b[None, :], (x, w)

    def backward(residuals, dy):
        x, w = residuals
        dparams = {"w": x.T @ dy, "b": jnp.sum(dy, axis=0)}
        return dparams, jnp.clip(dy @ w.T, -clip, clip)

    return fn.custom_vjp_layer(forward, backward, init_params, name=name)


def check_quantizer(verbose: bool) -> dict[str, fn.GradCheckReport]:
    quantize = StraightThroughQuantize(0.25)
    x = jax.random.normal(jax.random.key(1), (4, 3))
    # Autodiff of round is zero and so are finite differences between grid
    # points: the straight-through gradient differs from both, by design.
    plain = fn.check_layer_grads(quantize, {}, x, raise_on_error=False)
    # The intended rule: the gradient of the identity.
    intended = fn.check_layer_grads(quantize, {}, x, reference=lambda p, x: x, numerical=False)
    if verbose:
        print("Straight-through quantizer against autodiff and finite differences:")
        print(plain)
        print("... and against the straight-through rule (identity gradient):")
        print(intended)
    return {"quantize_plain": plain, "quantize_intended": intended}


def check_clipping(verbose: bool) -> dict[str, fn.GradCheckReport]:
    layer = GradClipDense(3, clip=0.5)
    _, params, _ = layer.init(jax.random.key(2), (None, 4))
    x = jax.random.normal(jax.random.key(3), (5, 4))
    v = np.random.default_rng(0).standard_normal((5, 3))
    # A small output gradient is never clipped, so every gradient is exact.
    small = fn.check_layer_grads(layer, params, x, cotangent=0.01 * v)
    # A large one is clipped on its way to x, and only there.
    large = fn.check_layer_grads(layer, params, x, cotangent=100 * v, raise_on_error=False)
    # The intended rule for dx: clip(v @ w.T).
    want_dx = np.clip(100 * v @ np.asarray(params["w"], np.float64).T, -0.5, 0.5)
    with jax.enable_x64(True):
        params64 = jax.tree.map(lambda a: a.astype(jnp.float64), params)
        got_dx = jax.grad(lambda x: jnp.sum(layer.apply(params64, {}, x)[0] * 100 * v))(
            x.astype(jnp.float64)
        )
    dx_error = float(np.abs(np.asarray(got_dx) - want_dx).max())
    if verbose:
        print("\nGradient-clipping dense layer, small output gradient (no clipping):")
        print(small)
        print("... large output gradient (dx clipped, params exact):")
        print(large)
        print(f"... dx against the rule clip(dy @ w.T): max abs error {dx_error:.3g}")
    return {"clip_small": small, "clip_large": large, "clip_rule_error": dx_error}


def train(epochs: int, n: int, verbose: bool) -> list[float]:
    x = np.linspace(-2.0, 2.0, n, dtype=np.float32)[:, None]
    y = np.sin(2.0 * x)
    net = fn.serial(
        fn.Dense(32, "tanh"),
        GradClipDense(32, clip=1.0),
        jnp.tanh,
        StraightThroughQuantize(0.125),
        fn.Dense(1),
    )
    result = fn.fit(
        net, x, y, loss="mse", optimizer=optax.adam(1e-2), epochs=epochs, batch_size=32, key=0
    )
    losses = result.history["loss"]
    if verbose:
        print(
            f"\nTraining serial(Dense, GradClipDense, tanh, Quantize, Dense) for {epochs} epochs:"
        )
        for i in sorted({0, len(losses) // 2, len(losses) - 1}):
            print(f"  epoch {i + 1:>4}: loss {losses[i]:.4f}")
    return losses


def main(epochs: int = 200, n: int = 256, verbose: bool = True) -> dict[str, Any]:
    """Runs the checks and the training; returns the reports and the losses per epoch."""
    results: dict[str, Any] = {}
    results.update(check_quantizer(verbose))
    results.update(check_clipping(verbose))
    results["losses"] = train(epochs, n, verbose)
    return results


if __name__ == "__main__":
    fn.enable_compilation_cache()  # a second run loads its programs from disk
    main()
