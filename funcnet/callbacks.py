"""Callbacks for ``fit``: objects (or plain functions) called between epochs.

>>> import funcnet as fn
>>> stop = fn.callbacks.EarlyStopping(monitor="loss", patience=3)
>>> isinstance(stop, fn.callbacks.Callback)
True
"""

from funcnet._src.training.callbacks import Callback as Callback
from funcnet._src.training.callbacks import EarlyStopping as EarlyStopping
from funcnet._src.training.callbacks import ModelCheckpoint as ModelCheckpoint
from funcnet._src.training.callbacks import ReduceLROnPlateau as ReduceLROnPlateau
from funcnet._src.training.callbacks import Run as Run
from funcnet._src.training.callbacks import TerminateOnNaN as TerminateOnNaN
from funcnet._src.training.keras_callbacks import BackupAndRestore as BackupAndRestore
from funcnet._src.training.keras_callbacks import CSVLogger as CSVLogger
from funcnet._src.training.keras_callbacks import LambdaCallback as LambdaCallback
from funcnet._src.training.keras_callbacks import LearningRateScheduler as LearningRateScheduler
from funcnet._src.training.keras_callbacks import TensorBoard as TensorBoard
from funcnet._src.training.step import NonFinite as NonFinite

__all__ = [
    "BackupAndRestore",
    "CSVLogger",
    "Callback",
    "EarlyStopping",
    "LambdaCallback",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "NonFinite",
    "ReduceLROnPlateau",
    "Run",
    "TensorBoard",
    "TerminateOnNaN",
]
