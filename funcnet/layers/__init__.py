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
from funcnet.layers.attention import MultiHeadAttention
from funcnet.layers.bidirectional import Bidirectional
from funcnet.layers.conv import Conv, ConvTranspose
from funcnet.layers.dense import Dense
from funcnet.layers.dropout import Dropout
from funcnet.layers.embed import Embedding
from funcnet.layers.norm import BatchNorm, GroupNorm, LayerNorm, RMSNorm
from funcnet.layers.pool import AvgPool, GlobalAvgPool, GlobalMaxPool, MaxPool
from funcnet.layers.recurrent import GRU, LSTM, SimpleRNN
from funcnet.layers.shape import Flatten, Reshape

__all__ = [
    "ACTIVATIONS",
    "GRU",
    "LSTM",
    "Activation",
    "AvgPool",
    "BatchNorm",
    "Bidirectional",
    "Conv",
    "ConvTranspose",
    "Dense",
    "Dropout",
    "Elu",
    "Embedding",
    "Flatten",
    "Gelu",
    "GlobalAvgPool",
    "GlobalMaxPool",
    "GroupNorm",
    "Identity",
    "LayerNorm",
    "LeakyRelu",
    "LogSoftmax",
    "MaxPool",
    "MultiHeadAttention",
    "RMSNorm",
    "Relu",
    "Reshape",
    "Sigmoid",
    "Silu",
    "SimpleRNN",
    "Softmax",
    "Softplus",
    "Tanh",
    "get_activation",
]
