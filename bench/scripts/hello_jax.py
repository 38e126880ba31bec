"""examples/hello.py written by hand in JAX + optax: the reference for the startup workload.

Same data, model (Glorot-uniform weight, zero bias), SGD 0.01, MSE, 500
full-batch epochs; prints the last loss and the prediction for x = 10.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax


def main(epochs: int = 500) -> float:
    xs = np.array([[-1.0], [0.0], [1.0], [2.0], [3.0], [4.0]], dtype=np.float32)
    ys = 2 * xs - 1
    params = {
        "w": jax.nn.initializers.glorot_uniform()(jax.random.key(0), (1, 1), jnp.float32),
        "b": jnp.zeros((1,), jnp.float32),
    }
    optimizer = optax.sgd(0.01)
    opt_state = optimizer.init(params)

    def loss_fn(p, x, y):
        return jnp.mean(jnp.square(x @ p["w"] + p["b"][None, :] - y))

    @jax.jit
    def step(p, s, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(p, x, y)
        updates, s = optimizer.update(grads, s, p)
        return optax.apply_updates(p, updates), s, loss

    x, y = jnp.asarray(xs), jnp.asarray(ys)
    for _ in range(epochs):
        params, opt_state, loss = step(params, opt_state, x, y)
    prediction = float((jnp.array([[10.0]]) @ params["w"] + params["b"])[0, 0])
    print(f"loss after {epochs} epochs: {float(loss):.6f}")
    print(f"prediction for x = 10: {prediction:.4f} (the rule y = 2x - 1 gives 19)")
    return prediction


if __name__ == "__main__":
    main()
