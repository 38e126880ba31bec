"""A funcnet model as a plain JAX function, and what every "out" converter shares.

``as_function(net, params, state)`` closes over the params, state, key and
train flag and returns ``f(x) -> y``; ``as_params_function(net, state)``
returns ``f(params, x) -> y`` for ``jax.grad`` over the params. Both are pure,
so they compose with every JAX transformation (``vmap``, ``grad``, ``jacrev``,
``hessian``, ``lax.scan``, ``jit``, ``jax.export``) and need no funcnet code
from their caller.

Nothing is hidden: what ``apply`` returns as the new state is dropped unless
``return_state=True`` asks for it (then ``f`` returns ``(y, new_state)``), and
the key given here is the same on every call unless the call passes its own.

The helpers at the bottom (:func:`check_net`, :func:`apply_net`) are the
pieces the converters to Keras, Flax, Equinox and Haiku share.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from funcnet._src.core import KeyLike, Layer, LayerError, Params, State, as_key


def as_function(
    net: Layer,
    params: Params,
    state: State,
    *,
    train: bool = False,
    key: KeyLike | None = None,
    return_state: bool = False,
) -> Callable[..., Any]:
    """``net`` with its params and state bound: a pure function ``f(x) -> y``.

    ``f`` is an ordinary JAX function of ``x``: vmap it, differentiate it
    (``jax.grad``, ``jax.jacrev``, ``jax.hessian`` with respect to the input),
    scan it, jit it or ``jax.export`` it; params and state are constants
    inside it.

    What happens to state and keys:

    * ``train=False`` (the default) runs inference: batch norm uses its running
      statistics and dropout is off, so no key is needed.
    * ``train=True`` runs the training forward pass. Batch norm normalises with
      the batch's own statistics; the updated running statistics are dropped
      (``state`` stays as given) unless ``return_state=True``, when ``f``
      returns ``(y, new_state)``.
    * ``key`` (a key or integer seed) drives dropout when ``train=True``. The
      same key is used on every call, so the same mask for the same shape;
      ``f(x, key=k)`` uses ``k`` for that call instead (e.g. a fresh key per
      step of a ``lax.scan``). Under ``jax.vmap`` one bound key gives every
      example the same mask; map over keys (``jax.vmap(f)(xs, key=keys)``)
      for independent masks.

    Args:
        net: the model.
        params: the params ``net.init`` returned.
        state: the state ``net.init`` returned (``{}`` for a stateless model).
        train: run the training forward pass (batch statistics, dropout).
        key: the key for dropout when ``train=True``.
        return_state: return ``(y, new_state)`` instead of ``y``.

    Returns:
        ``f(x, *, key=None)``: ``x`` is ``[batch, ...]`` as ``net.apply``
        takes it; returns ``y`` (or ``(y, new_state)``).

    Example:
        >>> import jax, jax.numpy as jnp, funcnet as fn
        >>> net = fn.serial(fn.Dense(3), fn.Tanh(), fn.Dense(1))
        >>> _, params, state = net.init(jax.random.key(0), (None, 2))
        >>> f = fn.as_function(net, params, state)
        >>> f(jnp.ones((4, 2))).shape
        (4, 1)
        >>> jax.jacrev(lambda x: f(x[None])[0, 0])(jnp.ones(2)).shape  # dy/dx
        (2,)
    """
    check_net(net, "as_function")
    check_trees("as_function", params, state)
    bound_key = _check_key("as_function", key)

    def f(x: Any, *, key: KeyLike | None = None) -> Any:
        call_key = bound_key if key is None else as_key(net.name, "f's key", key)
        y, new_state = apply_net(
            net, params, state, x, key=call_key, train=train, fix=_FUNCTION_KEY_FIX
        )
        return (y, new_state) if return_state else y

    return f


def as_params_function(
    net: Layer,
    state: State,
    *,
    train: bool = False,
    key: KeyLike | None = None,
    return_state: bool = False,
) -> Callable[..., Any]:
    """``net`` with its state bound: a pure function ``f(params, x) -> y`` for ``jax.grad``.

    The params-first form of :func:`as_function` (the same rules for state and
    keys): differentiate any JAX loss with respect to the params, e.g.
    ``jax.grad(lambda p: optax.l2_loss(f(p, x), y).mean())(params)``.

    Args:
        net: the model.
        state: the state ``net.init`` returned (``{}`` for a stateless model).
        train: run the training forward pass (batch statistics, dropout).
        key: the key for dropout when ``train=True``; ``f(params, x, key=k)``
            overrides it for one call.
        return_state: return ``(y, new_state)`` instead of ``y`` (use
            ``jax.grad(..., has_aux=True)`` to keep the new state).

    Returns:
        ``f(params, x, *, key=None)`` returning ``y`` (or ``(y, new_state)``).

    Example:
        >>> import jax, jax.numpy as jnp, funcnet as fn
        >>> net = fn.Dense(1)
        >>> _, params, state = net.init(jax.random.key(0), (None, 2))
        >>> f = fn.as_params_function(net, state)
        >>> grads = jax.grad(lambda p: f(p, jnp.ones((4, 2))).sum())(params)
        >>> grads["w"].tolist()
        [[4.0], [4.0]]
    """
    check_net(net, "as_params_function")
    check_trees("as_params_function", None, state)
    bound_key = _check_key("as_params_function", key)

    def f(params: Params, x: Any, *, key: KeyLike | None = None) -> Any:
        call_key = bound_key if key is None else as_key(net.name, "f's key", key)
        y, new_state = apply_net(
            net, params, state, x, key=call_key, train=train, fix=_FUNCTION_KEY_FIX
        )
        return (y, new_state) if return_state else y

    return f


# --------------------------------------------------------------------------
# What the converters share


_FUNCTION_KEY_FIX = (
    "give the function a key: as_function(net, params, state, train=True, key=jax.random.key(0)), "
    "or per call: f(x, key=k)"
)


def check_net(net: Any, where: str) -> Layer:
    """``net`` if it is a funcnet :class:`Layer`, else a TypeError saying what to pass."""
    if isinstance(net, Layer):
        return net
    if callable(net) and not isinstance(net, tuple):
        name = getattr(net, "__name__", type(net).__name__)
        kind = "class" if isinstance(net, type) else "function"
        raise TypeError(
            f"{where}: net must be a funcnet Layer, got the {kind} {name} itself. "
            f"Layer constructors are calls: pass {name}(...) (e.g. fn.Dense(4)), or a model "
            "built with fn.serial(...)."
        )
    raise TypeError(
        f"{where}: net must be a funcnet Layer (e.g. fn.Dense(4) or fn.serial(...)), "
        f"got {type(net).__name__}: {net!r:.80}."
    )


def check_trees(where: str, params: Params, state: State) -> None:
    """Raises when params or state is not a pytree of arrays (a forgotten argument, a swap)."""
    for what, tree in (("params", params), ("state", state)):
        if tree is None and what == "params":
            continue
        if tree is None or isinstance(tree, (Layer, str)) or callable(tree):
            got = "None" if tree is None else f"{type(tree).__name__} {tree!r:.60}"
            raise TypeError(
                f"{where}: {what} must be the {what} that net.init returned "
                f"({{}} for a model without {what}), got {got}. "
                f"Call _, params, state = net.init(key, input_shape) and pass them."
            )


def _check_key(where: str, key: KeyLike | None) -> jax.Array | None:
    return None if key is None else as_key(where, "key", key)


def apply_net(
    net: Layer,
    params: Params,
    state: State,
    x: Any,
    *,
    key: jax.Array | None,
    train: bool,
    fix: str,
) -> tuple[Any, State]:
    """``net.apply``, with a stochastic layer's missing key explained in the caller's terms.

    ``fix`` says how to give a key in the calling library (a Flax rng stream,
    Haiku's rng argument...); the layer's own message names ``net.apply``,
    which the user of a converter never calls.
    """
    try:
        return net.apply(params, state, x, key=key, train=train)
    except LayerError as error:
        if key is None and train and "needs a key" in str(error):
            raise type(error)(
                f"{error.message.split(':')[0]}, and none was given: {fix}.",
                error.path,
            ) from None
        raise
