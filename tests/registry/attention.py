"""Registry cases for MultiHeadAttention: self, causal, cross, and masked forms."""

import jax

import funcnet as fn
from tests.registry import Case


def _with_bool_mask(key, shape, dtype):
    # The rank-4 entry of (query, key, value, mask) and a padding mask [batch, T]
    # (masked=True's (x, mask)) are the boolean masks.
    if len(shape) in (2, 4):
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
    Case(
        "MultiHeadAttention",
        lambda: fn.MultiHeadAttention(2, 3, attention_axes=(1, 2)),
        (None, 3, 2, 4),
        id="attention-axes",
    ),
    Case(
        "MultiHeadAttention",
        lambda: fn.MultiHeadAttention(2, 3, causal=True, masked=True),
        ((None, 4, 3), (None, 4)),
        make_input=_with_bool_mask,
        float_dtypes=False,  # the output's mask is boolean
        id="padding-mask",
    ),
]
