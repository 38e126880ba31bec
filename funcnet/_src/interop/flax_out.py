"""A funcnet model as a Flax Linen module (and, through Flax's bridge, an NNX module).

The Linen module keeps the whole params tree as one entry of the ``params``
collection and the whole state tree as one entry of ``batch_stats`` (the
collection Flax's own ``BatchNorm`` uses, so Flax training loops that thread
``batch_stats`` thread funcnet's state with no change; another name can be
chosen). ``train`` is a call argument, as in Flax's examples; in training the
key comes from the ``dropout`` rng stream, and the new state is written back
when ``batch_stats`` is mutable, exactly as Flax's ``BatchNorm`` does. Flax is
imported only when a module is made.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from funcnet._src.core import Layer
from funcnet._src.interop.as_function import apply_net, check_net

PARAMS_NAME = "funcnet"
"""The name of the params tree's one entry in the ``params`` collection."""
STATE_NAME = "funcnet_state"
"""The name of the state tree's one entry in its collection (NNX wants names distinct across collections)."""


def to_flax(
    net: Layer,
    *,
    state_collection: str = "batch_stats",
    rng_collection: str = "dropout",
    name: str | None = None,
) -> Any:
    """``net`` as a Flax Linen module: ``module.apply(variables, x, train=False)``.

    ``module.init(key, x)`` runs ``net.init`` for ``x``'s shape and returns
    ``{"params": {"funcnet": params}, "batch_stats": {"funcnet_state": state}}``
    (no ``batch_stats`` for a stateless model): the same trees ``net.init``
    makes, so they convert back and forth with funcnet's own.

    In training (``train=True``) dropout draws from the ``dropout`` rng stream
    (``rngs={"dropout": key}``) and the new state is stored when the call
    makes ``batch_stats`` mutable (``mutable=["batch_stats"]``), as with
    Flax's ``BatchNorm``.

    Args:
        net: the model.
        state_collection: the Flax collection for funcnet's state.
        rng_collection: the rng stream that keys dropout in training.
        name: the Linen module's name.

    Returns:
        A ``flax.linen.Module``; ``__call__(x, train=False)`` maps ``x``
        (``[batch, ...]``, as ``net.apply`` takes it) to the model's output.

    Example:
        >>> import jax, jax.numpy as jnp, funcnet as fn
        >>> module = fn.to_flax(fn.serial(fn.Dense(4), fn.BatchNorm(), fn.Dense(1)))
        >>> variables = module.init(jax.random.key(0), jnp.ones((2, 3)))
        >>> sorted(variables), jax.tree.map(jnp.shape, variables["params"]["funcnet"][0])
        (['batch_stats', 'params'], {'b': (4,), 'w': (3, 4)})
        >>> y, updates = module.apply(variables, jnp.ones((2, 3)), train=True, mutable=["batch_stats"])
        >>> y.shape, sorted(updates)
        ((2, 1), ['batch_stats'])
    """
    check_net(net, "to_flax")
    for argument, value in (
        ("state_collection", state_collection),
        ("rng_collection", rng_collection),
    ):
        if not isinstance(value, str) or not value or value == "params":
            raise ValueError(
                f"to_flax: {argument} must be the name of a Flax collection other than "
                f"'params', e.g. {'batch_stats' if argument == 'state_collection' else 'dropout'!r}, "
                f"got {value!r}."
            )
    return _module_class()(net, state_collection, rng_collection, name=name)


@functools.cache
def _module_class() -> type:
    """The Linen module class, defined on first use so that Flax is imported only then."""
    import flax.linen as nn

    class FuncnetModule(nn.Module):
        """A funcnet model inside Flax Linen (made by ``funcnet.to_flax``)."""

        net: Layer
        state_collection: str = "batch_stats"
        rng_collection: str = "dropout"

        @nn.compact
        def __call__(self, x: Any, train: bool = False) -> Any:
            net, collection = self.net, self.state_collection
            if self.is_initializing() and not self.has_variable("params", PARAMS_NAME):
                spec = jax.tree.map(
                    lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), x
                )
                # One init for both trees: params and state come from the same key.
                _, params0, state0 = net.init(self.make_rng("params"), spec)
                self.param(PARAMS_NAME, lambda _: params0)
                if jax.tree.leaves(state0):
                    self.variable(collection, STATE_NAME, lambda: state0)
            params: Any = self.get_variable("params", PARAMS_NAME)
            if params is None:
                raise ValueError(
                    f"to_flax: the variables given to apply have no params['{PARAMS_NAME}']. "
                    f"Pass the variables module.init returned (or "
                    f"{{'params': {{'{PARAMS_NAME}': params}}, ...}} with funcnet's params)."
                )
            stateful = self.has_variable(collection, STATE_NAME)
            # A stateless model's state is a tree without leaves (({}, {}) for a
            # serial of two), which Flax does not store: rebuilt from shapes.
            state = self.get_variable(collection, STATE_NAME) if stateful else _state_shapes(net, x)
            if jax.tree.leaves(state) and not stateful:
                raise ValueError(
                    f"to_flax: this model has state (e.g. batch-norm statistics), but the "
                    f"variables given to apply have no '{collection}' collection. Pass all the "
                    f"variables module.init returned, e.g. {{'params': ..., '{collection}': ...}}."
                )
            key = None
            if train and self.has_rng(self.rng_collection):
                key = self.make_rng(self.rng_collection)
            fix = (
                f"pass one as Flax does for dropout: module.apply(variables, x, train=True, "
                f"rngs={{'{self.rng_collection}': key}})"
            )
            y, new_state = apply_net(net, params, state, x, key=key, train=train, fix=fix)
            if train and stateful and not self.is_initializing():
                if not self.is_mutable_collection(collection):
                    raise ValueError(
                        f"to_flax: train=True updates the model's state, which lives in the "
                        f"'{collection}' collection, but apply was not allowed to change it. "
                        f"Call module.apply(variables, x, train=True, mutable=['{collection}']) "
                        "and keep the updated state it returns, as for Flax's BatchNorm."
                    )
                self.put_variable(collection, STATE_NAME, new_state)
            return y

    return FuncnetModule


def _state_shapes(net: Layer, x: Any) -> Any:
    """The state ``net.init`` makes for inputs like ``x``, as ShapeDtypeStructs (no compute)."""
    spec = jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), x)
    return jax.eval_shape(lambda key: net.init(key, spec)[2], jax.random.key(0))
