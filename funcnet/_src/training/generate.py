"""Autoregressive sampling from a decoding model, one compiled program per call shape.

:func:`generate` runs a model built with ``decode=True`` (its key/value caches
in ``state``): the prompt goes through once, then each new token is one call
on a ``[batch, 1]`` input that attends to the cache, inside one ``lax.scan``.
The decisions are in ``docs/transformers.md``.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from funcnet._src.core import Layer, Params, as_layer, key_from
from funcnet._src.training.model_cache import ModelCache

_PROGRAMS: ModelCache[Any] = ModelCache()


def _sample(logits: jax.Array, key: jax.Array, temperature: jax.Array, greedy: bool) -> jax.Array:
    if greedy:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    scaled = logits.astype(jnp.float32) / temperature
    return jax.random.categorical(key, scaled, axis=-1).astype(jnp.int32)


def _program(net: Layer, steps: int, greedy: bool) -> Any:
    def run(params: Params, prompt: jax.Array, key: jax.Array, temperature: jax.Array) -> jax.Array:
        batch, length = prompt.shape
        spec = jax.ShapeDtypeStruct((batch, length + steps), prompt.dtype)
        # Only the state is kept: XLA drops the params' initializers as dead code.
        _, _, state = net.init(jax.random.key(0), spec)
        logits, state = net.apply(params, state, prompt)
        keys = jax.random.split(key, steps)
        first = _sample(logits[:, -1], keys[0], temperature, greedy)

        def step(carry: tuple[jax.Array, Any], k: jax.Array) -> tuple[Any, jax.Array]:
            token, state = carry
            logits, state = net.apply(params, state, token[:, None])
            new = _sample(logits[:, -1], k, temperature, greedy)
            return (new, state), token

        (last, _), tokens = jax.lax.scan(step, (first, state), keys[1:])
        return jnp.concatenate([tokens.T, last[:, None]], axis=1)

    return jax.jit(run)


def generate(
    net: Layer,
    params: Params,
    prompt: ArrayLike,
    steps: int,
    *,
    key: Any = None,
    temperature: float = 1.0,
) -> jax.Array:
    """Samples ``steps`` tokens after ``prompt``, each from a key/value cache in one step.

    ``net`` is the decoding twin of a trained language model (e.g.
    ``fn.TransformerLM(..., decode=True)``; ``params`` are the trained
    model's). Its state is made by ``net.init`` on ``(batch, prompt length +
    steps)``: empty caches of that length. The prompt runs through once, then
    every new token is one ``apply`` on a single position that attends to the
    cache, so a token costs one step, not a pass over the whole prefix. The
    whole loop is one compiled program (a ``lax.scan``), cached per model,
    ``steps`` and greedy-or-not.

    Args:
        net: a model mapping ids ``[batch, T]`` to logits ``[batch, T, vocab]``
            whose state carries its caches (built with ``decode=True``).
        params: the trained params (the same tree for ``decode=True`` and ``False``).
        prompt: integer ids ``[batch, P]``, ``P >= 1``.
        steps: the number of tokens to generate, ``>= 1``.
        key: a PRNG key or integer seed for sampling; not needed when
            ``temperature=0``.
        temperature: the softmax temperature; 0 takes the most likely token
            (greedy decoding).

    Returns:
        The new tokens, int32 ``[batch, steps]`` (the prompt not included).

    Example:
        >>> import jax, jax.numpy as jnp, funcnet as fn
        >>> lm = fn.TransformerLM(vocab_size=11, features=8, depth=2, num_heads=2)
        >>> _, params, _ = lm.init(0, jax.ShapeDtypeStruct((None, 8), jnp.int32))
        >>> decoder = fn.TransformerLM(vocab_size=11, features=8, depth=2, num_heads=2, decode=True)
        >>> tokens = fn.generate(decoder, params, jnp.array([[1, 2, 3]]), steps=5, temperature=0)
        >>> tokens.shape, tokens.dtype
        ((1, 5), dtype('int32'))
    """
    net = as_layer(net)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"generate: steps must be an integer >= 1, got {steps!r}.")
    if (
        not isinstance(temperature, (int, float))
        or isinstance(temperature, bool)
        or temperature < 0
    ):
        raise ValueError(
            f"generate: temperature must be a number >= 0 (0 = greedy), got {temperature!r}."
        )
    prompt = jnp.asarray(prompt)
    if prompt.ndim != 2 or prompt.shape[1] < 1 or not jnp.issubdtype(prompt.dtype, jnp.integer):
        raise ValueError(
            f"generate: prompt must be integer token ids of shape [batch, length >= 1], got "
            f"dtype {prompt.dtype} and shape {prompt.shape}. For one prompt use ids[None, :]."
        )
    greedy = temperature == 0
    if greedy:
        key = jax.random.key(0)  # unused by argmax; keeps one program signature
    elif key is None:
        raise ValueError(
            "generate: sampling at temperature > 0 needs a key, e.g. "
            "fn.generate(net, params, prompt, steps, key=jax.random.key(0)); "
            "temperature=0 decodes greedily without one."
        )
    normalised = key_from(key)
    if normalised is None:
        raise TypeError(
            f"generate: key must be a PRNG key such as jax.random.key(0), or an integer seed, "
            f"got {key!r}."
        )
    spec = jax.ShapeDtypeStruct((prompt.shape[0], prompt.shape[1] + steps), prompt.dtype)

    def build(weak: Layer) -> Any:
        # Checked once per model (tracing init is not free), when its program is built.
        _, _, state = jax.eval_shape(
            functools.partial(weak.init, input_shape=spec), jax.random.key(0)
        )
        if not jax.tree.leaves(state):
            raise ValueError(
                f"generate: the model {net.name!r} keeps no key/value cache in its state, so each "
                "step would see only the newest token. Pass its decoding twin, built with "
                "decode=True (e.g. fn.TransformerLM(..., decode=True)), with the trained params."
            )
        return _program(weak, steps, greedy)

    program = _PROGRAMS.get(net, (steps, greedy), build)
    return program(params, prompt, normalised, jnp.asarray(max(temperature, 1e-6), jnp.float32))
