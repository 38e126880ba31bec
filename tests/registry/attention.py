"""Registry cases for MultiHeadAttention: self, causal, cross, and masked forms."""

import jax

import funcnet as fn
from tests.registry import Case


def _with_bool_mask(key, shape, dtype):
    # The rank-4 entry of (query, key, value, mask) is the boolean mask.
    if len(shape) == 4:
        return jax.random.bernoulli(key, 0.7, shape)
    return jax.random.normal(key, shape, dtype)


CASES = [
    Case("MultiHeadAttention", lambda: fn.MultiHeadAttention(2, 3), (None, 4, 3)),
    Case(
        "MultiHeadAttention",
        lambda: fn.MultiHeadAttention(2, 3, causal=True, use_bias=False),
        (None, 4, 3),
        id="causal-nobias",
    ),
    Case(
        "MultiHeadAttention",
        lambda: fn.MultiHeadAttention(1, 2, value_size=3, out_features=5),
        ((None, 4, 3), (None, 5, 2)),
        id="cross",
    ),
    Case(
        "MultiHeadAttention",
        lambda: fn.MultiHeadAttention(2, 3, causal=True),
        ((None, 4, 3), (None, 4, 2), (None, 4, 5), (None, 1, 4, 4)),
        make_input=_with_bool_mask,
        id="qkv-mask",
    ),
]
