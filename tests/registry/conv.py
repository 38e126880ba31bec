"""Registry cases for the convolution and pooling layers."""

import funcnet as fn
from tests.registry import Case

CASES = [
    Case("Conv", lambda: fn.Conv(3, 3, strides=2), (None, 7, 2), id="1d-strided"),
    Case(
        "Conv",
        lambda: fn.Conv(4, (3, 2), padding="VALID", dilation=(1, 2)),
        (None, 5, 6, 2),
        id="2d-valid-dilated",
    ),
    Case(
        "Conv",
        lambda: fn.Conv(3, (2, 2), padding=((1, 0), (0, 2))),
        (None, 4, 3, 2),
        id="2d-explicit",
    ),
    Case("Conv", lambda: fn.Conv(2, (2, 3, 2), (1, 2, 1)), (None, 3, 4, 3, 2), id="3d"),
    Case(
        "Conv",
        lambda: fn.Conv(4, (3, 3), feature_group_count=2, use_bias=False),
        (None, 5, 5, 2),
        id="depthwise",
    ),
    Case("ConvTranspose", lambda: fn.ConvTranspose(3, 3, strides=2), (None, 4, 2), id="1d-same"),
    Case(
        "ConvTranspose",
        lambda: fn.ConvTranspose(2, (3, 2), (2, 3), "VALID"),
        (None, 3, 2, 3),
        id="2d-valid",
    ),
    Case("ConvTranspose", lambda: fn.ConvTranspose(2, (2, 2, 2), 2), (None, 2, 2, 2, 1), id="3d"),
    Case("MaxPool", lambda: fn.MaxPool((2, 2)), (None, 4, 5, 3), id="2d"),
    Case("MaxPool", lambda: fn.MaxPool(3, 2, "SAME"), (None, 6, 2), id="1d-same-overlapping"),
    Case("AvgPool", lambda: fn.AvgPool((2, 3), padding="SAME"), (None, 5, 5, 2), id="2d-same"),
    Case("AvgPool", lambda: fn.AvgPool((2, 2, 2), 1), (None, 3, 3, 3, 2), id="3d"),
    Case("GlobalAvgPool", fn.GlobalAvgPool, (None, 3, 4, 2)),
    Case("GlobalMaxPool", fn.GlobalMaxPool, (None, 5, 3)),
]
