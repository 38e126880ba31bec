"""A Flax Linen module as a funcnet layer: ``from_flax``.

Linen keeps a module's variables in collections: ``params`` is trained,
the others (``batch_stats``, ...) are updated by the forward pass. funcnet's
``params`` are the ``params`` collection, its ``state`` the dict of the other
collections; ``key`` feeds the named rng streams (``dropout``) and ``train``
the keyword the module's ``__call__`` uses for it (``train``,
``deterministic``, ...).
"""

from __future__ import annotations

from typing import Any

import jax

from funcnet._src.core import InputShape, Layer, Params, State, infer_output_shape
from funcnet._src.interop._common import (
    example_input,
    find_train_arg,
    foreign_code,
    keys_for,
    no_key_error,
    train_kwargs,
    wrong_module,
)


def from_flax(
    module: Any,
    *,
    train_arg: str | None = "auto",
    rng_names: tuple[str, ...] = ("dropout",),
    name: str | None = None,
) -> Layer:
    """A funcnet layer from a Flax Linen module (``flax.linen.Module``).

    What crosses the boundary:

    * ``params``: the module's ``params`` collection, as Flax makes it (nested dicts);
    * ``state``: every other collection ``init`` makes (``batch_stats``, ...), a dict
      by collection name; ``apply`` returns them updated (mutable) and hands the
      same structure back;
    * ``key``: the rng streams named in ``rng_names`` (``rngs={"dropout": key}``;
      several names get independent keys split from ``key``); ``init`` feeds the
      ``params`` stream and these from its key;
    * ``train``: passed as the keyword ``train_arg`` of the module's ``__call__``,
      inverted for names that mean evaluation (``deterministic``,
      ``use_running_average``, ``inference``).

    ``init`` builds the variables with ``module.lazy_init`` on a batch of one
    (no forward computation) and infers the output shape with ``jax.eval_shape``.

    Args:
        module: a Linen module, unbound (``nn.Dense(4)``, your ``MyModel()``).
        train_arg: the keyword of ``module.__call__`` that switches training on or off.
            ``"auto"`` (the default) looks for ``train``, ``training``,
            ``is_training``, ``deterministic``, ``inference``,
            ``use_running_average`` in that order; ``None`` passes no flag.
        rng_names: the rng streams fed from ``key`` in ``apply``.
        name: the layer's name in summaries and errors (default: the module's class).

    Returns:
        A :class:`funcnet.Layer` mapping ``[batch, ...]`` as the module does.

    Example:
        >>> import jax, funcnet as fn
        >>> import flax.linen as nn
        >>> net = fn.serial(fn.from_flax(nn.Dense(4)), fn.Relu(), fn.Dense(1))
        >>> out_shape, params, state = net.init(jax.random.key(0), (None, 3))
        >>> out_shape, params[0]["kernel"].shape
        ((None, 1), (3, 4))
    """
    import flax.linen as nn
    from flax.errors import InvalidRngError

    if not isinstance(module, nn.Module):
        raise wrong_module(
            "from_flax", "module", "a Flax Linen module (flax.linen.Module) instance", module
        )
    if isinstance(rng_names, str) or not all(isinstance(n, str) for n in rng_names):
        raise TypeError(
            f"from_flax: rng_names must be a tuple of rng stream names such as ('dropout',), "
            f"got {rng_names!r}."
        )
    rng_names = tuple(rng_names)
    flag = find_train_arg("from_flax", module.__call__, train_arg)
    layer_name = name or type(module).__name__

    def call(params: Params, state: State, x: Any, key: jax.Array | None, train: bool) -> Any:
        mutable = list(state) if state else False
        with foreign_code():
            return module.apply(
                {"params": params, **state},
                x,
                rngs=keys_for(key, rng_names),
                mutable=mutable,
                **train_kwargs(flag, train),  # type: ignore[arg-type]
            )

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Any, Params, State]:
        params_key, stream_key = jax.random.split(key)
        rngs = {"params": params_key, **keys_for(stream_key, rng_names)}
        with foreign_code():
            variables = dict(
                module.lazy_init(rngs, example_input(input_shape), **train_kwargs(flag, False))  # type: ignore[arg-type]
            )
        params = variables.pop("params", {})
        state = variables

        def forward(x: Any) -> Any:
            out = call(params, state, x, None, False)
            return out[0] if state else out

        return infer_output_shape(forward, input_shape), params, state

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[Any, State]:
        try:
            out = call(params, state, x, key, train)
        except InvalidRngError as error:
            raise no_key_error(layer_name, "Flax module") from error
        if not state:
            return out, state
        y, updated = out
        return y, {**state, **updated}

    return Layer(init, apply, layer_name)
