"""A funcnet model as an Equinox module, stateful the way Equinox's own layers are.

The module's fields are the params tree (array leaves, so ``eqx.partition``,
``eqx.filter_grad`` and optax see them) and an ``eqx.nn.StateIndex`` for the
state tree; the state itself travels in an ``eqx.nn.State``, as for Equinox's
``BatchNorm``: ``y, state = model(x, state, key=key)``. The train/eval switch
is Equinox's ``inference`` (a field that ``eqx.nn.inference_mode`` flips, and
a call argument). Equinox is imported only when a module is made.
"""

from __future__ import annotations

import functools
from typing import Any

from funcnet._src.core import InputShape, KeyLike, Layer, as_key
from funcnet._src.interop.as_function import apply_net, check_net

_EQUINOX_KEY_FIX = "pass one as for Equinox's Dropout: model(x, state, key=jax.random.key(0))"


def to_equinox(net: Layer, input_shape: InputShape, key: KeyLike) -> tuple[Any, Any]:
    """``net`` as an Equinox module with its params, and its initial ``eqx.nn.State``.

    Like ``eqx.nn.make_with_state``, returns ``(model, state)``; every call
    threads the state, ``y, state = model(x, state, key=None, inference=None)``
    (a stateless model's state is empty and comes back unchanged). The params
    are the module's array leaves (``model.params``, the tree ``net.init``
    makes). The model runs in training mode (batch statistics, dropout) unless
    ``inference`` is true, in the call or on the module:
    ``eqx.nn.inference_mode(model)`` switches it to inference as it does
    Equinox's ``Dropout`` and ``BatchNorm``. ``x`` is the whole batch, as
    ``net.apply`` takes it: do not ``jax.vmap`` the model over examples.

    Args:
        net: the model.
        input_shape: its input shape, batch included (``(None, 3)``).
        key: a key or integer seed for ``net.init``.

    Returns:
        ``(model, state)``: an ``eqx.Module`` and an ``eqx.nn.State``.

    Example:
        >>> import jax, jax.numpy as jnp, equinox as eqx, funcnet as fn
        >>> net = fn.serial(fn.Dense(4), fn.BatchNorm(), fn.Dense(1))
        >>> model, state = fn.to_equinox(net, (None, 3), key=0)
        >>> y, state = model(jnp.ones((2, 3)), state)  # training mode: statistics update
        >>> y, _ = eqx.nn.inference_mode(model)(jnp.ones((2, 3)), state)
        >>> y.shape
        (2, 1)
    """
    check_net(net, "to_equinox")
    init_key = as_key("to_equinox", "key", key)
    _, params, state = net.init(init_key, input_shape)
    import equinox as eqx

    model = _module_class()(net, params, state)
    state_holder = eqx.nn.State(model)
    return eqx.nn.delete_init_state(model), state_holder


@functools.cache
def _module_class() -> type:
    """The Equinox module class, defined on first use so that Equinox is imported only then."""
    import equinox as eqx

    class FuncnetModule(eqx.Module):
        """A funcnet model inside Equinox (made by ``funcnet.to_equinox``)."""

        params: Any
        state_index: eqx.nn.StateIndex
        net: Layer = eqx.field(static=True)
        inference: bool = False

        def __init__(self, net: Layer, params: Any, state: Any, inference: bool = False):
            self.net = net
            self.params = params
            self.state_index = eqx.nn.StateIndex(state)
            self.inference = inference

        def __call__(
            self,
            x: Any,
            state: eqx.nn.State | None = None,
            *,
            key: KeyLike | None = None,
            inference: bool | None = None,
        ) -> tuple[Any, eqx.nn.State]:
            if not isinstance(state, eqx.nn.State):
                raise TypeError(
                    f"to_equinox: the model is called as y, state = model(x, state, key=...), "
                    f"with the eqx.nn.State that to_equinox returned; got "
                    f"{'no state' if state is None else type(state).__name__ + ' as state'}. Write model, state = fn.to_equinox(net, input_shape, key) and "
                    "thread the state through every call."
                )
            train = not (self.inference if inference is None else inference)
            call_key = None if key is None else as_key(self.net.name, "key", key)
            y, new_state = apply_net(
                self.net,
                self.params,
                state.get(self.state_index),
                x,
                key=call_key,
                train=train,
                fix=_EQUINOX_KEY_FIX,
            )
            return y, state.set(self.state_index, new_state)

    return FuncnetModule
