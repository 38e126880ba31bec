"""The TensorFlow Playground's data sets, as numpy arrays.

>>> import funcnet as fn
>>> x, y = fn.datasets.circle(100, noise=0.0, seed=0)
>>> x.shape, y.shape
((100, 2), (100,))
"""

from funcnet._src.playground.datasets import CLASSIFICATION as CLASSIFICATION
from funcnet._src.playground.datasets import REGRESSION as REGRESSION
from funcnet._src.playground.datasets import circle as circle
from funcnet._src.playground.datasets import gauss as gauss
from funcnet._src.playground.datasets import playground_data as playground_data
from funcnet._src.playground.datasets import playground_split as playground_split
from funcnet._src.playground.datasets import reg_gauss as reg_gauss
from funcnet._src.playground.datasets import reg_plane as reg_plane
from funcnet._src.playground.datasets import spiral as spiral
from funcnet._src.playground.datasets import xor as xor

__all__ = [
    "CLASSIFICATION",
    "REGRESSION",
    "circle",
    "gauss",
    "playground_data",
    "playground_split",
    "reg_gauss",
    "reg_plane",
    "spiral",
    "xor",
]
