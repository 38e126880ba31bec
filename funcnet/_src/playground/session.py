"""One browser tab's experiment: settings from its link, training on request, frames to draw.

A :class:`PlaygroundSession` wraps a :class:`PlaygroundTrainer` (the same
training as the command line) and answers the page's requests: ``step``
(train a few epochs while the page plays), ``change`` (new settings: live for
learning rate, regularization and batch size, a reset for the rest, as on the
site), ``reset`` (back to epoch 0) and ``frame`` (what the page draws: the
output's heat map, one small heat map per node, the weights and the losses).
Pictures travel as base64 ``uint8`` arrays: value ``v`` in [-1, 1] is
``round((v + 1) / 2 * 255)``, rows from the top (y = 6) down, columns from
x = -6; the page quantises them into the site's 31 shades.
"""

from __future__ import annotations

import base64
import functools
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcnet._src.playground.model import playground_layers
from funcnet._src.playground.trainer import PlaygroundTrainer
from funcnet._src.playground.url import (
    PlaygroundConfig,
    _fragment_of,
    _pairs,
    parse_playground_url,
    seed_from_string,
)

# Keys the page keeps as the link gave them, though they change nothing in training:
# the page's layout flags, so that a copied link keeps its hidden controls and text.
_KEPT_AS_GIVEN = ("collectStats", "hideText", "tutorial")

MAX_LAYERS = 6
"""The Playground's limit on hidden layers."""

MAX_NEURONS = 8
"""The Playground's limit on neurons per hidden layer."""

MAX_BATCH_SIZE = 30
"""The Playground's batch size slider stops at 30."""

DENSITY = 100
"""The output's heat map is ``DENSITY x DENSITY`` cells (the site's DENSITY)."""

NODE_DENSITY = 10
"""Each node's picture is ``NODE_DENSITY`` cells a side (the site's DENSITY / 10)."""

EXTENT = 6.0


def config_for_page(fragment: str) -> PlaygroundConfig:
    """The settings of a link for the page, within the Playground's limits.

    Raises:
        ValueError: for a broken link, or a network or batch size beyond the
            page's limits (the message says which and what is allowed).
    """
    config = parse_playground_url(fragment)
    shape = config.network_shape
    if len(shape) > MAX_LAYERS:
        raise ValueError(
            f"networkShape has {len(shape)} hidden layers; the Playground allows at most "
            f"{MAX_LAYERS}. Remove some layers."
        )
    if any(size > MAX_NEURONS for size in shape):
        raise ValueError(
            f"networkShape {','.join(map(str, shape))} has a layer of more than {MAX_NEURONS} "
            f"neurons, the Playground's limit. Use at most {MAX_NEURONS} per layer."
        )
    if config.batch_size > MAX_BATCH_SIZE:
        raise ValueError(
            f"batchSize {config.batch_size} is above the Playground's {MAX_BATCH_SIZE}. "
            f"Use 1 to {MAX_BATCH_SIZE}."
        )
    return config


def _grid(density: int) -> np.ndarray:
    """Points ``[density * density, 2]``: rows from y = +6 down, columns from x = -6."""
    xs = np.linspace(-EXTENT, EXTENT, density)
    gx, gy = np.meshgrid(xs, xs[::-1])
    return np.stack([gx.ravel(), gy.ravel()], axis=-1).astype(np.float32)


@functools.lru_cache(maxsize=32)
def _node_values(layers: tuple) -> Callable:
    """Jitted: every node's value on the grid, ``[nodes, density, density]`` per column."""

    def values(params, state, points):
        h, columns = points, []
        for layer, p, s in zip(layers, params, state):
            h, _ = layer.apply(p, s, h)
            columns.append(h.T)
        return columns

    return jax.jit(values)


def _encode(values: np.ndarray) -> str:
    """Values in [-1, 1] (any shape) as base64 uint8, ``round((v + 1) / 2 * 255)``."""
    clipped = np.nan_to_num(np.clip(values, -1.0, 1.0), nan=0.0)
    return base64.b64encode(np.round((clipped + 1) * 127.5).astype(np.uint8).tobytes()).decode()


def _coarse(values: np.ndarray) -> np.ndarray:
    """``[..., DENSITY, DENSITY]`` averaged into ``NODE_DENSITY`` blocks (the site's reduceMatrix)."""
    f = DENSITY // NODE_DENSITY
    shape = (*values.shape[:-2], NODE_DENSITY, f, NODE_DENSITY, f)
    return values.reshape(shape).mean(axis=(-3, -1))


