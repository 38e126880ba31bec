"""A Keras 3 layer (or model) as a funcnet layer: ``from_keras_layer``.

Keras 3 on its JAX backend calls any layer statelessly:
``layer.stateless_call(trainable_values, non_trainable_values, x,
training=...)`` returns the output and the new non-trainable values. funcnet's
``params`` are the trainable values, its ``state`` the non-trainable ones (BatchNormalization's moving
statistics), each as ``{variable.path: array}``; the seed generators that
Keras's random layers keep (Dropout) are not state but fed from ``key`` at
every call.

This wraps one Keras object and calls it; :func:`funcnet.from_keras` instead
rebuilds a whole Keras model out of native funcnet layers.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from funcnet._src.core import InputShape, Layer, Params, State, infer_output_shape
from funcnet._src.interop._common import (
    example_input,
    foreign_code,
    no_key_error,
    parameter_names,
    wrong_module,
    zeros,
)

_SEED_STATE = "seed_generator_state"  # the variable a keras.random.SeedGenerator keeps


def _names(variables: list[Any]) -> list[str]:
    """Each variable's path, made unique with ``#i`` where two share one."""
    names: list[str] = []
    for i, variable in enumerate(variables):
        path = variable.path
        names.append(path if path not in names else f"{path}#{i}")
    return names


def from_keras_layer(layer: Any, *, name: str | None = None) -> Layer:
    """A funcnet layer from a Keras 3 layer or model, called with ``stateless_call``.

    Needs Keras 3 on the JAX backend (``KERAS_BACKEND=jax`` set before Keras is
    first imported). What crosses the boundary:

    * ``params``: the layer's ``trainable_variables`` values, as ``{variable.path: array}``;
    * ``state``: its other ``non_trainable_variables`` (BatchNormalization's
      ``moving_mean``/``moving_variance``), the same way; ``apply`` returns them updated;
    * ``key``: seeds the layer's ``keras.random.SeedGenerator``\\ s (Dropout,
      GaussianNoise) at every call; they are not kept in ``state``;
    * ``train``: Keras's ``training=`` argument (when the layer's ``call`` takes one).

    ``init`` builds the layer on a batch of one if it is not built yet, then
    returns its current weights: a trained Keras layer keeps what it learned
    (so ``init``'s key is not used). The output shape comes from ``jax.eval_shape``.

    Args:
        layer: a ``keras.Layer`` (``keras.layers.Dense(4)``) or a ``keras.Model``.
        name: the layer's name in summaries and errors (default: the Keras name).

    Returns:
        A :class:`funcnet.Layer` mapping ``[batch, ...]`` as the Keras layer does.

    Example:
        >>> import os; _ = os.environ.setdefault("KERAS_BACKEND", "jax")  # before Keras' import
        >>> import jax, keras, funcnet as fn
        >>> net = fn.serial(fn.from_keras_layer(keras.layers.Dense(4)), fn.Dense(1))
        >>> out_shape, params, state = net.init(jax.random.key(0), (None, 3))
        >>> out_shape, sorted(p.shape for p in params[0].values())  # kernel and bias
        ((None, 1), [(3, 4), (4,)])
    """
    try:
        import keras
    except ImportError as error:
        raise ImportError(
            "from_keras_layer needs Keras 3: pip install 'keras>=3' (or pip install -e "
            "'.[interop]'), with KERAS_BACKEND=jax set before Keras is first imported."
        ) from error
    if keras.backend.backend() != "jax":
        raise RuntimeError(
            f"from_keras_layer: Keras runs on its {keras.backend.backend()!r} backend; funcnet "
            "calls Keras layers on the JAX backend only. Set the environment variable "
            "KERAS_BACKEND=jax before Keras is first imported."
        )
    if not isinstance(layer, keras.Layer):
        raise wrong_module(
            "from_keras_layer", "layer", "a Keras 3 layer or model (keras.Layer)", layer
        )
    layer_name = name or layer.name
    takes_training = "training" in parameter_names(layer.call)

    def variables() -> tuple[list[str], list[str], list[int]]:
        """Names of the trainable and the non-trainable values; where the seeds sit among the latter."""
        non_trainable = _names(layer.non_trainable_variables)
        seeds = [i for i, v in enumerate(layer.non_trainable_variables) if v.name == _SEED_STATE]
        return _names(layer.trainable_variables), non_trainable, seeds

    def call(params: Params, state: State, x: Any, key: jax.Array | None, train: bool) -> Any:
        trainable, non_trainable, seeds = variables()
        seed_values = (
            [jnp.zeros((2,), jnp.uint32)] * len(seeds)
            if key is None
            else [jax.random.bits(k, (2,), jnp.uint32) for k in jax.random.split(key, len(seeds))]
        )
        seed_at = dict(zip(seeds, seed_values))
        values = [seed_at[i] if i in seed_at else state[n] for i, n in enumerate(non_trainable)]
        kwargs = {"training": train} if takes_training else {}
        with foreign_code():
            y, new_values = layer.stateless_call(
                [params[n] for n in trainable], values, x, **kwargs
            )
        new_state = {
            n: v for i, (n, v) in enumerate(zip(non_trainable, new_values)) if i not in seed_at
        }
        return y, new_state

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Any, Params, State]:
        del key  # Keras initialises its variables from its own seeds, when it builds them
        if not layer.built:
            # Concrete values even inside a traced init: Keras creates variables
            # holding real arrays.
            with jax.ensure_compile_time_eval(), foreign_code():
                layer(zeros(example_input(input_shape)))
        trainable, non_trainable, seeds = variables()
        params = {n: v.value for n, v in zip(trainable, layer.trainable_variables)}
        state = {
            n: v.value
            for i, (n, v) in enumerate(zip(non_trainable, layer.non_trainable_variables))
            if i not in seeds
        }
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
        if train and key is None and variables()[2]:
            raise no_key_error(layer_name, "Keras layer")
        return call(params, state, x, key, train)

    return Layer(init, apply, layer_name)
