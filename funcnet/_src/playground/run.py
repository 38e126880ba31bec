"""The TensorFlow Playground in JAX: any Playground link as a scriptable experiment.

:func:`run_playground` trains the network that a :class:`PlaygroundConfig`
(or a Playground link, see :func:`parse_playground_url`) describes, with the
Playground's own semantics: its data (:mod:`funcnet.datasets`), its network,
loss and optimizer (``funcnet._src.playground.model``), one ``funcnet.fit``
call over the training points in the order of one shuffle, and after each
epoch the train and test losses that the Playground's panel shows. What is
reproduced exactly, and what differs from the browser: ``docs/playground.md``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from funcnet._src.core import Layer, Params
from funcnet._src.playground.datasets import playground_data, playground_split
from funcnet._src.playground.model import (
    PlaygroundFeatures,
    half_squared_error,
    playground_network,
    playground_optimizer,
    playground_regularization,
)
from funcnet._src.playground.url import FEATURES, PlaygroundConfig, parse_playground_url
from funcnet._src.training.callbacks import Callback
from funcnet._src.training.fit import fit
from funcnet._src.training.step import History, TrainState, init_train_state

DEFAULT_EPOCHS = 300
"""Epochs of ``python -m funcnet playground``: the default circle run is well under 0.05 test loss."""

EXTENT = 6.0
"""The Playground's picture spans [-6, 6] along x and y."""


class PlaygroundData(NamedTuple):
    """Train and test points ``[n, 2]`` and targets ``[n, 1]`` (float32)."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


class _PanelCallback(Callback):
    """After each epoch: the panel's train and test losses, log lines and snapshots."""

    def __init__(
        self, panel, arrays, history, snapshots, epochs, log_every, snapshot_every, print_fn
    ):
        self.panel, self.arrays, self.history, self.snapshots = panel, arrays, history, snapshots
        self.epochs, self.log_every, self.snapshot_every = epochs, log_every, snapshot_every
        self.print_fn = print_fn

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float]) -> None:
        ts = self.run.train_state
        panel = jax.device_get(self.panel(ts.params, ts.state, *self.arrays))
        for name, value in panel.items():
            self.history.setdefault(name, []).append(float(value))
        number, last = epoch + 1, epoch + 1 == self.epochs
        if self.log_every and (number % self.log_every == 0 or last):
            self.print_fn(
                f"epoch {number}: train loss {self.history['loss'][-1]:.4f}, "
                f"test loss {self.history['test_loss'][-1]:.4f}"
            )
        if self.snapshot_every and (number % self.snapshot_every == 0 or last):
            # Copied to the host: fit donates the train state's buffers.
            self.snapshots.append((number, jax.device_get(ts.params)))


def playground_dataset(config: PlaygroundConfig) -> PlaygroundData:
    """The config's points, shuffled once and split by ``percent_train``.

    Example:
        >>> data = playground_dataset(PlaygroundConfig(percent_train=30))
        >>> data.train_x.shape, data.test_y.shape
        ((150, 2), (350, 1))
    """
    rng = np.random.default_rng(config.seed)
    points, labels = playground_data(config.dataset, noise=config.noise / 100, seed=rng)
    (train_x, train_y), (test_x, test_y) = playground_split(
        points, labels, config.percent_train, seed=rng
    )
    return PlaygroundData(train_x, train_y[:, None], test_x, test_y[:, None])


class PlaygroundResult(NamedTuple):
    """What :func:`run_playground` returns.

    Attributes:
        config: the settings.
        net: the network (a funcnet layer).
        train_state: the final :class:`funcnet.TrainState` (``.params``, ``.state``).
        history: per epoch, the panel's ``loss`` (train) and ``test_loss``,
            and for classification ``accuracy`` and ``test_accuracy``.
        data: the :class:`PlaygroundData`.
        snapshots: ``(epoch, params)`` pairs kept for frames (epoch 0 is the start).
    """

    config: PlaygroundConfig
    net: Layer
    train_state: TrainState
    history: History
    data: PlaygroundData
    snapshots: list[tuple[int, Params]]

    @property
    def params(self) -> Params:
        return self.train_state.params

    def predict(self, points: Any, params: Params | None = None) -> np.ndarray:
        """The network's output ``[n]`` for points ``[n, 2]`` (by default, the final params)."""
        params = self.params if params is None else params
        out, _ = _forward(self.net)(
            params, self.train_state.state, jnp.asarray(points, jnp.float32)
        )
        return np.asarray(out)[:, 0]