class PlaygroundSession:
    """One tab's experiment.

    Args:
        fragment: the page's link or fragment (the Playground's format).

    Example:
        >>> session = PlaygroundSession("dataset=gauss&networkShape=2")
        >>> frame = session.step(epochs=2)
        >>> frame["epoch"], len(frame["test_loss"]), [len(c) for c in frame["nodes"]]
        (2, 3, [2, 2, 1])
    """

    def __init__(self, fragment: str = "") -> None:
        self.lock = threading.Lock()
        self.last_seen = time.monotonic()
        self.trainer = PlaygroundTrainer(config_for_page(fragment))
        self.data_version = 0
        self._remember(fragment)

    def _remember(self, fragment: str) -> None:
        """What the link says that the config does not keep: its seed string, layout flags."""
        pairs = _pairs(_fragment_of(fragment)) if fragment.strip() else {}
        self.seed_text = pairs.get("seed")
        self.kept = {k: v for k, v in pairs.items() if k in _KEPT_AS_GIVEN or k.endswith("_hide")}

    def fragment(self) -> str:
        """The link's fragment in the Playground's format, with the link's own seed string."""
        config = self.trainer.config
        fragment = config.to_fragment()
        if self.seed_text is not None and seed_from_string(self.seed_text) == config.seed:
            fragment = fragment.replace(f"&seed={config.seed}&", f"&seed={self.seed_text}&")
        return "&".join([fragment, *(f"{k}={v}" for k, v in self.kept.items())])

    @property
    def config(self) -> PlaygroundConfig:
        return self.trainer.config

    def step(self, epochs: int | None = None, budget: float = 0.03, since: int = 0) -> dict:
        """Trains ``epochs`` epochs, or as many as fit in ``budget`` seconds (at least one)."""
        if epochs is not None:
            self.trainer.train(epochs)
        else:
            start = time.perf_counter()
            while self.trainer.train(1) and time.perf_counter() - start < budget:
                pass
        return self.frame(since)

    def change(self, fragment: str) -> dict:
        """New settings; training starts again unless only live settings changed."""
        if self.trainer.change(config_for_page(fragment)):
            self.data_version += 1
        self._remember(fragment)
        return self.frame(0)

    def reset(self) -> dict:
        """Back to epoch 0 with the same settings (the same data and initial weights)."""
        self.trainer.reset()
        self.data_version += 1
        return self.frame(0)

    def frame(self, since: int = 0) -> dict:
        """What the page draws; losses from epoch ``since`` on."""
        trainer, config = self.trainer, self.trainer.config
        output = "tanh" if config.problem == "classification" else "linear"
        layers = playground_layers(config.features, config.network_shape, config.activation,
                                   output, config.init_zero)  # fmt: skip
        ts = trainer.train_state
        columns = jax.device_get(
            _node_values(layers)(ts.params, ts.state, jnp.asarray(_grid(DENSITY)))
        )
        columns = [np.asarray(c).reshape(-1, DENSITY, DENSITY) for c in columns]
        weights = jax.device_get([p["w"] for p in ts.params[1:]])
        biases = jax.device_get([p["b"] for p in ts.params[1:]])
        since = max(0, min(int(since), trainer.epoch + 1))
        return {
            "epoch": trainer.epoch,
            "fragment": self.fragment(),
            "diverged": trainer.diverged,
            "data_version": self.data_version,
            "since": since,
            "loss": _finite(trainer.history["loss"][since:]),
            "test_loss": _finite(trainer.history["test_loss"][since:]),
            "output": _encode(columns[-1][0]),
            "nodes": [[_encode(_coarse(node)) for node in column] for column in columns],
            "features": list(config.features),
            "weights": [np.asarray(w).round(6).tolist() for w in weights],
            "biases": [np.asarray(b).round(6).tolist() for b in biases],
        }

    def points(self) -> dict:
        """The train and test points, ``[[x, y, label], ...]`` each."""
        train_x, train_y, test_x, test_y = self.trainer.data

        def rows(x: Any, y: Any) -> list:
            return np.concatenate([x, y], axis=1).round(4).tolist()

        return {
            "data_version": self.data_version,
            "train": rows(train_x, train_y),
            "test": rows(test_x, test_y),
        }


def _finite(values: list[float]) -> list[float | None]:
    # JSON has no NaN: a diverged loss travels as null.
    return [v if np.isfinite(v) else None for v in values]


__all__ = ["MAX_LAYERS", "MAX_NEURONS", "PlaygroundSession", "config_for_page"]
