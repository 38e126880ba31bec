"""The Playground's network, loss and regularization, built from funcnet's parts.

As the Playground defines them (tensorflow/playground, ``src/playground.ts``
and ``src/nn.ts``): the chosen input features (:func:`PlaygroundFeatures`),
one :func:`funcnet.Dense` per hidden layer and a one-unit output, the squared
error ``0.5 * (output - target)^2`` (:func:`half_squared_error`), and SGD
followed by the Playground's L1/L2 step on the weights
(:func:`playground_regularization`). The details and why are in
``docs/playground.md``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from funcnet._src.combinators import serial
from funcnet._src.core import Layer, Params, check_float, check_input_shape, shape_error
from funcnet._src.layers.dense import Dense
from funcnet._src.losses import mse
from funcnet._src.playground.url import PlaygroundConfig, canonical_features

_FEATURE_FUNCTIONS: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "x": lambda x, y: x,
    "y": lambda x, y: y,
    "xSquared": lambda x, y: x * x,
    "ySquared": lambda x, y: y * y,
    "xTimesY": lambda x, y: x * y,
    "sinX": lambda x, y: jnp.sin(x),
    "sinY": lambda x, y: jnp.sin(y),
}


def PlaygroundFeatures(features: Any = ("x", "y"), name: str = "PlaygroundFeatures") -> Layer:
    """The Playground's input features of 2-D points, as a parameterless layer.

    Args:
        features: names among ``x, y, xSquared, ySquared, xTimesY, sinX, sinY``
            (a sequence or a comma-separated string); the output follows this
            canonical order whatever order they are given in.
        name: the name used in error paths.

    Returns:
        A layer mapping points ``[..., 2]`` to ``[..., len(features)]``.

    Example:
        >>> import jax.numpy as jnp
        >>> layer = PlaygroundFeatures(["xTimesY", "x"])
        >>> layer.apply({}, {}, jnp.array([[2.0, 3.0]]))[0].tolist()
        [[2.0, 6.0]]
    """
    names = canonical_features(features)
    functions = [_FEATURE_FUNCTIONS[n] for n in names]

    def init(key, input_shape):
        del key
        shape = check_input_shape(name, input_shape)
        if shape[-1] != 2:
            raise shape_error(name, f"expected points [..., 2] (x and y), got shape {shape}.")
        return (*shape[:-1], len(names)), {}, {}

    def apply(params, state, x, *, key=None, train=False):
        del params, key, train
        x = check_float(name, x)
        if x.ndim < 1 or x.shape[-1] != 2:
            raise shape_error(name, f"expected points [..., 2] (x and y), got shape {x.shape}.")
        px, py = x[..., 0], x[..., 1]
        return jnp.stack([f(px, py) for f in functions], axis=-1), state

    return Layer(init, apply, name)


def _uniform_half(key: jax.Array, shape: Any, dtype: Any = jnp.float32) -> jax.Array:
    # The Playground's `Math.random() - 0.5`.
    return jax.random.uniform(key, shape, dtype, -0.5, 0.5)


def playground_network(config: PlaygroundConfig) -> Layer:
    """The network the Playground builds for ``config``: features, hidden layers, output.

    The same architecture gives the same :class:`Layer` object, so runs that
    differ only in data, seed or optimizer share their compiled programs.

    Example:
        >>> import jax
        >>> net = playground_network(PlaygroundConfig())
        >>> _, params, _ = net.init(jax.random.key(0), (None, 2))
        >>> [p["w"].shape for p in params[1:]], [round(b, 4) for b in params[1]["b"].tolist()]
        ([(2, 4), (4, 2), (2, 1)], [0.1, 0.1, 0.1, 0.1])
    """
    output = "tanh" if config.problem == "classification" else "linear"
    return _network(
        config.features, config.network_shape, config.activation, output, config.init_zero
    )


@functools.lru_cache(maxsize=32)
def _network(
    features: tuple[str, ...],
    network_shape: tuple[int, ...],
    activation: str,
    output: str,
    init_zero: bool,
) -> Layer:
    return serial(
        *playground_layers(features, network_shape, activation, output, init_zero),
        name="playground",
    )


@functools.lru_cache(maxsize=32)
def playground_layers(
    features: tuple[str, ...],
    network_shape: tuple[int, ...],
    activation: str,
    output: str,
    init_zero: bool,
) -> tuple[Layer, ...]:
    """The layers of :func:`playground_network` in order: features, hidden layers, output.

    Applied one by one to the network's ``params[i]`` they give every node's
    value (the page draws a picture per node).
    """
    w_init = jax.nn.initializers.zeros if init_zero else _uniform_half
    b_init = jax.nn.initializers.zeros if init_zero else jax.nn.initializers.constant(0.1)
    layers = [PlaygroundFeatures(features, name="features")]
    for size in network_shape:
        layers.append(Dense(size, activation, w_init=w_init, b_init=b_init))
    layers.append(Dense(1, output, w_init=w_init, b_init=b_init, name="output"))
    return tuple(layers)


def half_squared_error(
    predictions: jax.typing.ArrayLike, targets: jax.typing.ArrayLike
) -> jax.Array:
    """The Playground's loss: ``mean(0.5 * (predictions - targets) ** 2)``.

    Example:
        >>> float(half_squared_error(jnp.array([1.0, -1.0]), jnp.array([1.0, 1.0])))
        1.0
    """
    return 0.5 * mse(predictions, targets)


class _Moved(NamedTuple):
    weight: jax.Array
    dead: jax.Array


class RegularizationState(NamedTuple):
    """Per weight, whether L1 has set it to 0 for good (the Playground's dead links)."""

    dead: Params


def _is_weight(path: tuple) -> bool:
    last = path[-1] if path else None
    return isinstance(last, jax.tree_util.DictKey) and last.key == "w"


def playground_regularization(
    regularization: str, rate: float, learning_rate: float
) -> optax.GradientTransformation:
    """The Playground's L1/L2 step on the weights, to chain after ``optax.sgd``.

    After the gradient step has moved a weight from ``w`` to ``w'``, the
    regularization moves it to ``w' - learning_rate * rate * d(w)``, where
    ``d(w) = w`` for L2 and ``sign(w)`` (0 at 0) for L1, as the Playground
    does. Under L1 a weight that this crosses over zero becomes 0 and stays
    frozen there. Only leaves named ``"w"`` (weights) are regularized.

    Args:
        regularization: ``"none"``, ``"L1"`` or ``"L2"``.
        rate: the regularization rate (>= 0).
        learning_rate: the SGD learning rate, which scales the step.

    Example:
        >>> import optax
        >>> opt = optax.chain(optax.sgd(0.1), playground_regularization("L2", 0.5, 0.1))
        >>> params = {"w": jnp.array([2.0]), "b": jnp.array([2.0])}
        >>> grads = {"w": jnp.array([1.0]), "b": jnp.array([1.0])}
        >>> updates, _ = opt.update(grads, opt.init(params), params)
        >>> round(float(optax.apply_updates(params, updates)["w"][0]), 4)  # 2 - 0.1 - 0.1 * 0.5 * 2
        1.8
    """
    if regularization == "none":
        return optax.identity()
    if regularization not in ("L1", "L2"):
        raise ValueError(f"unknown regularization {regularization!r}. Valid names: none, L1, L2.")
    l1 = regularization == "L1"
    step = learning_rate * rate

    def init(params):
        return RegularizationState(jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), bool), params))

    def update(updates, state, params=None):
        if params is None:
            raise ValueError(
                "playground_regularization needs the params: call update(g, s, params)."
            )

        def new_weight(path, u, w, dead):
            if not _is_weight(path):
                return w + u, dead
            moved = w + u
            # The site's L1 derivative: sign(w), and 0 at exactly 0 (nn.ts).
            derivative = jnp.sign(w) if l1 else w
            new = moved - step * derivative
            if l1:
                crossed = moved * new < 0
                new = jnp.where(crossed, jnp.zeros_like(new), new)
                # A dead weight is frozen at 0: it keeps its value, whatever the gradient.
                new = jnp.where(dead, w, new)
                dead = dead | crossed
            return new, dead

        moved = jax.tree_util.tree_map_with_path(
            lambda path, u, w, d: _Moved(*new_weight(path, u, w, d)), updates, params, state.dead
        )
        # A marker class, not "a tuple of two": params are tuples too (a network
        # without hidden layers has exactly two entries).
        is_moved = lambda t: isinstance(t, _Moved)  # noqa: E731
        new_params = jax.tree.map(lambda m: m.weight, moved, is_leaf=is_moved)
        dead = jax.tree.map(lambda m: m.dead, moved, is_leaf=is_moved)
        new_updates = jax.tree.map(lambda n, w: n - w, new_params, params)
        return new_updates, RegularizationState(dead)

    return optax.GradientTransformation(init, update)


def playground_optimizer(config: PlaygroundConfig) -> optax.GradientTransformation:
    """SGD at the config's learning rate, then its regularization (cached, like the network)."""
    return _optimizer(config.learning_rate, config.regularization, config.regularization_rate)


@functools.lru_cache(maxsize=32)
def _optimizer(
    learning_rate: float, regularization: str, rate: float
) -> optax.GradientTransformation:
    return optax.chain(
        optax.sgd(learning_rate), playground_regularization(regularization, rate, learning_rate)
    )