@functools.lru_cache(maxsize=32)
def _forward(net: Layer) -> Callable:
    return jax.jit(lambda params, state, x: net.apply(params, state, x, train=False))


@functools.lru_cache(maxsize=32)
def _panel(net: Layer, classification: bool) -> Callable:
    """One jitted evaluation of what the Playground's panel shows after an epoch."""

    def logs(params, state, train_x, train_y, test_x, test_y):
        out_train = net.apply(params, state, train_x)[0]
        out_test = net.apply(params, state, test_x)[0]
        values = {
            "loss": half_squared_error(out_train, train_y),
            "test_loss": half_squared_error(out_test, test_y),
        }
        if classification:
            values["accuracy"] = jnp.mean(jnp.where(out_train >= 0, 1.0, -1.0) == train_y)
            values["test_accuracy"] = jnp.mean(jnp.where(out_test >= 0, 1.0, -1.0) == test_y)
        return values

    return jax.jit(logs)


def run_playground(
    config: PlaygroundConfig | str | None = None,
    *,
    epochs: int = DEFAULT_EPOCHS,
    log_every: int = 0,
    snapshot_every: int | None = None,
    print_fn: Callable[[str], Any] = print,
) -> PlaygroundResult:
    """Trains the Playground network of ``config`` and logs the panel's losses per epoch.

    Args:
        config: a :class:`PlaygroundConfig`, a Playground link or fragment, or
            None for the Playground's defaults (circle, x and y, 4-2 tanh).
        epochs: passes over the training points (the Playground's "epochs").
        log_every: print ``epoch N: train loss ..., test loss ...`` every this
            many epochs (and at the last); 0 prints nothing.
        snapshot_every: keep the params every this many epochs (and at 0 and
            the last) in ``result.snapshots``, for frames; None keeps none.
        print_fn: where the log lines go.

    Returns:
        A :class:`PlaygroundResult`.

    Example:
        >>> result = run_playground("dataset=gauss&networkShape=", epochs=5)
        >>> len(result.history["test_loss"]), result.history["test_loss"][-1] < 0.05
        (5, True)
    """
    if config is None:
        config = PlaygroundConfig()
    elif isinstance(config, str):
        config = parse_playground_url(config)
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0:
        raise ValueError(f"epochs must be an integer >= 0, got {epochs!r}.")
    data = playground_dataset(config)
    n_train = len(data.train_x)
    if config.batch_size > n_train:
        raise ValueError(
            f"batch_size {config.batch_size} is larger than the training set ({n_train} points, "
            f"{config.percent_train:g}% of the data). Use a batch size of at most {n_train}."
        )
    net = playground_network(config)
    optimizer = playground_optimizer(config)
    train_state = init_train_state(net, optimizer, (None, 2), key=config.seed)
    panel = _panel(net, config.problem == "classification")
    arrays = tuple(jnp.asarray(a) for a in data)
    train_x, train_y = arrays[:2]
    history: History = {}
    snapshots: list[tuple[int, Params]] = []
    if snapshot_every:
        snapshots.append((0, jax.device_get(train_state.params)))
    panel_callback = _PanelCallback(panel, arrays, history, snapshots, epochs, log_every,
                                    snapshot_every, print_fn)  # fmt: skip
    if epochs:
        train_state = fit(
            net, train_x, train_y, loss=half_squared_error, optimizer=optimizer, epochs=epochs,
            batch_size=config.batch_size, shuffle=False, train_state=train_state,
            callbacks=[panel_callback], verbose=0,
        ).train_state  # fmt: skip
    return PlaygroundResult(config, net, train_state, history, data, snapshots)


__all__ = [
    "DEFAULT_EPOCHS",
    "EXTENT",
    "FEATURES",
    "PlaygroundConfig",
    "PlaygroundData",
    "PlaygroundFeatures",
    "PlaygroundResult",
    "half_squared_error",
    "parse_playground_url",
    "playground_dataset",
    "playground_network",
    "playground_optimizer",
    "playground_regularization",
    "run_playground",
]
