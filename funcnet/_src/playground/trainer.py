"""Training one Playground experiment epoch by epoch, with the site's batching rule.

The Playground (``src/playground.ts``, ``oneStep``) walks the training points
in order, accumulates each point's gradient, and updates the weights whenever
``(i + 1) % batchSize == 0``. So an epoch makes ``floor(n / b)`` updates, and
when ``b`` does not divide ``n`` the ``n mod b`` leftover points of an epoch
stay accumulated and join the next epoch's first update (which then averages
``b + n mod b`` points). :class:`PlaygroundTrainer` reproduces that with one
jitted epoch: a ``lax.scan`` over ``floor(n / b)`` batches whose first one
also holds the previous epoch's leftover points, masked off in the first
epoch. The network, loss and optimizer are funcnet's
(``funcnet._src.playground.model``); the command line (``run_playground``)
and the browser page (``funcnet._src.playground.server``) both train through
this class, so they give the same numbers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from funcnet._src.core import Layer
from funcnet._src.playground.datasets import playground_data, playground_split
from funcnet._src.playground.model import (
    half_squared_error,
    playground_network,
    playground_optimizer,
)
from funcnet._src.playground.url import PlaygroundConfig
from funcnet._src.training.step import TrainState, init_train_state

# Settings whose change the site applies to the running network without a reset
# (playground.ts sets ``parametersChanged`` and keeps the weights).
LIVE_SETTINGS = ("learning_rate", "regularization", "regularization_rate", "batch_size")
# Settings that only change the pictures.
VIEW_SETTINGS = ("discretize",)


def playground_arrays(config: PlaygroundConfig) -> tuple[np.ndarray, ...]:
    """``(train_x [n, 2], train_y [n, 1], test_x, test_y)``: the points, shuffled once and split."""
    rng = np.random.default_rng(config.seed)
    points, labels = playground_data(config.dataset, noise=config.noise / 100, seed=rng)
    (train_x, train_y), (test_x, test_y) = playground_split(
        points, labels, config.percent_train, seed=rng
    )
    return train_x, train_y[:, None], test_x, test_y[:, None]


def site_batches(n: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The site's updates of one epoch as ``(indices, kinds)``, both ``[updates, b + r]``.

    Update ``k`` averages the points ``indices[k]`` whose kind is 1 (this
    epoch's points) and, after the first epoch, those of kind 2 (the previous
    epoch's last ``r = n mod b`` points, only in the first update); kind 0 is
    padding.

    Example:
        >>> indices, kinds = site_batches(7, 3)
        >>> indices.tolist(), kinds.tolist()
        ([[0, 1, 2, 6], [3, 4, 5, 6]], [[1, 1, 1, 2], [1, 1, 1, 0]])
    """
    updates, leftover = divmod(n, batch_size)
    indices = np.full((updates, batch_size + leftover), n - 1, np.int32)
    kinds = np.zeros(indices.shape, np.int8)
    for k in range(updates):
        indices[k, :batch_size] = np.arange(k * batch_size, (k + 1) * batch_size)
        kinds[k, :batch_size] = 1
    if updates and leftover:
        indices[0, batch_size:] = np.arange(n - leftover, n)
        kinds[0, batch_size:] = 2
    return indices, kinds


@functools.lru_cache(maxsize=32)
def _epoch_function(net: Layer, optimizer: optax.GradientTransformation) -> Callable:
    """One jitted epoch: the site's updates in order, then the panel's losses."""

    def masked_loss(params, state, x, y, weight):
        out, _ = net.apply(params, state, x, train=True)
        per_point = 0.5 * jnp.sum((out - y) ** 2, axis=-1)
        return jnp.sum(weight * per_point) / jnp.sum(weight)

    grad_fn = jax.grad(masked_loss)

    def update(ts: TrainState, batch):
        x, y, weight = batch
        grads = grad_fn(ts.params, ts.state, x, y, weight)
        updates, opt_state = optimizer.update(grads, ts.opt_state, ts.params)
        params = optax.apply_updates(ts.params, updates)
        return ts._replace(params=params, opt_state=opt_state, step=ts.step + 1), None

    def epoch(ts, train_x, train_y, indices, kinds, carry_leftover):
        weight = (kinds == 1) | ((kinds == 2) & carry_leftover)
        batches = (train_x[indices], train_y[indices], weight.astype(train_x.dtype))
        ts, _ = jax.lax.scan(update, ts, batches)
        return ts

    return jax.jit(epoch)


