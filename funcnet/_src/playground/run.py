"""The TensorFlow Playground in JAX: any Playground link as a scriptable experiment.

:func:`run_playground` trains the network that a :class:`PlaygroundConfig`
(or a Playground link, see :func:`parse_playground_url`) describes, with the
Playground's own semantics: its data (:mod:`funcnet.datasets`), its network,
loss and optimizer (``funcnet._src.playground.model``), the site's batching
over the training points in the order of one shuffle
(``funcnet._src.playground.trainer``), and before training and after each
epoch the train and test losses that the Playground's panel shows. What is
reproduced exactly, and what differs from the browser: ``docs/playground.md``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from funcnet._src.core import Layer, Params
from funcnet._src.playground.model import (
    PlaygroundFeatures,
    half_squared_error,
    playground_network,
    playground_optimizer,
    playground_regularization,
)
from funcnet._src.playground.trainer import PlaygroundTrainer, playground_arrays
from funcnet._src.playground.url import FEATURES, PlaygroundConfig, parse_playground_url
from funcnet._src.training.step import History, TrainState

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


def playground_dataset(config: PlaygroundConfig) -> PlaygroundData:
    """The config's points, shuffled once and split by ``percent_train``.

    Example:
        >>> data = playground_dataset(PlaygroundConfig(percent_train=30))
        >>> data.train_x.shape, data.test_y.shape
        ((150, 2), (350, 1))
    """
    return PlaygroundData(*playground_arrays(config))


class PlaygroundResult(NamedTuple):
    """What :func:`run_playground` returns.

    Attributes:
        config: the settings.
        net: the network (a funcnet layer).
        train_state: the final :class:`funcnet.TrainState` (``.params``, ``.state``).
        history: per epoch, the panel's ``loss`` (train) and ``test_loss``,
            and for classification ``accuracy`` and ``test_accuracy``; entry
            0 is before training (the site's panel at epoch 0), entry ``i``
            after epoch ``i``.
        data: the :class:`PlaygroundData`.
        snapshots: ``(epoch, params)`` pairs kept for frames (epoch 0 is the start).
        diverged: the losses stopped being finite, so the run stopped early
            (``len(history["loss"]) - 1`` epochs ran).
    """

    config: PlaygroundConfig
    net: Layer
    train_state: TrainState
    history: History
    data: PlaygroundData
    snapshots: list[tuple[int, Params]]
    diverged: bool = False

    @property
    def epochs(self) -> int:
        """The number of epochs that ran."""
        return len(self.history["loss"]) - 1

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
        epochs: passes over the training points (the Playground's "epochs"),
            with the site's batching: ``floor(n / batch_size)`` updates per
            epoch, the leftover points joining the next epoch's first update.
            A run whose losses stop being finite stops early.
        log_every: print ``epoch N: train loss ..., test loss ...`` at epoch 0
            and every this many epochs (and at the last); 0 prints nothing.
        snapshot_every: keep the params every this many epochs (and at 0 and
            the last) in ``result.snapshots``, for frames; None keeps none.
        print_fn: where the log lines go.

    Returns:
        A :class:`PlaygroundResult`.

    Example:
        >>> result = run_playground("dataset=gauss&networkShape=", epochs=5)
        >>> len(result.history["test_loss"]), result.history["test_loss"][-1] < 0.05
        (6, True)
    """
    if config is None:
        config = PlaygroundConfig()
    elif isinstance(config, str):
        config = parse_playground_url(config)
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0:
        raise ValueError(f"epochs must be an integer >= 0, got {epochs!r}.")
    trainer = PlaygroundTrainer(config, fixed_shapes=False)
    snapshots: list[tuple[int, Params]] = []
    if snapshot_every:
        snapshots.append((0, jax.device_get(trainer.train_state.params)))
    history = trainer.history

    def log(epoch: int) -> None:
        print_fn(
            f"epoch {epoch}: train loss {history['loss'][epoch]:.4f}, "
            f"test loss {history['test_loss'][epoch]:.4f}"
        )

    if log_every:
        log(0)  # the site's panel shows the losses before training too
    while trainer.epoch < epochs and trainer.train(1):
        number, last = trainer.epoch, trainer.epoch == epochs or trainer.diverged
        if log_every and (number % log_every == 0 or last):
            log(number)
        if snapshot_every and (number % snapshot_every == 0 or last):
            snapshots.append((number, jax.device_get(trainer.train_state.params)))
    data = PlaygroundData(*trainer.data)
    return PlaygroundResult(
        config, trainer.net, trainer.train_state, history, data, snapshots, trainer.diverged
    )


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
