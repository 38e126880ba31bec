"""Combinators: layers built from layers.

Each combinator returns a :class:`~funcnet.core.Layer`. Children may be
layers or plain functions ``f(x) -> y``. Children's params and state are kept
in tuples, in order; the key is split deterministically, one per child.
Errors raised by a child carry its path (``serial[2].Dense``).
"""

from __future__ import annotations

from typing import Any

from funcnet.core import (
    Layer,
    apply_child,
    as_layer,
    check_children_tree,
    init_child,
    split_key,
)


def serial(*layers: Any, name: str = "serial") -> Layer:
    """Chains layers: the output of each is the input of the next.

    Args:
        *layers: layers or plain functions ``f(x) -> y``, in order.
        name: the name used in error paths and summaries.

    Returns:
        A layer whose params and state are tuples with one entry per child.

    Example:
        >>> import jax, funcnet as fn
        >>> net = fn.serial(fn.Dense(4), jax.nn.tanh, fn.Dense(1))
        >>> out_shape, params, state = net.init(jax.random.key(0), (None, 2))
        >>> out_shape, len(params)
        ((None, 1), 3)
    """
    children = tuple(as_layer(layer) for layer in layers)
    segments = tuple(f"{name}[{i}]" for i in range(len(children)))

    def init(key, input_shape):
        params, states = [], []
        shape = input_shape
        for segment, child, child_key in zip(segments, children, split_key(key, len(children))):
            shape, child_params, child_state = init_child(segment, child, child_key, shape)
            params.append(child_params)
            states.append(child_state)
        return shape, tuple(params), tuple(states)

    def apply(params, state, x, *, key=None, train=False):
        check_children_tree(name, len(children), params, state)
        new_states = []
        keys = split_key(key, len(children))
        for segment, child, p, s, k in zip(segments, children, params, state, keys):
            x, s = apply_child(segment, child, p, s, x, key=k, train=train)
            new_states.append(s)
        return x, tuple(new_states)

    return Layer(init, apply, name)
