"""A Haiku model as a funcnet layer: ``from_haiku``.

Haiku turns a function that builds modules into a pair of pure functions,
``init(rng, x) -> (params, state)`` and ``apply(params, state, rng, x) -> (y,
state)`` (``hk.transform_with_state``): already funcnet's shape. funcnet's
``params`` and ``state`` are Haiku's own (dicts of dicts, by module name), its
``key`` is Haiku's ``rng``, and ``train`` goes to the function's ``is_training``
argument.
"""

from __future__ import annotations

from typing import Any

import jax

from funcnet._src.core import InputShape, Layer, Params, State, infer_output_shape
from funcnet._src.interop._common import (
    example_input,
    find_train_arg,
    foreign_code,
    library_of,
    no_key_error,
    train_kwargs,
    wrong_module,
    zeros,
)

_EXPECTED = (
    "a function that builds Haiku modules, e.g. lambda x: hk.nets.MLP([4])(x), or what "
    "hk.transform / hk.transform_with_state return"
)


def from_haiku(
    fn_or_transformed: Any, *, train_arg: str | None = "auto", name: str = "haiku"
) -> Layer:
    """A funcnet layer from a Haiku function, or from ``hk.transform(f)`` / ``hk.transform_with_state(f)``.

    What crosses the boundary:

    * ``params``: Haiku's params, ``{"module_name": {"w": ..., "b": ...}}``;
    * ``state``: Haiku's state (``hk.get_state``: BatchNorm's moving averages),
      the same way; ``apply`` returns it updated;
    * ``key``: Haiku's ``rng`` (what ``hk.next_rng_key()`` draws from), for
      ``init`` and ``apply``;
    * ``train``: the function's keyword ``train_arg``; ``"auto"`` finds
      ``is_training``, ``training`` or ``train`` in the signature of a plain
      function (a transformed pair hides it: name it, e.g.
      ``train_arg="is_training"``).

    ``init`` runs Haiku's ``init`` (in training mode) on a batch of one and infers the output shape
    with ``jax.eval_shape``.

    Args:
        fn_or_transformed: a function ``f(x, ...)`` that creates and calls Haiku
            modules (funcnet transforms it with ``hk.transform_with_state``), or an
            ``hk.Transformed`` / ``hk.TransformedWithState``.
        train_arg: the keyword that carries the train flag, ``"auto"``, or ``None``.
        name: the layer's name in summaries and errors.

    Returns:
        A :class:`funcnet.Layer` mapping ``[batch, ...]`` as the Haiku function does.

    Example:
        >>> import jax, funcnet as fn, haiku as hk
        >>> net = fn.serial(fn.from_haiku(lambda x: hk.Linear(4)(x)), fn.Dense(1))
        >>> out_shape, params, state = net.init(jax.random.key(0), (None, 3))
        >>> out_shape, params[0]["linear"]["w"].shape
        ((None, 1), (3, 4))
    """
    import haiku as hk

    function: Any = None
    if isinstance(fn_or_transformed, hk.TransformedWithState):
        transformed = fn_or_transformed
    elif isinstance(fn_or_transformed, hk.Transformed):
        transformed = hk.with_empty_state(fn_or_transformed)
    elif isinstance(fn_or_transformed, hk.Module) or (
        isinstance(fn_or_transformed, type) and issubclass(fn_or_transformed, hk.Module)
    ):
        raise TypeError(
            f"from_haiku: fn_or_transformed must be {_EXPECTED}; got the Haiku module "
            f"{getattr(fn_or_transformed, '__name__', type(fn_or_transformed).__name__)}, but Haiku "
            "modules exist only inside a transformed function. Pass a function that builds "
            "and calls it instead."
        )
    elif callable(fn_or_transformed) and library_of(fn_or_transformed) is None:
        function = fn_or_transformed
        transformed = hk.transform_with_state(function)
    else:
        raise wrong_module("from_haiku", "fn_or_transformed", _EXPECTED, fn_or_transformed)
    if function is None and train_arg == "auto":
        flag = None  # the transformed pair's signature is (params, state, rng, *args)
    else:
        flag = find_train_arg("from_haiku", function, train_arg)

    def call(params: Params, state: State, x: Any, key: jax.Array | None, train: bool) -> Any:
        with foreign_code():
            return transformed.apply(params, state, key, x, **train_kwargs(flag, train))

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Any, Params, State]:
        # In training mode, as Haiku's own examples do: some modules create their
        # state only there (BatchNorm's moving averages).
        with foreign_code():
            params, state = transformed.init(
                key, zeros(example_input(input_shape)), **train_kwargs(flag, True)
            )
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
        try:
            return call(params, state, x, key, train)
        except ValueError as error:
            if key is None and "rng" in str(error).lower():
                raise no_key_error(name, "Haiku function") from error
            raise

    return Layer(init, apply, name)
