"""funcnet: pure, composable neural-network layers for JAX.

A layer is a pair of pure functions, ``init(key, input_shape)`` and
``apply(params, state, x, *, key=None, train=False)``; models are layers
composed by combinators; losses are plain functions; optax supplies the
optimizers.

Everything public is importable from here (``import funcnet as fn``). Public
sub-namespaces: :mod:`funcnet.losses`, :mod:`funcnet.callbacks`,
:mod:`funcnet.distributed`, :mod:`funcnet.datasets`, :mod:`funcnet.playground`
and :mod:`funcnet.plot` (needs matplotlib). The implementation lives in
``funcnet._src`` and is not part of the API.
"""

from funcnet import callbacks as callbacks
from funcnet import datasets as datasets
from funcnet import distributed as distributed
from funcnet import losses as losses
from funcnet._src.combinators import branches as branches
from funcnet._src.combinators import fan_in_concat as fan_in_concat
from funcnet._src.combinators import fan_in_sum as fan_in_sum
from funcnet._src.combinators import fanout as fanout
from funcnet._src.combinators import parallel as parallel
from funcnet._src.combinators import remat as remat
from funcnet._src.combinators import repeat as repeat
from funcnet._src.combinators import residual as residual
from funcnet._src.combinators import serial as serial
from funcnet._src.compilation_cache import enable_compilation_cache as enable_compilation_cache
from funcnet._src.core import Lambda as Lambda
from funcnet._src.core import Layer as Layer
from funcnet._src.core import LayerError as LayerError
from funcnet._src.core import LayerTypeError as LayerTypeError
from funcnet._src.core import LayerValueError as LayerValueError
from funcnet._src.core import custom_layer as custom_layer
from funcnet._src.core import from_stax as from_stax
from funcnet._src.custom_grad import GradCheckError as GradCheckError
from funcnet._src.custom_grad import GradCheckReport as GradCheckReport
from funcnet._src.custom_grad import check_layer_grads as check_layer_grads
from funcnet._src.custom_grad import custom_vjp_layer as custom_vjp_layer
from funcnet._src.files.checkpoint import CheckpointError as CheckpointError
from funcnet._src.files.checkpoint import CheckpointInfo as CheckpointInfo
from funcnet._src.files.checkpoint import CheckpointMismatchError as CheckpointMismatchError
from funcnet._src.files.checkpoint import checkpoint_info as checkpoint_info
from funcnet._src.files.checkpoint import load as load
from funcnet._src.files.checkpoint import save as save
from funcnet._src.files.export import ExportError as ExportError
from funcnet._src.files.export import export as export
from funcnet._src.files.export import load_exported as load_exported
from funcnet._src.files.manager import CheckpointManager as CheckpointManager
from funcnet._src.interop.as_function import as_function as as_function
from funcnet._src.interop.as_function import as_params_function as as_params_function
from funcnet._src.interop.equinox_in import from_equinox as from_equinox
from funcnet._src.interop.equinox_out import to_equinox as to_equinox
from funcnet._src.interop.flax_in import from_flax as from_flax
from funcnet._src.interop.flax_out import to_flax as to_flax
from funcnet._src.interop.from_keras import from_keras as from_keras
from funcnet._src.interop.haiku_in import from_haiku as from_haiku
from funcnet._src.interop.haiku_out import to_haiku as to_haiku
from funcnet._src.interop.keras_in import from_keras_layer as from_keras_layer
from funcnet._src.interop.keras_out import to_keras as to_keras
from funcnet._src.interop.nnx_in import from_nnx as from_nnx
from funcnet._src.layers import ACTIVATIONS as ACTIVATIONS
from funcnet._src.layers import GRU as GRU
from funcnet._src.layers import LSTM as LSTM
from funcnet._src.layers import Activation as Activation
from funcnet._src.layers import AvgPool as AvgPool
from funcnet._src.layers import BatchNorm as BatchNorm
from funcnet._src.layers import Bidirectional as Bidirectional
from funcnet._src.layers import Conv as Conv
from funcnet._src.layers import ConvTranspose as ConvTranspose
from funcnet._src.layers import Dense as Dense
from funcnet._src.layers import Dropout as Dropout
from funcnet._src.layers import Elu as Elu
from funcnet._src.layers import Embedding as Embedding
from funcnet._src.layers import Flatten as Flatten
from funcnet._src.layers import Gelu as Gelu
from funcnet._src.layers import GlobalAvgPool as GlobalAvgPool
from funcnet._src.layers import GlobalMaxPool as GlobalMaxPool
from funcnet._src.layers import GroupNorm as GroupNorm
from funcnet._src.layers import Identity as Identity
from funcnet._src.layers import LayerNorm as LayerNorm
from funcnet._src.layers import LeakyRelu as LeakyRelu
from funcnet._src.layers import LogSoftmax as LogSoftmax
from funcnet._src.layers import Masking as Masking
from funcnet._src.layers import MaxPool as MaxPool
from funcnet._src.layers import MultiHeadAttention as MultiHeadAttention
from funcnet._src.layers import Relu as Relu
from funcnet._src.layers import Reshape as Reshape
from funcnet._src.layers import RMSNorm as RMSNorm
from funcnet._src.layers import Sigmoid as Sigmoid
from funcnet._src.layers import Silu as Silu
from funcnet._src.layers import SimpleRNN as SimpleRNN
from funcnet._src.layers import Softmax as Softmax
from funcnet._src.layers import Softplus as Softplus
from funcnet._src.layers import SpatialDropout1D as SpatialDropout1D
from funcnet._src.layers import SpatialDropout2D as SpatialDropout2D
from funcnet._src.layers import SpatialDropout3D as SpatialDropout3D
from funcnet._src.layers import Tanh as Tanh
from funcnet._src.layers import pass_mask as pass_mask
from funcnet._src.losses import LOSSES as LOSSES
from funcnet._src.losses import binary_crossentropy as binary_crossentropy
from funcnet._src.losses import categorical_crossentropy as categorical_crossentropy
from funcnet._src.losses import huber as huber
from funcnet._src.losses import mae as mae
from funcnet._src.losses import mse as mse
from funcnet._src.losses import multi_loss as multi_loss
from funcnet._src.losses import sparse_categorical_crossentropy as sparse_categorical_crossentropy
from funcnet._src.metrics import accuracy as accuracy
from funcnet._src.metrics import binary_accuracy as binary_accuracy
from funcnet._src.parallel.sharded_io import gather_for_save as gather_for_save
from funcnet._src.parallel.sharded_io import place_like as place_like
from funcnet._src.parallel.sharding import fsdp as fsdp
from funcnet._src.parallel.sharding import make_mesh as make_mesh
from funcnet._src.parallel.sharding import place_train_state as place_train_state
from funcnet._src.parallel.sharding import shard_batch as shard_batch
from funcnet._src.summary import summary as summary
from funcnet._src.training.callbacks import Callback as Callback
from funcnet._src.training.callbacks import EarlyStopping as EarlyStopping
from funcnet._src.training.callbacks import ModelCheckpoint as ModelCheckpoint
from funcnet._src.training.callbacks import ReduceLROnPlateau as ReduceLROnPlateau
from funcnet._src.training.callbacks import TerminateOnNaN as TerminateOnNaN
from funcnet._src.training.ensemble import FitManyResult as FitManyResult
from funcnet._src.training.ensemble import fit_many as fit_many
from funcnet._src.training.fit import FitResult as FitResult
from funcnet._src.training.fit import fit as fit
from funcnet._src.training.generate import generate as generate
from funcnet._src.training.inference import evaluate as evaluate
from funcnet._src.training.inference import predict as predict
from funcnet._src.training.keras_callbacks import BackupAndRestore as BackupAndRestore
from funcnet._src.training.keras_callbacks import CSVLogger as CSVLogger
from funcnet._src.training.keras_callbacks import LambdaCallback as LambdaCallback
from funcnet._src.training.keras_callbacks import LearningRateScheduler as LearningRateScheduler
from funcnet._src.training.keras_callbacks import TensorBoard as TensorBoard
from funcnet._src.training.precision import LossScale as LossScale
from funcnet._src.training.precision import MixedPrecision as MixedPrecision
from funcnet._src.training.step import TrainState as TrainState
from funcnet._src.training.step import init_train_state as init_train_state
from funcnet._src.training.step import make_train_step as make_train_step
from funcnet._src.transformer import PositionalEmbedding as PositionalEmbedding
from funcnet._src.transformer import SinusoidalPositions as SinusoidalPositions
from funcnet._src.transformer import TransformerDecoderBlock as TransformerDecoderBlock
from funcnet._src.transformer import TransformerEncoderBlock as TransformerEncoderBlock
from funcnet._src.transformer import TransformerLM as TransformerLM
from funcnet._src.transformer import tied_embedding as tied_embedding

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "GRU",
    "LOSSES",
    "LSTM",
    "Activation",
    "AvgPool",
    "BackupAndRestore",
    "BatchNorm",
    "Bidirectional",
    "CSVLogger",
    "Callback",
    "CheckpointError",
    "CheckpointInfo",
    "CheckpointManager",
    "CheckpointMismatchError",
    "Conv",
    "ConvTranspose",
    "Dense",
    "Dropout",
    "EarlyStopping",
    "Elu",
    "Embedding",
    "ExportError",
    "FitManyResult",
    "FitResult",
    "Flatten",
    "Gelu",
    "GlobalAvgPool",
    "GlobalMaxPool",
    "GradCheckError",
    "GradCheckReport",
    "GroupNorm",
    "Identity",
    "Lambda",
    "LambdaCallback",
    "Layer",
    "LayerError",
    "LayerNorm",
    "LayerTypeError",
    "LayerValueError",
    "LeakyRelu",
    "LearningRateScheduler",
    "LogSoftmax",
    "LossScale",
    "Masking",
    "MaxPool",
    "MixedPrecision",
    "ModelCheckpoint",
    "MultiHeadAttention",
    "PositionalEmbedding",
    "RMSNorm",
    "ReduceLROnPlateau",
    "Relu",
    "Reshape",
    "Sigmoid",
    "Silu",
    "SimpleRNN",
    "SinusoidalPositions",
    "Softmax",
    "Softplus",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "Tanh",
    "TensorBoard",
    "TerminateOnNaN",
    "TrainState",
    "TransformerDecoderBlock",
    "TransformerEncoderBlock",
    "TransformerLM",
    "accuracy",
    "as_function",
    "as_params_function",
    "binary_accuracy",
    "binary_crossentropy",
    "branches",
    "callbacks",
    "categorical_crossentropy",
    "check_layer_grads",
    "checkpoint_info",
    "custom_layer",
    "custom_vjp_layer",
    "datasets",
    "distributed",
    "enable_compilation_cache",
    "evaluate",
    "export",
    "fan_in_concat",
    "fan_in_sum",
    "fanout",
    "fit",
    "fit_many",
    "from_equinox",
    "from_flax",
    "from_haiku",
    "from_keras",
    "from_keras_layer",
    "from_nnx",
    "from_stax",
    "fsdp",
    "gather_for_save",
    "generate",
    "huber",
    "init_train_state",
    "load",
    "load_exported",
    "losses",
    "mae",
    "make_mesh",
    "make_train_step",
    "mse",
    "multi_loss",
    "parallel",
    "pass_mask",
    "place_like",
    "place_train_state",
    "predict",
    "remat",
    "repeat",
    "residual",
    "save",
    "serial",
    "shard_batch",
    "sparse_categorical_crossentropy",
    "summary",
    "tied_embedding",
    "to_equinox",
    "to_flax",
    "to_haiku",
    "to_keras",
]
