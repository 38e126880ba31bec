"""funcnet: pure, composable neural-network layers for JAX.

A layer is a pair of pure functions, ``init(key, input_shape)`` and
``apply(params, state, x, *, key=None, train=False)``; models are layers
composed by combinators; losses are plain functions; optax supplies the
optimizers. See ``funcnet.core`` for the contract.
"""

from funcnet.combinators import serial as serial
from funcnet.core import Layer as Layer
from funcnet.core import LayerError as LayerError
from funcnet.core import LayerTypeError as LayerTypeError
from funcnet.core import LayerValueError as LayerValueError
from funcnet.core import Lambda as Lambda
from funcnet.core import custom_layer as custom_layer
from funcnet.core import from_stax as from_stax
from funcnet.layers import ACTIVATIONS as ACTIVATIONS
from funcnet.layers import Activation as Activation
from funcnet.layers import Dense as Dense
from funcnet.layers import Elu as Elu
from funcnet.layers import Flatten as Flatten
from funcnet.layers import Gelu as Gelu
from funcnet.layers import Identity as Identity
from funcnet.layers import LeakyRelu as LeakyRelu
from funcnet.layers import LogSoftmax as LogSoftmax
from funcnet.layers import Relu as Relu
from funcnet.layers import Reshape as Reshape
from funcnet.layers import Sigmoid as Sigmoid
from funcnet.layers import Silu as Silu
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
from funcnet.train import FitResult as FitResult
from funcnet.train import TrainState as TrainState
from funcnet.train import evaluate as evaluate
from funcnet.train import fit as fit
from funcnet.train import init_train_state as init_train_state
from funcnet.train import make_train_step as make_train_step
from funcnet.train import predict as predict

__version__ = "0.1.0"
