"""Registry cases for the normalization layers and Dropout.

The generic tests call ``apply`` with ``train=False``, so BatchNorm uses its
running statistics and Dropout is the identity there; their training
behaviour is tested in tests/test_norm.py and tests/test_dropout.py.
"""

import funcnet as fn
from tests.registry import Case

CASES = [
    Case("BatchNorm", fn.BatchNorm, (None, 4)),
    Case(
        "BatchNorm",
        lambda: fn.BatchNorm(axis=1, use_bias=False),
        (None, 3, 2, 2),
        id="channels-first",
    ),
    Case("LayerNorm", fn.LayerNorm, (None, 5)),
    Case("LayerNorm", lambda: fn.LayerNorm(use_bias=False), (None, 2, 4), id="rank3-nobias"),
    Case("RMSNorm", fn.RMSNorm, (None, 2, 4)),
    Case("GroupNorm", lambda: fn.GroupNorm(2), (None, 3, 4)),
    Case("GroupNorm", lambda: fn.GroupNorm(3), (None, 2, 2, 6), id="2d"),
    Case("Dropout", lambda: fn.Dropout(0.5), (None, 4)),
    Case(
        "Dropout",
        lambda: fn.Dropout(0.5, noise_shape=(None, 1, None)),
        (None, 3, 4),
        id="noise-shape",
    ),
    Case("SpatialDropout1D", lambda: fn.SpatialDropout1D(0.5), (None, 3, 4)),
    Case("SpatialDropout2D", lambda: fn.SpatialDropout2D(0.5), (None, 2, 3, 4)),
    Case("SpatialDropout3D", lambda: fn.SpatialDropout3D(0.5), (None, 2, 2, 3, 4)),
    Case("GroupNorm", lambda: fn.GroupNorm(2, axis=1), (None, 4, 3), id="channels-first"),
    Case("RMSNorm", lambda: fn.RMSNorm(axis=(1, 2)), (None, 3, 4), id="axes"),
]
