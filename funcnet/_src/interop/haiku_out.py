"""A funcnet model as a Haiku module, for ``hk.transform`` and ``hk.transform_with_state``.

Each leaf of funcnet's params is one ``hk.get_parameter`` and each leaf of
its state one ``hk.get_state``, named by its path in the tree (``0.w``,
``1.mean``), so Haiku's params and state dicts show the model's structure and
Haiku's tools (``hk.data_structures``, its optimisers' masks) work per leaf.
Keys come from ``hk.next_rng_key()`` (in training only); the train switch is
Haiku's ``is_training``. Haiku is imported only when a module is made.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from funcnet._src.core import Layer
from funcnet._src.interop.as_function import apply_net, check_net

_HAIKU_KEY_FIX = (
    "pass one to the transformed function's apply, as for hk.dropout: "
    "apply(params, state, jax.random.key(0), x, is_training=True)"
)


def to_haiku(net: Layer) -> Callable[..., Any]:
    """``net`` as a Haiku module constructor: build and call it inside ``hk.transform``.

    ``Model = fn.to_haiku(net)``; inside the transformed function,
    ``Model(name=None)(x, is_training=False)`` runs ``net``. Its params are
    ``hk.get_parameter``\\ s (one per leaf of ``net.init``'s params, named by
    the leaf's path), so ``init`` returns them under the module's name. A model
    with state (batch norm) keeps it with ``hk.get_state`` and needs
    ``hk.transform_with_state``; its training calls (``is_training=True``)
    store the new state with ``hk.set_state``. In training, dropout takes
    its key from ``hk.next_rng_key()``, so pass ``apply`` a key.

    Args:
        net: the model.

    Returns:
        A constructor ``Model(name=None)`` of a ``haiku.Module`` whose
        ``__call__(x, is_training=False)`` maps ``x`` (``[batch, ...]``, as
        ``net.apply`` takes it) to the model's output.

    Example:
        >>> import jax, jax.numpy as jnp, haiku as hk, funcnet as fn
        >>> Model = fn.to_haiku(fn.serial(fn.Dense(4), fn.BatchNorm(), fn.Dense(1)))
        >>> f = hk.transform_with_state(lambda x, is_training: Model()(x, is_training))
        >>> params, state = f.init(jax.random.key(0), jnp.ones((2, 3)), is_training=True)
        >>> sorted(params["funcnet"])
        ['0.b', '0.w', '1.bias', '1.scale', '2.b', '2.w']
        >>> y, state = f.apply(params, state, None, jnp.ones((2, 3)), is_training=True)
        >>> y.shape
        (2, 1)
    """
    check_net(net, "to_haiku")
    return functools.partial(_module_class(), net)


@functools.cache
def _module_class() -> type:
    """The Haiku module class, defined on first use so that Haiku is imported only then."""
    import haiku as hk

    class FuncnetModule(hk.Module):
        """A funcnet model inside Haiku (made by ``funcnet.to_haiku``)."""

        def __init__(self, net: Layer, name: str | None = None):
            super().__init__(name=name or "funcnet")
            self.net = net

        def __call__(self, x: Any, is_training: bool = False) -> Any:
            net = self.net
            spec = jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), x)
            shapes = jax.eval_shape(lambda key: net.init(key, spec)[1:], jax.random.key(0))
            initial: Any = (None, None)
            if hk.running_init():
                initial = net.init(hk.next_rng_key(), spec)[1:]

            def leaves(i: int, get: Callable[..., Any]) -> Any:
                paths, treedef = jax.tree_util.tree_flatten_with_path(shapes[i])
                values = [None] * len(paths) if initial[i] is None else jax.tree.leaves(initial[i])
                found = [
                    get(_leaf_name(path), leaf.shape, leaf.dtype, init=_constant(value))
                    for (path, leaf), value in zip(paths, values)
                ]
                return jax.tree.unflatten(treedef, found), [_leaf_name(p) for p, _ in paths]

            params, _ = leaves(0, hk.get_parameter)
            state, state_names = leaves(1, hk.get_state)
            key = hk.maybe_next_rng_key() if is_training else None
            y, new_state = apply_net(
                net, params, state, x, key=key, train=is_training, fix=_HAIKU_KEY_FIX
            )
            if is_training and state_names and not hk.running_init():
                for name, value in zip(state_names, jax.tree.leaves(new_state)):
                    hk.set_state(name, value)
            return y

    return FuncnetModule


def _leaf_name(path: tuple[Any, ...]) -> str:
    """``(SequenceKey(0), DictKey('w'))`` -> ``"0.w"``: a leaf's path as a Haiku name."""
    parts = []
    for entry in path:
        for attribute in ("key", "idx", "name"):
            if hasattr(entry, attribute):
                parts.append(str(getattr(entry, attribute)))
                break
    return ".".join(parts) or "value"


def _constant(value: Any) -> Callable[..., Any] | None:
    """An initializer returning ``value`` (what ``net.init`` made), or None outside init."""
    if value is None:
        return None
    return lambda shape, dtype: value
