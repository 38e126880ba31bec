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
from funcnet._src.training.step import NonFinite as NonFinite

__all__ = [
    "Callback",
    "EarlyStopping",
    "ModelCheckpoint",
    "NonFinite",
    "ReduceLROnPlateau",
    "Run",
    "TerminateOnNaN",
]
