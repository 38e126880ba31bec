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
from funcnet._src.layers._checks import check_flags
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
    masked: bool = False,
    name: str = "Bidirectional",
) -> Layer:
    """Runs a recurrent layer forward and over the reversed sequence, and merges the two.

    Args:
        layer: a layer over ``[batch, time, features]`` (SimpleRNN, LSTM, GRU).
        merge: "concat" (along features), "sum", "mul", "ave", or None to
            return the pair ``(forward, backward)``.
        backward_layer: the layer run on the reversed sequence; None uses a
            second, independently initialised copy of ``layer``. Bidirectional
            reverses the sequence itself: build both layers with
            ``go_backwards=False`` (unlike Keras's backward layer).
        masked: take ``(x, mask)``, mask ``[batch, time]`` (True for real
            steps), and give it to both layers, which must be built with
            ``masked=True``; the backward layer reads each sequence backwards
            within its own length, and with ``return_sequences`` padded steps
            output zeros and the output is ``(y, mask)``, as Keras's.
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
    check_flags(name, masked=masked)
    if merge is not None and merge not in _MERGES:
        raise ValueError(
            f"{name}: merge must be one of {', '.join(map(repr, _MERGES))} or None, got {merge!r}."
        )
    children = {"forward": layer, "backward": backward_layer or layer}
    segments = {role: f"{name}[{role}]" for role in children}

    def split(inputs: Any, is_one: Callable[[Any], bool]) -> tuple[Any, Any, tuple[Any, Any]]:
        """``(x, mask or None, carries)`` of the layer's input."""
        if masked:
            pair = isinstance(inputs, (tuple, list)) and len(inputs) == 2
            if pair and all(map(is_one, inputs)):
                return inputs[0], inputs[1], (None, None)
            raise shape_error(
                name,
                "built with masked=True, expected (x, mask) with x [batch, time, features] and "
                f"mask [batch, time], got {describe(inputs)}. Put fn.Masking() or "
                "fn.Embedding(..., mask_zero=True) in front, or build with masked=False.",
            )
        if is_one(inputs):
            return inputs, None, (None, None)
        if isinstance(inputs, (tuple, list)) and len(inputs) == 2 and is_one(inputs[0]):
            carries = inputs[1]
            if isinstance(carries, (tuple, list)) and len(carries) == 2:
                return inputs[0], None, tuple(carries)
        raise shape_error(
            name,
            "expected x [batch, time, features] or (x, (forward_carry, backward_carry)), "
            f"got {describe(inputs)}.",
        )

    def child_input(x: Any, mask: Any, carry: Any) -> Any:
        return with_carry(x if mask is None else (x, mask), carry)

    def rank(a: Any) -> int:
        return len(a) if is_shape(a) else getattr(a, "ndim", -1)

    def is_sequences_with_mask(out: Any) -> bool:
        return (
            isinstance(out, (tuple, list))
            and len(out) == 2
            and rank(out[0]) == 3
            and rank(out[1]) == 2
        )

    def output_of(out: Any, masked: bool) -> Any:
        """A child's output without the mask a masked child passes on with its sequences."""
        if not masked:
            return out
        if is_sequences_with_mask(out):  # (y, mask)
            return out[0]
        if isinstance(out, (tuple, list)) and len(out) == 2 and is_sequences_with_mask(out[0]):
            return (out[0][0], out[1])  # ((y, mask), carry)
        return out

    def with_carry(x: Any, carry: Any) -> Any:
        return x if carry is None else (x, carry)

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Any, Params, State]:
        x_shape, mask_shape, carries = split(input_shape, is_shape)
        outs, params, states = {}, {}, {}
        for (role, child), k, carry in zip(children.items(), jax.random.split(key), carries):
            out, params[role], states[role] = init_child(
                segments[role], child, k, child_input(x_shape, mask_shape, carry)
            )
            outs[role] = output_of(out, mask_shape is not None)
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
        if mask_shape is not None and len(ys["forward"]) == 3:
            y = (y, mask_shape)  # sequences carry their mask on, as the children's do
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
        x, mask, carries = split(x, lambda a: not isinstance(a, (tuple, list)))
        keys = [None, None] if key is None else list(jax.random.split(key))
        outs, new_state = {}, {}
        for (role, child), k, carry in zip(children.items(), keys, carries):
            # The forward child runs first, so a bad input is reported by it,
            # with its path, before flip touches the array.
            seq, seq_mask = x, mask
            if role == "backward":
                # Flipping the padded sequence and skipping its masked steps reads
                # each sequence backwards within its own length (Keras's go_backwards).
                seq = jnp.flip(jnp.asarray(x), axis=1)
                seq_mask = None if mask is None else jnp.flip(jnp.asarray(mask), axis=1)
            out, new_state[role] = apply_child(
                segments[role],
                child,
                params[role],
                state[role],
                child_input(seq, seq_mask, carry),
                key=k,
                train=train,
            )
            outs[role] = output_of(out, mask is not None)
        stateful = isinstance(outs["forward"], (tuple, list))
        fwd, bwd = (outs[r][0] if stateful else outs[r] for r in ("forward", "backward"))
        if bwd.ndim == 3:
            bwd = jnp.flip(bwd, axis=1)
        if mask is not None and fwd.ndim == 3:
            # Keras's Bidirectional gives zeros at masked steps (zero_output_for_mask).
            keep = jnp.asarray(mask).astype(bool)[:, :, None]
            fwd, bwd = jnp.where(keep, fwd, 0), jnp.where(keep, bwd, 0)
        y = (fwd, bwd) if merge is None else _MERGES[merge](fwd, bwd)
        if mask is not None and fwd.ndim == 3:
            y = (y, mask)
        if stateful:
            return (y, (outs["forward"][1], outs["backward"][1])), new_state
        return y, new_state

    return Layer(init, apply, name)
