"""A Flax NNX module as a funcnet layer: ``from_nnx``.

An NNX module is a Python object that holds its variables. ``nnx.split``
separates it into a static graph definition and states by variable type;
funcnet keeps the ``nnx.Param`` values as ``params``, the other variables
(``nnx.BatchStat``, counters, your own ``nnx.Variable`` types) as ``state``, both
as flat ``{"path.to.variable": array}`` dicts, and rebuilds the module with
``nnx.merge`` inside ``apply``. The rng streams a module keeps (``nnx.Dropout``'s
``rngs``) are not carried between calls: ``apply`` seeds them from its ``key``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import jax

from funcnet._src.core import InputShape, Layer, Params, State, infer_output_shape
from funcnet._src.interop._common import (
    belongs_elsewhere,
    foreign_code,
    from_named_leaves,
    named_leaves,
    no_key_error,
    wrong_module,
)


def _to_dict(state: Any) -> dict[str, Any]:
    return named_leaves(state, skip_attribute="value")  # a Variable's box is not a step


def _from_dict(template: Any, named: dict[str, Any]) -> Any:
    return from_named_leaves(template, named, skip_attribute="value")


def _split(module: Any) -> tuple[Any, Any, Any, Any]:
    """``(graphdef, params, rng streams, the other variables)`` of an NNX module."""
    from flax import nnx

    return nnx.split(module, nnx.Param, nnx.RngState, ...)  # type: ignore[return-value]


def from_nnx(module_or_factory: Any, *, name: str | None = None) -> Layer:
    """A funcnet layer from a Flax NNX module, or from a function ``rngs -> module``.

    What crosses the boundary:

    * ``params``: the module's ``nnx.Param`` values, as ``{"path.to.param": array}``;
    * ``state``: its other variables (``nnx.BatchStat``, your own
      ``nnx.Variable`` types), the same way; ``apply`` returns them updated;
    * ``key``: the module's rng streams (``nnx.Dropout(rate, rngs=rngs)``) are
      seeded from ``apply``'s ``key`` at every call (a module that keeps a
      stream needs a key when ``train=True``); ``init``'s key makes
      ``nnx.Rngs(key)`` for a factory;
    * ``train``: ``module.train()`` when ``train=True``, ``module.eval()``
      otherwise (``deterministic`` and ``use_running_average`` switched).

    Given a module, ``init`` returns that module's current weights (its key is
    not used): the module keeps what it learned. Given a factory, ``init`` builds
    a fresh module from its key. The output shape comes from ``jax.eval_shape``.

    Args:
        module_or_factory: an ``nnx.Module`` instance, or a function
            ``factory(rngs) -> nnx.Module`` (e.g. ``lambda rngs: nnx.Linear(3, 4, rngs=rngs)``).
        name: the layer's name in summaries and errors (default: the module's class).

    Returns:
        A :class:`funcnet.Layer` mapping ``[batch, ...]`` as the module does.

    Example:
        >>> import jax, funcnet as fn
        >>> from flax import nnx
        >>> net = fn.serial(fn.from_nnx(lambda rngs: nnx.Linear(3, 4, rngs=rngs)), fn.Dense(1))
        >>> out_shape, params, state = net.init(jax.random.key(0), (None, 3))
        >>> out_shape, sorted(params[0])
        ((None, 1), ['bias', 'kernel'])
    """
    from flax import nnx

    expected = "a Flax NNX module (flax.nnx.Module) or a function rngs -> module"
    if belongs_elsewhere(module_or_factory, "from_nnx"):  # callable, but not a factory
        raise wrong_module("from_nnx", "module_or_factory", expected, module_or_factory)
    if isinstance(module_or_factory, nnx.Module):
        module = module_or_factory
        factory: Callable[[Any], Any] | None = None
        template = module
    elif callable(module_or_factory) and (
        not isinstance(module_or_factory, type) or issubclass(module_or_factory, nnx.Module)
    ):  # a class whose __init__ takes rngs is a factory too
        factory = cast(Callable[[Any], Any], module_or_factory)
        module = None
        with foreign_code():
            template = nnx.eval_shape(lambda: factory(nnx.Rngs(0)))
        if not isinstance(template, nnx.Module):
            raise wrong_module("from_nnx", "the factory's result", "a Flax NNX module", template)
    else:
        raise wrong_module("from_nnx", "module_or_factory", expected, module_or_factory)

    graphdef, params_template, rng_template, state_template = _split(template)
    rng_names = list(_to_dict(rng_template))
    layer_name = name or type(template).__name__

    def rng_values(key: jax.Array | None) -> dict[str, Any]:
        """Fresh values for the module's rng streams: keys from ``key``, counts at 0."""
        keys = jax.random.split(jax.random.key(0) if key is None else key, max(len(rng_names), 1))
        return {
            name: keys[i]
            if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)
            else jax.numpy.zeros(leaf.shape, leaf.dtype)
            for i, (name, leaf) in enumerate(_to_dict(rng_template).items())
        }

    def call(params: Params, state: State, x: Any, key: jax.Array | None, train: bool) -> Any:
        merged = nnx.merge(
            graphdef,
            _from_dict(params_template, params),
            _from_dict(rng_template, rng_values(key)),
            _from_dict(state_template, state),
        )
        if train:
            merged.train()
        else:
            merged.eval()
        with foreign_code():
            y = merged(x)
        _, _, _, new_state = _split(merged)
        return y, _to_dict(new_state)

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Any, Params, State]:
        built = module
        if factory is not None:
            with foreign_code():
                built = factory(nnx.Rngs(key))
        _, params, _, state = _split(built)
        params, state = _to_dict(params), _to_dict(state)
        output_shape = infer_output_shape(
            lambda x: call(params, state, x, None, False)[0], input_shape
        )
        return output_shape, params, state

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[Any, State]:
        if train and key is None and rng_names:
            raise no_key_error(layer_name, "NNX module")
        return call(params, state, x, key, train)

    return Layer(init, apply, layer_name)
