"""funcnet: pure, composable neural-network layers for JAX.

A layer is a pair of pure functions, ``init(key, input_shape)`` and
``apply(params, state, x, *, key=None, train=False)``; models are layers
composed by combinators; losses are plain functions; optax supplies the
optimizers. See ``funcnet.core`` for the contract.
"""

from funcnet.blocks import repeat as repeat
from funcnet.blocks import residual as residual
from funcnet.cache import enable_compilation_cache as enable_compilation_cache
from funcnet.callbacks import Callback as Callback
from funcnet.callbacks import EarlyStopping as EarlyStopping
from funcnet.callbacks import ModelCheckpoint as ModelCheckpoint
from funcnet.callbacks import ReduceLROnPlateau as ReduceLROnPlateau
from funcnet.callbacks import TerminateOnNaN as TerminateOnNaN
from funcnet.combinators import branches as branches
from funcnet.combinators import fan_in_concat as fan_in_concat
from funcnet.combinators import fan_in_sum as fan_in_sum
from funcnet.combinators import fanout as fanout
from funcnet.combinators import parallel as parallel
from funcnet.combinators import serial as serial
from funcnet.core import Lambda as Lambda
from funcnet.core import Layer as Layer
from funcnet.core import LayerError as LayerError
from funcnet.core import LayerTypeError as LayerTypeError
from funcnet.core import LayerValueError as LayerValueError
from funcnet.core import custom_layer as custom_layer
from funcnet.core import from_stax as from_stax
from funcnet.custom_grad import GradCheckError as GradCheckError
from funcnet.custom_grad import GradCheckReport as GradCheckReport
from funcnet.custom_grad import check_layer_grads as check_layer_grads
from funcnet.custom_grad import custom_vjp_layer as custom_vjp_layer
from funcnet.ensemble import FitManyResult as FitManyResult
from funcnet.ensemble import fit_many as fit_many
from funcnet.fit import FitResult as FitResult
from funcnet.fit import fit as fit
from funcnet.inference import evaluate as evaluate
from funcnet.inference import predict as predict
from funcnet.layers import ACTIVATIONS as ACTIVATIONS
from funcnet.layers import GRU as GRU
from funcnet.layers import LSTM as LSTM
from funcnet.layers import Activation as Activation
from funcnet.layers import AvgPool as AvgPool
from funcnet.layers import BatchNorm as BatchNorm
from funcnet.layers import Bidirectional as Bidirectional
from funcnet.layers import Conv as Conv
from funcnet.layers import ConvTranspose as ConvTranspose
from funcnet.layers import Dense as Dense
from funcnet.layers import Dropout as Dropout
from funcnet.layers import Elu as Elu
from funcnet.layers import Embedding as Embedding
from funcnet.layers import Flatten as Flatten
from funcnet.layers import Gelu as Gelu
from funcnet.layers import GlobalAvgPool as GlobalAvgPool
from funcnet.layers import GlobalMaxPool as GlobalMaxPool
from funcnet.layers import GroupNorm as GroupNorm
from funcnet.layers import Identity as Identity
from funcnet.layers import LayerNorm as LayerNorm
from funcnet.layers import LeakyRelu as LeakyRelu
from funcnet.layers import LogSoftmax as LogSoftmax
from funcnet.layers import MaxPool as MaxPool
from funcnet.layers import MultiHeadAttention as MultiHeadAttention
from funcnet.layers import Relu as Relu
from funcnet.layers import Reshape as Reshape
from funcnet.layers import RMSNorm as RMSNorm
from funcnet.layers import Sigmoid as Sigmoid
from funcnet.layers import Silu as Silu
from funcnet.layers import SimpleRNN as SimpleRNN
from funcnet.layers import Softmax as Softmax
from funcnet.layers import Softplus as Softplus
from funcnet.layers import Tanh as Tanh
from funcnet.losses import LOSSES as LOSSES
from funcnet.losses import binary_crossentropy as binary_crossentropy
from funcnet.losses import categorical_crossentropy as categorical_crossentropy
from funcnet.losses import huber as huber
from funcnet.losses import mae as mae
from funcnet.losses import mse as mse
from funcnet.losses import multi_loss as multi_loss
from funcnet.losses import sparse_categorical_crossentropy as sparse_categorical_crossentropy
from funcnet.metrics import accuracy as accuracy
from funcnet.metrics import binary_accuracy as binary_accuracy
from funcnet.summary import summary as summary
from funcnet.train import TrainState as TrainState
from funcnet.train import init_train_state as init_train_state
from funcnet.train import make_train_step as make_train_step

__version__ = "0.1.0"
