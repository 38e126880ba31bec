"""Registry cases for the combinators and for custom_vjp_layer."""

import jax
import jax.numpy as jnp

import funcnet as fn
from tests.registry import Case


def _scale_forward(params, x):
    s = params["s"].astype(x.dtype)
    return x * s[None, :], (x, s)


def _scale_backward(residuals, dy):
    x, s = residuals
    return {"s": jnp.sum(dy * x, axis=0)}, dy * s[None, :]


def _scale() -> fn.Layer:
    return fn.custom_vjp_layer(
        _scale_forward,
        _scale_backward,
        lambda key, shape: {"s": jax.random.normal(key, shape[-1:])},
        name="Scale",
    )


CASES = [
    Case("parallel", lambda: fn.parallel(fn.Dense(4), jnp.tanh), ((None, 3), (None, 2))),
    Case("branches", lambda: fn.branches(fn.Dense(4), fn.Dense(2, "tanh")), (None, 3)),
    Case("fanout", lambda: fn.fanout(3), (None, 4)),
    Case("fan_in_sum", fn.fan_in_sum, ((None, 3), (None, 3), (None, 3))),
    Case("fan_in_concat", fn.fan_in_concat, ((None, 3), (None, 2))),
    Case(
        "fan_in_concat", lambda: fn.fan_in_concat(axis=1), ((None, 2, 3), (None, 1, 3)), id="axis1"
    ),
    Case("residual", lambda: fn.residual(fn.serial(fn.Dense(3), jnp.tanh)), (None, 3)),
    Case(
        "residual",
        lambda: fn.residual(fn.Dense(4, "tanh"), projection=fn.Dense(4)),
        (None, 3),
        id="projection",
    ),
    Case("repeat", lambda: fn.repeat(fn.Dense(3, "tanh"), 3), (None, 3)),
    Case("remat", lambda: fn.remat(fn.serial(fn.Dense(4, "tanh"), fn.Dense(2))), (None, 3)),
    Case(
        "repeat",
        lambda: fn.repeat(fn.parallel(fn.Dense(2, "tanh"), fn.Dense(3)), 2),
        ((None, 2), (None, 3)),
        id="tuple-carry",
    ),
    Case(
        "repeat",
        lambda: fn.serial(
            fn.Dense(4),
            fn.branches(fn.repeat(fn.Dense(4, "tanh"), 2), fn.Dense(4)),
            fn.fan_in_sum(),
        ),
        (None, 3),
        id="nested",
    ),
    Case("custom_vjp_layer", _scale, (None, 3)),
]
