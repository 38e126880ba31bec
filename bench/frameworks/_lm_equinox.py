"""The transformer workload's model in Equinox: ``eqx.nn`` layers on one sequence, vmapped.

``eqx.nn.MultiheadAttention`` (with its four biases switched on, as in the
other frameworks), ``eqx.nn.LayerNorm(eps=1e-5)``, ``eqx.nn.Embedding``, the
causal mask ``jnp.tril``; Equinox's default inits differ, so the weights are
replaced with Glorot-uniform ones (``[out, in]``), the biases with zeros and
the tables with ``normal(0.02)``. The model is :class:`bench.spec.TransformerLM`.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from bench.spec import TransformerLM

_GLOROT_OUT_IN = jax.nn.initializers.glorot_uniform(in_axis=1, out_axis=0)
_NORMAL_0_02 = jax.nn.initializers.normal(0.02)


def _glorot(layer: eqx.nn.Linear, key: jax.Array) -> eqx.nn.Linear:
    weight = _GLOROT_OUT_IN(key, layer.weight.shape, jnp.float32)
    return eqx.tree_at(lambda m: (m.weight, m.bias), layer, (weight, jnp.zeros_like(layer.bias)))


class Block(eqx.Module):
    norm1: eqx.nn.LayerNorm
    attention: eqx.nn.MultiheadAttention
    norm2: eqx.nn.LayerNorm
    up: eqx.nn.Linear
    down: eqx.nn.Linear

    def __init__(self, spec: TransformerLM, key: jax.Array):
        d = spec.features
        keys = jax.random.split(key, 9)
        attention = eqx.nn.MultiheadAttention(
            spec.heads,
            d,
            use_query_bias=True,
            use_key_bias=True,
            use_value_bias=True,
            use_output_bias=True,
            key=keys[0],
        )
        for i, name in enumerate(("query_proj", "key_proj", "value_proj", "output_proj")):
            attention = eqx.tree_at(
                lambda m, name=name: getattr(m, name),
                attention,
                _glorot(getattr(attention, name), keys[1 + i]),
            )
        self.norm1 = eqx.nn.LayerNorm(d, eps=1e-5)
        self.attention = attention
        self.norm2 = eqx.nn.LayerNorm(d, eps=1e-5)
        self.up = _glorot(eqx.nn.Linear(d, 4 * d, key=keys[5]), keys[6])
        self.down = _glorot(eqx.nn.Linear(4 * d, d, key=keys[7]), keys[8])

    def __call__(self, h: jax.Array, mask: jax.Array) -> jax.Array:
        a = jax.vmap(self.norm1)(h)
        h = h + self.attention(a, a, a, mask=mask)
        u = jax.nn.gelu(jax.vmap(self.up)(jax.vmap(self.norm2)(h)), approximate=False)
        return h + jax.vmap(self.down)(u)


class LM(eqx.Module):
    embed: eqx.nn.Embedding
    positions: jax.Array
    blocks: list[Block]
    final_norm: eqx.nn.LayerNorm

    def __init__(self, spec: TransformerLM, key: jax.Array):
        k_embed, k_pos, *k_blocks = jax.random.split(key, 2 + spec.depth)
        table = _NORMAL_0_02(k_embed, (spec.vocab, spec.features), jnp.float32)
        self.embed = eqx.nn.Embedding(weight=table)
        self.positions = _NORMAL_0_02(k_pos, (spec.length, spec.features), jnp.float32)
        self.blocks = [Block(spec, k) for k in k_blocks]
        self.final_norm = eqx.nn.LayerNorm(spec.features, eps=1e-5)

    def __call__(self, tokens: Any) -> jax.Array:
        """One sequence of ids ``[length]`` to logits ``[length, vocab]``."""
        t = tokens.shape[0]
        h = jax.vmap(self.embed)(tokens) + self.positions[:t]
        mask = jnp.tril(jnp.ones((t, t), bool))
        for block in self.blocks:
            h = block(h, mask)
        return jax.vmap(self.final_norm)(h) @ self.embed.weight.T
