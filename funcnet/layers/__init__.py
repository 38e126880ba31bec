"""funcnet's layers, one module per family."""

from funcnet.layers.activations import (
    ACTIVATIONS,
    Activation,
    Elu,
    Gelu,
    Identity,
    LeakyRelu,
    LogSoftmax,
    Relu,
    Sigmoid,
    Silu,
    Softmax,
    Softplus,
    Tanh,
    get_activation,
)
from funcnet.layers.dense import Dense
from funcnet.layers.shape import Flatten, Reshape

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "Dense",
    "Elu",
    "Flatten",
    "Gelu",
    "Identity",
    "LeakyRelu",
    "LogSoftmax",
    "Relu",
    "Reshape",
    "Sigmoid",
    "Silu",
    "Softmax",
    "Softplus",
    "Tanh",
    "get_activation",
]
