"""A funcnet model as a Keras 3 layer: ``keras.layers.JaxLayer`` around ``apply``.

Keras's ``JaxLayer`` wraps exactly funcnet's shape of function,
``call_fn(params, state, rng, inputs, training) -> (outputs, new_state)``: it
holds ``params`` as trainable Keras variables and ``state`` as non-trainable
ones, assigns the returned state back after each call (so batch-norm
statistics update under ``model.fit``), and draws a fresh ``rng`` from its own
seed generator on each training call (and none in inference). This module only
spells funcnet's ``apply`` and ``init`` in those terms. Keras must run on its
JAX backend (``KERAS_BACKEND=jax`` before Keras is first imported).
"""

from __future__ import annotations

from typing import Any

import jax

from funcnet._src.core import InputShape, Layer, Params, State, is_shape
from funcnet._src.interop.as_function import apply_net, check_net, check_trees

_KERAS_KEY_FIX = (
    "Keras gives a key only when training, so call the layer with training=True "
    "(model.fit does), or leave the model without dropout for inference-mode calls"
)


def to_keras(
    net: Layer,
    input_shape: InputShape | None = None,
    params: Params | None = None,
    state: State | None = None,
    *,
    seed: int | None = None,
    name: str | None = None,
) -> Any:
    """``net`` as a Keras 3 layer (``keras.layers.JaxLayer``), trainable by ``model.fit``.

    The layer's trainable weights are ``params`` and its non-trainable weights
    ``state`` (e.g. batch-norm statistics, updated by each training call), in
    the order of ``jax.tree.leaves``. Keras's ``training`` flag is funcnet's
    ``train``; in training Keras passes a fresh key for dropout each call.

    Args:
        net: the model.
        input_shape: funcnet's input shape, batch included (``(None, 3)``), to
            build new weights; not needed when ``params`` and ``state`` are given.
        params: trained params to start from (e.g. ``fn.fit``'s, copied); ``None``
            initialises new ones with ``net.init`` and a key from Keras's seed
            (``keras.utils.set_random_seed`` makes it reproducible).
        state: the state that goes with ``params`` (``{}`` for a stateless model).
        seed: seeds the layer's own generator of training keys (dropout).
        name: the Keras layer's name.

    Returns:
        A ``keras.layers.JaxLayer``: ``layer(x, training=False)`` maps
        ``[batch, ...]`` to the model's output.

    Raises:
        ImportError: Keras 3 is not installed.
        ValueError: Keras runs on another backend than JAX.
        TypeError: neither ``input_shape`` nor ``params`` and ``state`` were given.

    Example:
        >>> import os; _ = os.environ.setdefault("KERAS_BACKEND", "jax")  # before Keras' import
        >>> import keras, numpy as np, funcnet as fn
        >>> layer = fn.to_keras(fn.serial(fn.Dense(8), fn.Relu(), fn.Dense(1)), (None, 3))
        >>> model = keras.Sequential([keras.Input((3,)), layer])
        >>> model(np.ones((2, 3), np.float32)).shape
        (2, 1)
        >>> [w.shape for w in layer.trainable_weights]
        [(8,), (3, 8), (1,), (8, 1)]
    """
    check_net(net, "to_keras")
    if input_shape is not None and not _is_shape_tree(input_shape):
        raise TypeError(
            f"to_keras: input_shape must be funcnet's input shape with the batch dimension, "
            f"e.g. (None, 3), got {input_shape!r:.80}. Pass x.shape with None for the batch."
        )
    if (params is None) != (state is None):
        given, missing = ("params", "state") if state is None else ("state", "params")
        raise TypeError(
            f"to_keras: {given} was given without {missing}; pass both (the pair net.init or "
            f"fn.fit returned, state={{}} for a stateless model), or neither to initialise new ones."
        )
    if params is None and input_shape is None:
        raise TypeError(
            "to_keras: give input_shape (batch included, e.g. (None, 3)) to build new "
            "weights, or the trained params and state to start from."
        )
    if params is not None:
        check_trees("to_keras", params, state)
        # Keras donates its variables' buffers to its compiled steps: copies
        # keep the caller's arrays alive.
        params, state = jax.tree.map(lambda a: jax.numpy.array(a, copy=True), (params, state))
    keras = _keras()

    def call_fn(params, state, rng, inputs, training):
        key = None if rng is None else _as_typed_key(rng)
        return apply_net(
            net, params, state, inputs, key=key, train=bool(training), fix=_KERAS_KEY_FIX
        )

    if params is None:
        # Built now, with Keras's seed (keras.utils.set_random_seed), so the
        # model's summary shows the weights before fit. (Keras's own lazy
        # building of a JaxLayer needs TensorFlow installed.)
        key = _as_typed_key(keras.random.SeedGenerator(seed).next())
        # The layer's own generator starts from the same seed: fold, so the
        # init key is not the first dropout key.
        _, params, state = net.init(jax.random.fold_in(key, 1), input_shape)
    return keras.layers.JaxLayer(call_fn, params=params, state=state, seed=seed, name=name)


def _keras() -> Any:
    try:
        import keras
    except ImportError as error:
        # Keras installed but on its default TensorFlow backend fails here too.
        raise ImportError(
            f"to_keras could not import Keras ({error}). It needs Keras 3 on its JAX backend: "
            "pip install 'keras>=3' (or pip install -e '.[interop]'), and set the environment "
            "variable KERAS_BACKEND=jax before Keras is first imported."
        ) from error
    backend = keras.backend.backend()
    if backend != "jax":
        raise ValueError(
            f"to_keras: Keras runs on its {backend!r} backend; funcnet models run in Keras on "
            "the JAX backend only. Set the environment variable KERAS_BACKEND=jax before Keras "
            "is first imported (e.g. os.environ['KERAS_BACKEND'] = 'jax' at the top of the script)."
        )
    return keras


def _as_typed_key(rng: Any) -> jax.Array:
    """Keras's seeds are raw ``uint32[2]`` key data; funcnet's layers take typed keys."""
    if jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key):
        return rng
    return jax.random.wrap_key_data(jax.numpy.asarray(rng, jax.numpy.uint32))


def _is_shape_tree(spec: Any) -> bool:
    if is_shape(spec):
        return True
    return isinstance(spec, (tuple, list)) and len(spec) > 0 and all(map(_is_shape_tree, spec))
