"""Activation functions as layers, and the names Dense accepts for them.

Every activation layer is parameterless and keeps its input's shape and
dtype: ``Relu()``, ``Tanh()``, ``Softmax(axis=-1)``, ``LeakyRelu(0.3)``...
Names and defaults are Keras 3's (docs/keras.md): the string ``"gelu"`` is the
exact GELU and ``"leaky_relu"`` has slope 0.2, as ``keras.activations`` has them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from funcnet._src.core import (
    InputShape,
    Layer,
    Params,
    Shape,
    State,
    check_float,
    check_input_shape,
)


def _identity(x: jax.Array) -> jax.Array:
    return x


def _gelu_exact(x: jax.Array) -> jax.Array:
    return jax.nn.gelu(x, approximate=False)


def _leaky_relu_keras(x: jax.Array) -> jax.Array:
    # keras.activations.leaky_relu's default slope; the LeakyReLU *layer* uses 0.3.
    return jax.nn.leaky_relu(x, negative_slope=0.2)


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "linear": _identity,
    "identity": _identity,
    "relu": jax.nn.relu,
    "relu6": jax.nn.relu6,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "hard_sigmoid": jax.nn.hard_sigmoid,
    "softmax": jax.nn.softmax,
    "log_softmax": jax.nn.log_softmax,
    "gelu": _gelu_exact,
    "elu": jax.nn.elu,
    "selu": jax.nn.selu,
    "leaky_relu": _leaky_relu_keras,
    "softplus": jax.nn.softplus,
    "softsign": jax.nn.soft_sign,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "mish": jax.nn.mish,
    "celu": jax.nn.celu,
    "hard_silu": jax.nn.hard_silu,
    "hard_swish": jax.nn.hard_silu,
    "hard_tanh": jax.nn.hard_tanh,
    "log_sigmoid": jax.nn.log_sigmoid,
    "exponential": jnp.exp,
}
"""The activation names accepted wherever an activation is given as a string.

