"""Other libraries' modules as layers: each converter passes the generic layer tests.

A case is listed only where its library is installed (the test extra installs
them all); tests/test_interop_in.py compares each with its library itself.
"""

from __future__ import annotations

import importlib.util
import os

import funcnet as fn
from tests.registry import Case


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _flax_mlp():
    import flax.linen as nn

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(2)(nn.tanh(nn.Dense(4)(x)))

    return fn.from_flax(MLP())


def _nnx_mlp():
    from flax import nnx

    return fn.from_nnx(lambda rngs: nnx.Linear(3, 2, rngs=rngs))


def _equinox_mlp():
    import equinox as eqx

    return fn.from_equinox(lambda key: eqx.nn.MLP(3, 2, 4, 1, key=key))


def _haiku_mlp():
    import haiku as hk

    return fn.from_haiku(lambda x: hk.nets.MLP([4, 2])(x))


def _keras_dense():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    return fn.from_keras_layer(keras.layers.Dense(2, activation="tanh"))


# The libraries compute in their params' dtype (float32), so a bfloat16 input
# does not come out bfloat16: float_dtypes=False, as for from_stax. Keras
# computes in its dtype policy's float32 even given float64, so the float64
# numerical gradient check does not apply to it (test_interop_in.py compares
# its gradients with Keras's own).
CASES = [
    Case(name, make, (None, 3), float_dtypes=False, grad_check=module != "keras")
    for name, module, make in [
        ("from_flax", "flax", _flax_mlp),
        ("from_nnx", "flax", _nnx_mlp),
        ("from_equinox", "equinox", _equinox_mlp),
        ("from_haiku", "haiku", _haiku_mlp),
        ("from_keras_layer", "keras", _keras_dense),
    ]
    if _installed(module)
]
