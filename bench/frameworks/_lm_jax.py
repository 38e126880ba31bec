"""The hand-written JAX Transformer language model (the reference of the transformer workload).

Written as a JAX user would without a library: a dict of arrays, a Python
loop over the blocks, ``x @ w`` projections reshaped into heads, the causal
mask from ``jnp.tril``, ``jax.nn.softmax``. The model is
:class:`bench.spec.TransformerLM` (pre-norm blocks, exact GELU, learned
positions, the embedding tied to the output).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from bench.frameworks._jax_common import GLOROT
from bench.spec import TransformerLM

NORMAL_0_02 = jax.nn.initializers.normal(0.02)
EPSILON = 1e-5


def _dense(key: jax.Array, fan_in: int, units: int) -> dict[str, jax.Array]:
    return {"w": GLOROT(key, (fan_in, units), jnp.float32), "b": jnp.zeros((units,), jnp.float32)}


def _norm(features: int) -> dict[str, jax.Array]:
    return {
        "scale": jnp.ones((features,), jnp.float32),
        "bias": jnp.zeros((features,), jnp.float32),
    }


def init(spec: TransformerLM, key: jax.Array) -> dict[str, Any]:
    d = spec.features
    k_embed, k_pos, *k_blocks = jax.random.split(key, 2 + spec.depth)
    blocks = []
    for k in k_blocks:
        kq, kk, kv, ko, k1, k2 = jax.random.split(k, 6)
        blocks.append(
            {
                "norm1": _norm(d),
                "query": _dense(kq, d, d),
                "key": _dense(kk, d, d),
                "value": _dense(kv, d, d),
                "output": _dense(ko, d, d),
                "norm2": _norm(d),
                "up": _dense(k1, d, 4 * d),
                "down": _dense(k2, 4 * d, d),
            }
        )
    return {
        "embed": NORMAL_0_02(k_embed, (spec.vocab, d), jnp.float32),
        "positions": NORMAL_0_02(k_pos, (spec.length, d), jnp.float32),
        "blocks": blocks,
        "final_norm": _norm(d),
    }


def layer_norm(p: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.var(x, axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + EPSILON) * p["scale"] + p["bias"]


def attention(p: dict[str, Any], x: jax.Array, heads: int) -> jax.Array:
    b, t, d = x.shape
    size = d // heads

    def project(name: str) -> jax.Array:
        return (x @ p[name]["w"] + p[name]["b"]).reshape(b, t, heads, size)

    q, k, v = project("query"), project("key"), project("value")
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(size)
    causal = jnp.tril(jnp.ones((t, t), bool))
    logits = jnp.where(causal, logits, jnp.finfo(logits.dtype).min)
    weights = jax.nn.softmax(logits, axis=-1)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, t, d)
    return out @ p["output"]["w"] + p["output"]["b"]


def forward(spec: TransformerLM, params: dict[str, Any], tokens: jax.Array) -> jax.Array:
    """Token ids ``[batch, length]`` to logits ``[batch, length, vocab]``."""
    h = params["embed"][tokens] + params["positions"][: tokens.shape[1]]
    for p in params["blocks"]:
        h = h + attention(p, layer_norm(p["norm1"], h), spec.heads)
        u = jax.nn.gelu(layer_norm(p["norm2"], h) @ p["up"]["w"] + p["up"]["b"], approximate=False)
        h = h + u @ p["down"]["w"] + p["down"]["b"]
    h = layer_norm(params["final_norm"], h)
    return h @ params["embed"].T
