"""The transformer workload's model in Flax, Linen and NNX, each written the way its docs do.

Both use Flax's own ``MultiHeadDotProductAttention`` / ``MultiHeadAttention``
(``DenseGeneral`` projections, whose Glorot init sees the flattened
``[features, heads * size]`` kernel, as a ``[features, features]`` one),
``LayerNorm(epsilon=1e-5)``, ``Embed(..., embedding_init=normal(0.02))``
with ``embed.attend`` as the tied output, and ``make_causal_mask``. The model
is :class:`bench.spec.TransformerLM`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
from flax import nnx

from bench.frameworks._jax_common import GLOROT
from bench.spec import TransformerLM

NORMAL_0_02 = jax.nn.initializers.normal(0.02)


def _gelu(x: jax.Array) -> jax.Array:
    return jax.nn.gelu(x, approximate=False)


class LinenLM(nn.Module):
    spec: TransformerLM

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        s = self.spec
        embed = nn.Embed(s.vocab, s.features, embedding_init=NORMAL_0_02)
        positions = self.param("positions", NORMAL_0_02, (s.length, s.features))
        h = embed(tokens) + positions[: tokens.shape[1]]
        mask = nn.make_causal_mask(tokens)
        for _ in range(s.depth):
            a = nn.LayerNorm(epsilon=1e-5)(h)
            h = h + nn.MultiHeadDotProductAttention(
                num_heads=s.heads, kernel_init=GLOROT, deterministic=True
            )(a, mask=mask)
            u = nn.Dense(4 * s.features, kernel_init=GLOROT)(nn.LayerNorm(epsilon=1e-5)(h))
            h = h + nn.Dense(s.features, kernel_init=GLOROT)(_gelu(u))
        return embed.attend(nn.LayerNorm(epsilon=1e-5)(h))


class NNXBlock(nnx.Module):
    def __init__(self, spec: TransformerLM, rngs: nnx.Rngs):
        d = spec.features
        self.norm1 = nnx.LayerNorm(d, epsilon=1e-5, rngs=rngs)
        self.attention = nnx.MultiHeadAttention(
            spec.heads, d, kernel_init=GLOROT, decode=False, deterministic=True, rngs=rngs
        )
        self.norm2 = nnx.LayerNorm(d, epsilon=1e-5, rngs=rngs)
        self.up = nnx.Linear(d, 4 * d, kernel_init=GLOROT, rngs=rngs)
        self.down = nnx.Linear(4 * d, d, kernel_init=GLOROT, rngs=rngs)

    def __call__(self, h: jax.Array, mask: jax.Array) -> jax.Array:
        h = h + self.attention(self.norm1(h), mask=mask)
        return h + self.down(_gelu(self.up(self.norm2(h))))


class NNXLM(nnx.Module):
    def __init__(self, spec: TransformerLM, rngs: nnx.Rngs):
        self.embed = nnx.Embed(spec.vocab, spec.features, embedding_init=NORMAL_0_02, rngs=rngs)
        self.positions = nnx.Param(NORMAL_0_02(rngs.params(), (spec.length, spec.features)))
        self.blocks = nnx.List([NNXBlock(spec, rngs) for _ in range(spec.depth)])
        self.final_norm = nnx.LayerNorm(spec.features, epsilon=1e-5, rngs=rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        h = self.embed(tokens) + self.positions[: tokens.shape[1]]
        mask = nnx.make_causal_mask(tokens)
        for block in self.blocks:
            h = block(h, mask)
        return self.embed.attend(self.final_norm(h))