Each name computes what ``keras.activations.<name>`` computes with its default
arguments (``"gelu"`` exact, ``"leaky_relu"`` slope 0.2); ``"identity"`` is
funcnet's alias of ``"linear"``. tests/test_keras_parity.py checks them against Keras.
"""


def get_activation(
    activation: str | Callable[[jax.Array], jax.Array] | None, layer: str = "activation"
) -> Callable[[jax.Array], jax.Array]:
    """Resolves an activation given as a name, a callable or ``None`` (linear).

    Example:
        >>> import jax.numpy as jnp
        >>> float(get_activation("relu")(jnp.array(-1.0)))
        0.0
    """
    if activation is None:
        return _identity
    if callable(activation):
        return activation
    if isinstance(activation, str):
        key = activation.lower()
        if key in ACTIVATIONS:
            return ACTIVATIONS[key]
        raise ValueError(
            f"{layer}: unknown activation {activation!r}. "
            f"Valid names: {', '.join(sorted(ACTIVATIONS))}; or pass a function."
        )
    raise TypeError(
        f"{layer}: activation must be a name, a function or None, got {type(activation).__name__}."
    )


def _activation_layer(fn: Callable[[jax.Array], jax.Array], name: str) -> Layer:
    def init(key: jax.Array, input_shape: InputShape) -> tuple[Shape, Params, State]:
        del key
        return check_input_shape(name, input_shape, min_rank=0), {}, {}

    def apply(
        params: Params,
        state: State,
        x: ArrayLike,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[jax.Array, State]:
        del params, key, train
        return fn(check_float(name, x)), state

    return Layer(init, apply, name)


def Activation(
    activation: str | Callable[[jax.Array], jax.Array], name: str | None = None
) -> Layer:
    """An elementwise activation given by name or function, as a layer.

    Example:
        >>> import jax.numpy as jnp
        >>> y, _ = Activation("relu").apply({}, {}, jnp.array([-1.0, 2.0]))
        >>> y.tolist()
        [0.0, 2.0]
    """
    fn = get_activation(activation, "Activation")
    default = activation if isinstance(activation, str) else getattr(fn, "__name__", "Activation")
    return _activation_layer(fn, name or default)


def Relu() -> Layer:
    """``max(x, 0)`` elementwise."""
    return _activation_layer(jax.nn.relu, "Relu")


def Tanh() -> Layer:
    """Hyperbolic tangent elementwise."""
    return _activation_layer(jnp.tanh, "Tanh")


def Sigmoid() -> Layer:
    """The logistic function ``1 / (1 + exp(-x))`` elementwise."""
    return _activation_layer(jax.nn.sigmoid, "Sigmoid")


def Softmax(axis: int = -1) -> Layer:
    """Softmax over ``axis``: non-negative outputs that sum to one along it."""
    return _activation_layer(functools.partial(jax.nn.softmax, axis=axis), "Softmax")


def LogSoftmax(axis: int = -1) -> Layer:
    """Log of the softmax over ``axis``, computed stably."""
    return _activation_layer(functools.partial(jax.nn.log_softmax, axis=axis), "LogSoftmax")


def Gelu(approximate: bool = False) -> Layer:
    """Gaussian error linear unit, ``x * Phi(x)`` with ``Phi`` the normal CDF.

    The default is the exact form, as Keras's ``gelu`` (and the string
    ``"gelu"``) is; ``approximate=True`` gives the tanh approximation that
    ``jax.nn.gelu`` and Flax use by default (at most about 5e-4 apart).

    Example:
        >>> import jax.numpy as jnp, funcnet as fn
        >>> x = jnp.array([1.0])
        >>> round(float(fn.Gelu().apply({}, {}, x)[0][0]), 4)  # 1 * Phi(1)
        0.8413
        >>> round(float(fn.Gelu(approximate=True).apply({}, {}, x)[0][0]), 4)
        0.8412
    """
    if not isinstance(approximate, bool):
        raise TypeError(
            f"Gelu: approximate must be True or False, got {approximate!r}. Pass "
            "approximate=True for the tanh approximation, False (the default) for the exact form."
        )
    return _activation_layer(functools.partial(jax.nn.gelu, approximate=approximate), "Gelu")


def Elu(alpha: float = 1.0) -> Layer:
    """Exponential linear unit: ``x`` if positive, else ``alpha * (exp(x) - 1)``."""
    return _activation_layer(functools.partial(jax.nn.elu, alpha=alpha), "Elu")


def LeakyRelu(negative_slope: float = 0.3) -> Layer:
    """``x`` if positive, else ``negative_slope * x``.

    The default slope 0.3 is Keras's ``LeakyReLU()`` layer's (the string
    ``"leaky_relu"`` follows ``keras.activations.leaky_relu``: 0.2;
    ``jax.nn.leaky_relu`` and PyTorch use 0.01: pass it to get theirs).

    Example:
        >>> import jax.numpy as jnp, funcnet as fn
        >>> fn.LeakyRelu().apply({}, {}, jnp.array([-10.0, 2.0]))[0].tolist()
        [-3.0, 2.0]
    """
    if (
        isinstance(negative_slope, bool)
        or not isinstance(negative_slope, (int, float))
        or not negative_slope >= 0
    ):
        raise ValueError(
            f"LeakyRelu: negative_slope must be a number >= 0, got {negative_slope!r}. "
            "Pass e.g. LeakyRelu(0.3) (Keras's default) or LeakyRelu(0.01) (PyTorch's)."
        )
    return _activation_layer(
        functools.partial(jax.nn.leaky_relu, negative_slope=negative_slope), "LeakyRelu"
    )


def Softplus() -> Layer:
    """``log(1 + exp(x))`` elementwise, a smooth relu."""
    return _activation_layer(jax.nn.softplus, "Softplus")


def Silu() -> Layer:
    """``x * sigmoid(x)`` elementwise (also called swish)."""
    return _activation_layer(jax.nn.silu, "Silu")


def Identity() -> Layer:
    """Returns its input unchanged (any dtype)."""

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Any, Params, State]:
        del key
        return input_shape if not isinstance(input_shape, list) else tuple(input_shape), {}, {}

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[Any, State]:
        del params, key, train
        return x, state

    return Layer(init, apply, "Identity")
