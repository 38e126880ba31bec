"""Bidirectional: a recurrent layer run forward and over the reversed sequence.

Params and state are ``{"forward": ..., "backward": ...}``; the two outputs
are merged as Keras's ``merge_mode`` does. The decisions are in
``docs/layers-attention-recurrent.md``, section "Bidirectional".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from funcnet._src.core import (
    InputShape,
    Layer,
    Params,
    State,
    apply_child,
    init_child,
    is_shape,
    shape_error,
)
from funcnet._src.layers.recurrent import describe

_MERGES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "concat": lambda a, b: jnp.concatenate([a, b], axis=-1),
    "sum": lambda a, b: a + b,
    "mul": lambda a, b: a * b,
    "ave": lambda a, b: (a + b) / 2,
}


def Bidirectional(
    layer: Layer,
    merge: str | None = "concat",
    *,
    backward_layer: Layer | None = None,
    name: str = "Bidirectional",
) -> Layer:
    """Runs a recurrent layer forward and over the reversed sequence, and merges the two.

    Args:
        layer: a layer over ``[batch, time, features]`` (SimpleRNN, LSTM, GRU).
        merge: "concat" (along features), "sum", "mul", "ave", or None to
            return the pair ``(forward, backward)``.
        backward_layer: the layer run on the reversed sequence; None uses a
            second, independently initialised copy of ``layer``.
        name: the name used in error paths and summaries.

    Returns:
        A layer with params and state ``{"forward": ..., "backward": ...}``.
        It takes ``x`` or, for layers that accept a carry, ``(x, (forward_carry,
        backward_carry))``; if the layers return their state, the output is
        ``(merged, (forward_carry, backward_carry))``.

    Example:
        >>> import jax, funcnet as fn
        >>> net = fn.Bidirectional(fn.LSTM(5, return_sequences=True))
        >>> out_shape, params, state = net.init(jax.random.key(0), (None, 4, 3))
        >>> out_shape, sorted(params)
        ((None, 4, 10), ['backward', 'forward'])
    """
    if not isinstance(layer, Layer) or not isinstance(backward_layer, (Layer, type(None))):
        bad = layer if not isinstance(layer, Layer) else backward_layer
        raise TypeError(
            f"{name}: expected a funcnet Layer such as LSTM(5), got {type(bad).__name__}: {bad!r}. "
            "Layer constructors are calls: write LSTM(5), not LSTM."
        )
    if merge is not None and merge not in _MERGES:
        raise ValueError(
            f"{name}: merge must be one of {', '.join(map(repr, _MERGES))} or None, got {merge!r}."
        )
    children = {"forward": layer, "backward": backward_layer or layer}
    segments = {role: f"{name}[{role}]" for role in children}

    def split(inputs: Any, is_one: Callable[[Any], bool]) -> tuple[Any, tuple[Any, Any]]:
        if is_one(inputs):
            return inputs, (None, None)
        if isinstance(inputs, (tuple, list)) and len(inputs) == 2 and is_one(inputs[0]):
            carries = inputs[1]
            if isinstance(carries, (tuple, list)) and len(carries) == 2:
                return inputs[0], tuple(carries)
        raise shape_error(
            name,
            "expected x [batch, time, features] or (x, (forward_carry, backward_carry)), "
            f"got {describe(inputs)}.",
        )

    def with_carry(x: Any, carry: Any) -> Any:
        return x if carry is None else (x, carry)

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Any, Params, State]:
        x_shape, carries = split(input_shape, is_shape)
        outs, params, states = {}, {}, {}
        for (role, child), k, carry in zip(children.items(), jax.random.split(key), carries):
            outs[role], params[role], states[role] = init_child(
                segments[role], child, k, with_carry(x_shape, carry)
            )
        stateful = not is_shape(outs["forward"])
        if stateful == is_shape(outs["backward"]):
            raise shape_error(
                name,
                "one of the forward and backward layers returns its state and the other "
                "does not. Give both the same return_state.",
            )
        ys = {role: out[0] if stateful else out for role, out in outs.items()}
        fwd, bwd = ys["forward"], ys["backward"]
        # concat (and None) allow different units; sum, mul and ave need equal shapes.
        agree = len(fwd) == len(bwd) and fwd[:-1] == bwd[:-1]
        if not agree or (merge not in ("concat", None) and fwd != bwd):
            raise shape_error(
                name,
                f"the forward and backward layers' outputs differ: {ys['forward']} and "
                f"{ys['backward']}. Give both the same units and return_sequences.",
            )
        if merge is None:
            y = (ys["forward"], ys["backward"])
        elif merge == "concat":
            f, b = ys["forward"][-1], ys["backward"][-1]
            y = (*ys["forward"][:-1], f + b)
        else:
            y = ys["forward"]
        if stateful:
            return (y, (outs["forward"][1], outs["backward"][1])), params, states
        return y, params, states

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[Any, State]:
        x, carries = split(x, lambda a: not isinstance(a, (tuple, list)))
        keys = [None, None] if key is None else list(jax.random.split(key))
        outs, new_state = {}, {}
        for (role, child), k, carry in zip(children.items(), keys, carries):
            # The forward child runs first, so a bad input is reported by it,
            # with its path, before flip touches the array.
            seq = jnp.flip(jnp.asarray(x), axis=1) if role == "backward" else x
            outs[role], new_state[role] = apply_child(
                segments[role],
                child,
                params[role],
                state[role],
                with_carry(seq, carry),
                key=k,
                train=train,
            )
        stateful = isinstance(outs["forward"], (tuple, list))
        fwd, bwd = (outs[r][0] if stateful else outs[r] for r in ("forward", "backward"))
        if bwd.ndim == 3:
            bwd = jnp.flip(bwd, axis=1)
        y = (fwd, bwd) if merge is None else _MERGES[merge](fwd, bwd)
        if stateful:
            return (y, (outs["forward"][1], outs["backward"][1])), new_state
        return y, new_state

    return Layer(init, apply, name)
