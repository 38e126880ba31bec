"""Initialisation as one compiled program, shared by every model of the same structure.

A model's initialisation is jitted as one program whose executable comes
from the shared program cache (:mod:`programs`, keyed by the lowered
program's text), so a rebuilt model with the same structure costs one trace
and no compile. Initializers that need concrete values (Python control flow
on them) run eagerly. The
measurements and reasons are in ``docs/design.md``, section "Training".
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import jax

from funcnet._src.training.programs import shared_jit

_CAPACITY = 64
# owner (the model's init function, held weakly, so that this cache does not
# keep models alive) -> {(the other objects build closes over, the key's
# dtype and shape) -> (program, output tree)}
_BY_IDENTITY: weakref.WeakKeyDictionary[Any, OrderedDict[Any, tuple[Callable, Any]]] = (
    weakref.WeakKeyDictionary()
)


def _remember(cache: OrderedDict, name: Any, value: Any) -> Any:
    cache.pop(name, None)
    cache[name] = value  # most recently used last
    if len(cache) > _CAPACITY:
        cache.popitem(last=False)
    return value


def _jaxpr_as_fun(closed: Any) -> Callable:
    import jax.extend  # here: importing it at startup costs ~20 ms

    return jax.extend.core.jaxpr_as_fun(closed)


def _needs_concrete_values(error: BaseException | None) -> bool:
    """Whether ``error`` is, or was raised because of, JAX's ConcretizationTypeError.

    Inside a combinator it arrives as a LayerError naming the layer's path,
    chained to the original: so the chain is walked as a traceback shows it.
    """
    while error is not None:
        if isinstance(error, jax.errors.ConcretizationTypeError):
            return True
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    return False


def run_compiled(
    build: Callable[[jax.Array], Any], key: jax.Array, identity: Any = None, owner: Any = None
) -> Any:
    """``build(key)``, computed by one compiled program shared across equal structures.

    ``owner`` (the model's init function) and ``identity`` (hashable objects
    such as the optimizer and the input shape) determine ``build``: given
    both, the trace is skipped when they come again, for as long as ``owner``
    is alive; otherwise ``build`` is always traced. Inside a transformation (``vmap``, ``jit``)
    ``build`` is simply traced into it. Errors raised while tracing ``build``
    (bad shapes) surface as they would eagerly.
    """
    if isinstance(key, jax.core.Tracer):
        return build(key)
    known_for: OrderedDict[Any, tuple[Callable, Any]] | None = None
    name: Any = None
    known = None
    if owner is not None and identity is not None:
        try:
            name = (identity, str(key.dtype), key.shape)
            known_for = _BY_IDENTITY.setdefault(owner, OrderedDict())
            known = known_for.get(name)
        except TypeError:  # an unhashable part (a list as input shape), or no weakref
            known_for = known = None
    if known is None:
        try:
            closed, shapes = jax.make_jaxpr(build, return_shape=True)(key)
        except Exception as error:
            if not _needs_concrete_values(error):
                raise
            return build(key)  # an initializer that needs concrete values
        # Captured arrays become constants of the lowered program, whose text
        # keys the shared cache: models that differ only in them never share.
        known = (shared_jit(_jaxpr_as_fun(closed)), jax.tree.structure(shapes))
        if known_for is not None:
            _remember(known_for, name, known)
    program, tree = known
    return jax.tree.unflatten(tree, program(key))