@functools.lru_cache(maxsize=32)
def panel_function(net: Layer, classification: bool) -> Callable:
    """One jitted evaluation of what the Playground's panel shows: losses (and accuracies)."""

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


class PlaygroundTrainer:
    """One Playground experiment that trains on demand, epoch by epoch.

    ``history`` holds the panel's values after each epoch, starting with
    epoch 0 (before any update), as the site's panel and chart do.

    Args:
        config: the settings.

    Example:
        >>> trainer = PlaygroundTrainer(PlaygroundConfig(dataset="gauss", network_shape=()))
        >>> trainer.train(3), trainer.epoch, len(trainer.history["loss"])
        (3, 3, 4)
    """

    config: PlaygroundConfig

    def __init__(self, config: PlaygroundConfig) -> None:
        self.reset(config)

    def reset(self, config: PlaygroundConfig | None = None) -> None:
        """New data and new initial weights (for ``config``, or the current one)."""
        config = self.config if config is None else config
        train_x, train_y, test_x, test_y = playground_arrays(config)
        n = len(train_x)
        if config.batch_size > n:
            raise ValueError(
                f"batch_size {config.batch_size} is larger than the training set ({n} points, "
                f"{config.percent_train:g}% of the data). Use a batch size of at most {n}."
            )
        self.config = config
        self.data = (train_x, train_y, test_x, test_y)
        self.arrays = tuple(jnp.asarray(a) for a in self.data)
        self.net = playground_network(config)
        self.train_state = init_train_state(
            self.net, playground_optimizer(config), (None, 2), key=config.seed
        )
        self._set_optimizer(config)
        self.epoch = 0
        self.diverged = False
        self.history: dict[str, list[float]] = {}
        self._record()

    def _set_optimizer(self, config: PlaygroundConfig) -> None:
        self.optimizer = playground_optimizer(config)
        self._epoch = _epoch_function(self.net, self.optimizer)
        indices, mask = site_batches(len(self.data[0]), config.batch_size)
        self._indices, self._mask = jnp.asarray(indices), jnp.asarray(mask)
        self._panel = panel_function(self.net, config.problem == "classification")

    def change(self, config: PlaygroundConfig) -> bool:
        """Switches to ``config``; returns True when that needed a reset.

        Learning rate, regularization (and its rate) and batch size change on
        the running network, as on the site; ``discretize`` changes nothing
        here; any other setting starts again from new data and weights.
        """
        differs = {
            f for f in PlaygroundConfig.__dataclass_fields__
            if getattr(config, f) != getattr(self.config, f)
        }  # fmt: skip
        if differs - set(LIVE_SETTINGS) - set(VIEW_SETTINGS):
            self.reset(config)
            return True
        n = len(self.data[0])
        if config.batch_size > n:
            raise ValueError(
                f"batch_size {config.batch_size} is larger than the training set ({n} points, "
                f"{config.percent_train:g}% of the data). Use a batch size of at most {n}."
            )
        old_state = self.train_state.opt_state
        self.config = config
        self._set_optimizer(config)
        new_state = self.optimizer.init(self.train_state.params)
        # L1's dead links survive a change of rate, as on the site.
        same = bool(jax.tree.structure(new_state) == jax.tree.structure(old_state))  # type: ignore[operator]
        self.train_state = self.train_state._replace(opt_state=old_state if same else new_state)
        return False

    def _record(self) -> None:
        ts = self.train_state
        panel = jax.device_get(self._panel(ts.params, ts.state, *self.arrays))
        for name, value in panel.items():
            self.history.setdefault(name, []).append(float(value))

    def train(self, epochs: int = 1) -> int:
        """Trains up to ``epochs`` more epochs; returns how many ran.

        A run stops early when its losses stop being finite (it diverged:
        ``diverged`` becomes True and the last epoch's values are not finite).
        """
        done = 0
        train_x, train_y = self.arrays[:2]
        while done < epochs and not self.diverged:
            self.train_state = self._epoch(
                self.train_state, train_x, train_y, self._indices, self._mask, self.epoch > 0
            )
            self.epoch += 1
            done += 1
            self._record()
            if not all(np.isfinite(v[-1]) for v in self.history.values()):
                self.diverged = True
        return done


__all__ = ["PlaygroundTrainer", "panel_function", "playground_arrays", "site_batches"]
