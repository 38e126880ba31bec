"""An Equinox module as a funcnet layer: ``from_equinox``.

An Equinox module is a pytree whose leaves are its arrays. funcnet splits it
with ``eqx.partition``: the floating-point arrays are ``params``, other arrays
(integer tables) and the ``eqx.nn.State`` of stateful layers (BatchNorm) are
``state``, all as ``{"path": array}`` dicts; everything else (the activation,
the field values) stays in the static part that ``eqx.combine`` joins back
inside ``apply``. Equinox modules usually see one example at a time: funcnet
``jax.vmap``\\ s them over the batch unless told the module is batched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcnet._src.core import InputShape, Layer, Params, State, infer_output_shape
from funcnet._src.interop._common import (
    belongs_elsewhere,
    foreign_code,
    from_named_leaves,
    named_leaves,
    no_key_error,
    parameter_names,
    wrong_module,
)

_EXPECTED = (
    "an Equinox module (equinox.Module), a (module, state) pair, or a function key -> module"
)


def _is_array(leaf: Any) -> bool:
    return isinstance(leaf, (jax.Array, np.ndarray, jax.ShapeDtypeStruct))


def _is_param(leaf: Any) -> bool:
    return _is_array(leaf) and jnp.issubdtype(leaf.dtype, jnp.inexact)


def _is_constant(leaf: Any) -> bool:
    return _is_array(leaf) and not jnp.issubdtype(leaf.dtype, jnp.inexact)


def from_equinox(
    module_or_factory: Any,
    *,
    batched: bool = False,
    axis_name: str = "batch",
    name: str | None = None,
) -> Layer:
    """A funcnet layer from an Equinox module, a ``(module, state)`` pair, or a factory.

    What crosses the boundary:

    * ``params``: the module's floating-point arrays, as ``{"path": array}``
      (``"layers.0.weight"``);
    * ``state``: ``{"state": ...}`` holds the ``eqx.nn.State`` of stateful layers
      (``eqx.nn.BatchNorm``) and ``{"constants": ...}`` the module's other arrays
      (integer tables), each only when there is some;
    * ``key``: passed as the module's ``key=`` keyword (split into one key per
      example when funcnet vmaps); ``init``'s key goes to a factory;
    * ``train``: ``eqx.nn.inference_mode(module, not train)``, which switches
      every ``inference`` field (Dropout, BatchNorm).

    Batching: most Equinox modules take one example (``eqx.nn.Linear`` wants
    ``[in_features]``), so by default (``batched=False``) funcnet applies
    ``jax.vmap(module, axis_name=axis_name)`` over the leading batch axis, as
    Equinox's own examples do; a stateful module's BatchNorm must then name
    the same axis (``eqx.nn.BatchNorm(n, axis_name="batch")``). Pass
    ``batched=True`` for a module whose ``__call__`` takes the whole batch.

    The module is called as ``module(x, key=key)``, or ``module(x, state,
    key=key)`` returning ``(y, state)`` when it has state; ``key`` is left out
    for a ``__call__`` without one. Given a module, ``init`` returns that
    module's weights (its key is not used); given a factory, ``init`` builds a
    fresh one from its key. The output shape comes from ``jax.eval_shape``.

    Args:
        module_or_factory: an ``eqx.Module``; a ``(module, state)`` pair as
            ``eqx.nn.make_with_state(...)`` returns; or a function ``factory(key)``
            returning either.
        batched: whether the module takes a whole batch (``True``) or one
            example that funcnet vmaps over the batch (``False``, the default).
        axis_name: the vmapped axis' name, for layers that reduce over the
            batch (BatchNorm).
        name: the layer's name in summaries and errors (default: the module's class).

    Returns:
        A :class:`funcnet.Layer` mapping ``[batch, ...]`` as the module maps each example.

    Example:
        >>> import jax, funcnet as fn, equinox as eqx
        >>> mlp = lambda key: eqx.nn.MLP(3, 2, width_size=8, depth=1, key=key)
        >>> net = fn.serial(fn.from_equinox(mlp), fn.Dense(1))
        >>> out_shape, params, state = net.init(jax.random.key(0), (None, 3))
        >>> out_shape, params[0]["layers.0.weight"].shape
        ((None, 1), (8, 3))
    """
    import equinox as eqx

    def split(built: Any) -> tuple[Any, Any]:
        """``(module, eqx.nn.State)`` from a module or a pair; the state made if absent."""
        if isinstance(built, tuple) and len(built) == 2 and isinstance(built[1], eqx.nn.State):
            model, state = built
        else:
            model, state = built, None
        if not isinstance(model, eqx.Module):
            raise wrong_module(
                "from_equinox",
                "module_or_factory",
                _EXPECTED,
                model,
            )
        if state is None:
            state = eqx.nn.State(model)
            model = eqx.nn.delete_init_state(model)
        return model, state

    if not isinstance(batched, bool):
        raise TypeError(
            f"from_equinox: batched must be True (the module takes a whole batch) or False "
            f"(funcnet vmaps it over the batch), got {batched!r}."
        )
    if belongs_elsewhere(module_or_factory, "from_equinox"):  # callable, not a factory
        raise wrong_module("from_equinox", "module_or_factory", _EXPECTED, module_or_factory)
    if isinstance(module_or_factory, eqx.Module) or (
        isinstance(module_or_factory, tuple) and len(module_or_factory) == 2
    ):
        factory: Callable[[jax.Array], Any] | None = None
        model, eqx_state = split(module_or_factory)
        template, state_template = model, eqx_state
    elif callable(module_or_factory) and not isinstance(module_or_factory, type):
        factory = module_or_factory
        with foreign_code():
            template, state_template = eqx.filter_eval_shape(
                lambda key: split(factory(key)), jax.random.key(0)
            )
    else:
        raise wrong_module(
            "from_equinox",
            "module_or_factory",
            _EXPECTED,
            module_or_factory,
        )

    params_template, rest = eqx.partition(template, _is_param)
    constants_template, static = eqx.partition(rest, _is_constant)
    stateful = bool(jax.tree.leaves(state_template))
    takes_key = "key" in parameter_names(type(template).__call__)
    stochastic = any(
        isinstance(m, eqx.nn.Dropout)
        for m in jax.tree.leaves(static, is_leaf=lambda m: isinstance(m, eqx.nn.Dropout))
    )
    layer_name = name or type(template).__name__

    def to_state(constants: Any, eqx_state: Any) -> dict[str, Any]:
        state: dict[str, Any] = {}
        if stateful:
            state["state"] = named_leaves(eqx_state)
        if jax.tree.leaves(constants_template):
            state["constants"] = named_leaves(constants)
        return state

    def call(params: Params, state: State, x: Any, key: jax.Array | None, train: bool) -> Any:
        model = eqx.combine(
            from_named_leaves(params_template, params),
            from_named_leaves(constants_template, state.get("constants", {})),
            static,
        )
        model = eqx.nn.inference_mode(model, value=not train)
        eqx_state = from_named_leaves(state_template, state["state"]) if stateful else None

        def one(x: Any, key: jax.Array | None) -> Any:
            kwargs = {"key": key} if takes_key else {}
            if stateful:
                return model(x, eqx_state, **kwargs)
            return model(x, **kwargs), eqx_state

        with foreign_code():
            if batched:
                y, new_state = one(x, key)
            else:
                batch = jax.tree.leaves(x)[0].shape[0]
                keys = None if key is None else jax.random.split(key, batch)
                y, new_state = jax.vmap(
                    one,
                    in_axes=(0, None if keys is None else 0),
                    out_axes=(0, None),
                    axis_name=axis_name,
                )(x, keys)
        return y, {**state, **({"state": named_leaves(new_state)} if stateful else {})}

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Any, Params, State]:
        if factory is None:
            built, eqx_state = template, state_template
        else:
            with foreign_code():
                built, eqx_state = split(factory(key))
        params_tree, rest = eqx.partition(built, _is_param)
        constants, _ = eqx.partition(rest, _is_constant)
        params, state = named_leaves(params_tree), to_state(constants, eqx_state)
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
        if train and key is None and stochastic:
            raise no_key_error(layer_name, "Equinox module")
        return call(params, state, x, key, train)

    return Layer(init, apply, layer_name)
