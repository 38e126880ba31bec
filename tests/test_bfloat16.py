"""Mixed and half precision: a bfloat16 model trains."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import funcnet as fn

RNG = np.random.default_rng(0)
X = RNG.uniform(-1, 1, size=(128, 4)).astype(np.float32)
Y = np.sin(X.sum(axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize(
    "param_dtype", [jnp.float32, jnp.bfloat16], ids=["f32-params", "bf16-params"]
)
def test_a_bfloat16_model_trains(param_dtype):
    bf16 = jnp.bfloat16
    net = fn.serial(
        fn.Dense(32, "tanh", dtype=bf16, param_dtype=param_dtype),
        fn.LayerNorm(dtype=bf16, param_dtype=param_dtype),
        fn.Dense(1, dtype=bf16, param_dtype=param_dtype),
    )
    result = fn.fit(
        net, X, Y, loss="mse", optimizer=optax.adam(1e-2), epochs=40, batch_size=32, verbose=0
    )
    assert jax.tree.leaves(result.params)[0].dtype == param_dtype
    out = fn.predict(net, result.params, result.state, X)
    assert out.dtype == bf16
    losses = result.history["loss"]
    assert losses[-1] < 0.1 * losses[0]


def test_a_bfloat16_cnn_with_batchnorm_trains():
    images = RNG.normal(size=(64, 6, 6, 1)).astype(np.float32)
    target = images.mean(axis=(1, 2)).astype(np.float32)
    bf16 = jnp.bfloat16
    net = fn.serial(
        fn.Conv(8, (3, 3), dtype=bf16), fn.BatchNorm(dtype=bf16), fn.Relu(),
        fn.GlobalAvgPool(), fn.Dense(1, dtype=bf16),
    )  # fmt: skip
    result = fn.fit(net, images.astype(bf16), target, loss="mse", optimizer=optax.adam(1e-2),
                    epochs=15, batch_size=16, verbose=0)  # fmt: skip
    losses = result.history["loss"]
    assert losses[-1] < 0.5 * losses[0]
    assert result.state[1]["mean"].dtype == jnp.float32  # statistics kept in float32
