"""Losses: plain functions ``loss(predictions, targets) -> scalar``.

Every loss here is also accepted by name in ``fit(loss="...")``; ``LOSSES``
maps the names to the functions. ``get(name, **options)`` fixes a loss's
options, e.g. ``fit(..., loss=fn.losses.get("sparse_categorical_crossentropy",
from_logits=True))`` for a model that ends in logits.

>>> import jax.numpy as jnp
>>> import funcnet as fn
>>> float(fn.losses.mse(jnp.array([1.0, 2.0]), jnp.array([1.0, 0.0])))
2.0
"""

from funcnet._src.losses import LOSSES as LOSSES
from funcnet._src.losses import Loss as Loss
from funcnet._src.losses import binary_crossentropy as binary_crossentropy
from funcnet._src.losses import categorical_crossentropy as categorical_crossentropy
from funcnet._src.losses import get as get
from funcnet._src.losses import get_loss as get_loss
from funcnet._src.losses import huber as huber
from funcnet._src.losses import mae as mae
from funcnet._src.losses import mse as mse
from funcnet._src.losses import multi_loss as multi_loss
from funcnet._src.losses import sparse_categorical_crossentropy as sparse_categorical_crossentropy

__all__ = [
    "LOSSES",
    "Loss",
    "binary_crossentropy",
    "categorical_crossentropy",
    "get",
    "get_loss",
    "huber",
    "mae",
    "mse",
    "multi_loss",
    "sparse_categorical_crossentropy",
]
