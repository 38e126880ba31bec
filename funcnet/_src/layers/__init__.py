"""funcnet's layers, one module per family."""

from funcnet._src.layers._checks import (
    Initializer,
    check_flags,
    optional_positive_int,
    positive_int,
)
from funcnet._src.layers.activations import (
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
from funcnet._src.layers.attention import MultiHeadAttention
from funcnet._src.layers.bidirectional import Bidirectional
from funcnet._src.layers.conv import Conv, ConvTranspose
from funcnet._src.layers.dense import Dense
from funcnet._src.layers.dropout import (
    Dropout,
    SpatialDropout1D,
    SpatialDropout2D,
    SpatialDropout3D,
)
from funcnet._src.layers.embed import Embedding
from funcnet._src.layers.masking import Masking, pass_mask
from funcnet._src.layers.norm import BatchNorm, GroupNorm, LayerNorm, RMSNorm
from funcnet._src.layers.pool import AvgPool, GlobalAvgPool, GlobalMaxPool, MaxPool
from funcnet._src.layers.recurrent import GRU, LSTM, SimpleRNN
from funcnet._src.layers.shape import Flatten, Reshape

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
    "Initializer",
    "LayerNorm",
    "LeakyRelu",
    "LogSoftmax",
    "Masking",
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
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "Tanh",
    "check_flags",
    "get_activation",
    "optional_positive_int",
    "pass_mask",
    "positive_int",
]
