"""Initialisation as one compiled program, shared by every model of the same structure.

A model's initialisation is jitted as one program whose executable comes
from the shared program cache (:mod:`programs`, keyed by the lowered
program's text), so a rebuilt model with the same structure costs one trace
and no compile. Initializers that need concrete values (Python control flow
on them) run eagerly. The
measurements and reasons are in ``docs/design.md``, section "Training".
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import jax

from funcnet._src.core import Layer
from funcnet._src.training.model_cache import ModelCache
from funcnet._src.training.programs import shared_jit

# model -> {(what else build closes over, the key's dtype and shape) -> (program, output tree),
# or None when build needs concrete values}; dropped with the model.
_TRACED: ModelCache[tuple[Callable, Any] | None] = ModelCache()


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


def _trace(build: Callable[[jax.Array], Any], key: jax.Array) -> tuple[Callable, Any] | None:
    """``build`` as a shared compiled program and its output tree; None if it needs concrete values."""
    try:
        closed, shapes = jax.make_jaxpr(build, return_shape=True)(key)
    except Exception as error:
        if not _needs_concrete_values(error):
            raise
        return None
    # Captured arrays become constants of the lowered program, whose text
    # keys the shared cache: models that differ only in them never share.
    return shared_jit(_jaxpr_as_fun(closed)), jax.tree.structure(shapes)


def run_compiled(
    build: Callable[[jax.Array], Any],
    key: jax.Array,
    net: Layer | None = None,
    identity: Hashable = None,
) -> Any:
    """``build(key)``, computed by one compiled program shared across equal structures.

    ``net`` and ``identity`` (hashable objects such as the optimizer and the
    input shape) determine ``build``: given both, the trace is skipped when
    they come again, for as long as ``net`` is alive; otherwise ``build`` is
    always traced. Initializers that need concrete values (Python control
    flow on them) run eagerly. Inside a transformation (``vmap``, ``jit``)
    ``build`` is simply traced into it. Errors raised while tracing ``build``
    (bad shapes) surface as they would eagerly.
    """
    if isinstance(key, jax.core.Tracer):
        return build(key)
    try:
        name = None if net is None or identity is None else (identity, str(key.dtype), key.shape)
        hash(name)
    except TypeError:  # an unhashable part (a list as input shape)
        name = None
    if name is None or net is None:
        known = _trace(build, key)
    else:
        # build closes over net; _trace's result does not, so the cache keeps no model alive.
        known = _TRACED.get(net, name, lambda _weak_net: _trace(build, key))
    if known is None:
        return build(key)
    program, tree = known
    return jax.tree.unflatten(tree, program(key))
