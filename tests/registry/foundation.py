"""Registry cases for the foundation layers: Dense, activations, shape layers."""

import jax
import jax.numpy as jnp
from jax.example_libraries import stax

import funcnet as fn
from tests.registry import Case

CASES = [
    Case("Dense", lambda: fn.Dense(4), (None, 3)),
    Case("Dense", lambda: fn.Dense(5, "tanh", use_bias=False), (None, 2, 3), id="rank3-nobias"),
    Case("Activation", lambda: fn.Activation("gelu"), (None, 3)),
    Case("Relu", fn.Relu, (None, 4)),
    Case("Tanh", fn.Tanh, (None, 4)),
    Case("Sigmoid", fn.Sigmoid, (None, 4)),
    Case("Softmax", fn.Softmax, (None, 4)),
    Case("LogSoftmax", fn.LogSoftmax, (None, 4)),
    Case("Gelu", fn.Gelu, (None, 4)),
    Case("Elu", fn.Elu, (None, 4)),
    Case("LeakyRelu", fn.LeakyRelu, (None, 4)),
    Case("Softplus", fn.Softplus, (None, 4)),
    Case("Silu", fn.Silu, (None, 4)),
    Case("Identity", fn.Identity, (None, 4)),
    Case("Flatten", fn.Flatten, (None, 2, 3, 2)),
    Case("Reshape", lambda: fn.Reshape((2, -1)), (None, 6)),
    Case("Lambda", lambda: fn.Lambda(jnp.sin), (None, 3)),
    Case(
        "custom_layer",
        lambda: fn.custom_layer(
            lambda p, x: x * p["s"][None, :].astype(x.dtype),
            lambda key, shape: {"s": jax.random.normal(key, shape[-1:])},
        ),
        (None, 3),
    ),
    # stax computes in its params' dtype, so a bfloat16 input comes out float32.
    Case(
        "from_stax",
        lambda: fn.from_stax(stax.serial(stax.Dense(4), stax.Tanh)),
        (None, 3),
        float_dtypes=False,
    ),
    Case("serial", lambda: fn.serial(fn.Dense(4), jnp.tanh, fn.Dense(2)), (None, 3)),
]
