"""Training one Playground experiment epoch by epoch, with the site's batching rule.

The Playground (``src/playground.ts``, ``oneStep``) walks the training points
in order, accumulates each point's gradient, and updates the weights whenever
``(i + 1) % batchSize == 0``. So an epoch makes ``floor(n / b)`` updates, and
when ``b`` does not divide ``n`` the ``n mod b`` leftover points of an epoch
stay accumulated and join the next epoch's first update (which then averages
``b + n mod b`` points). :class:`PlaygroundTrainer` reproduces that with one
jitted epoch: a ``lax.fori_loop`` over ``floor(n / b)`` batches whose first one
also holds the previous epoch's leftover points, masked off in the first
epoch. The network, loss and optimizer are funcnet's
(``funcnet._src.playground.model``); the command line (``run_playground``)
and the browser page (``funcnet._src.playground.server``) both train through
this class, so they give the same numbers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from funcnet._src.core import Layer
from funcnet._src.playground.datasets import (
    NUM_SAMPLES_REGRESS,
    playground_data,
    playground_split,
)
from funcnet._src.playground.model import playground_network, playground_regularization
from funcnet._src.playground.url import PlaygroundConfig
from funcnet._src.training.step import TrainState, init_train_state

# Settings whose change the site applies to the running network without a reset
# (playground.ts sets ``parametersChanged`` and keeps the weights).
LIVE_SETTINGS = ("learning_rate", "regularization", "regularization_rate", "batch_size")
# Settings that only change the pictures.
VIEW_SETTINGS = ("discretize",)

ROWS = NUM_SAMPLES_REGRESS
"""Every data set's train and test points are padded to this many rows (one shape for all)."""

WIDTH = 2 * 30 - 1
"""Points per update, padded: b + (n mod b) <= 59 for the page's batch sizes (1 to 30)."""


def _check_batch_size(config: PlaygroundConfig, n: int) -> None:
    if config.batch_size > n:
        raise ValueError(
            f"batch_size {config.batch_size} is larger than the training set ({n} points, "
            f"{config.percent_train:g}% of the data). Use a batch size of at most {n}."
        )


def playground_arrays(config: PlaygroundConfig) -> tuple[np.ndarray, ...]:
    """``(train_x [n, 2], train_y [n, 1], test_x, test_y)``: the points, shuffled once and split."""
    rng = np.random.default_rng(config.seed)
    points, labels = playground_data(config.dataset, noise=config.noise / 100, seed=rng)
    (train_x, train_y), (test_x, test_y) = playground_split(
        points, labels, config.percent_train, seed=rng
    )
    return train_x, train_y[:, None], test_x, test_y[:, None]


def site_batches(
    n: int, batch_size: int, rows: int | None = None, width: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The site's updates of one epoch as ``(indices, kinds)``, both ``[rows, width]``.

    Update ``k`` (of ``n // batch_size``) averages the points ``indices[k]``
    whose kind is 1 (this epoch's points) and, after the first epoch, those of
    kind 2 (the previous epoch's last ``r = n mod b`` points, only in the first
    update); kind 0 is padding. ``rows`` and ``width`` pad the arrays to a
    fixed shape, so that settings of one page share one compiled epoch.

    Example:
        >>> indices, kinds = site_batches(7, 3)
        >>> indices.tolist(), kinds.tolist()
        ([[0, 1, 2, 6], [3, 4, 5, 6]], [[1, 1, 1, 2], [1, 1, 1, 0]])
    """
    updates, leftover = divmod(n, batch_size)
    rows = updates if rows is None else max(rows, updates)
    width = batch_size + leftover if width is None else max(width, batch_size + leftover)
    indices = np.full((rows, width), n - 1, np.int32)
    kinds = np.zeros(indices.shape, np.int8)
    for k in range(updates):
        indices[k, :batch_size] = np.arange(k * batch_size, (k + 1) * batch_size)
        kinds[k, :batch_size] = 1
    if updates and leftover:
        indices[0, batch_size : batch_size + leftover] = np.arange(n - leftover, n)
        kinds[0, batch_size : batch_size + leftover] = 2
    return indices, kinds


@functools.lru_cache(maxsize=32)
def _epoch_function(net: Layer, optimizer: optax.GradientTransformation) -> Callable:
    """One jitted epoch: the site's ``updates`` updates in order.

    The number of updates is a traced value (a while loop over the rows of
    ``indices``), so a change of batch size or of the training set's size
    does not compile again when the arrays keep their padded shape.
    """

    def masked_loss(params, state, x, y, weight):
        out, _ = net.apply(params, state, x, train=True)
        per_point = 0.5 * jnp.sum((out - y) ** 2, axis=-1)
        return jnp.sum(weight * per_point) / jnp.sum(weight)

    grad_fn = jax.grad(masked_loss)

    def epoch(ts, train_x, train_y, indices, kinds, updates, carry_leftover):
        def update(k, ts: TrainState):
            rows, row_kinds = indices[k], kinds[k]
            weight = (row_kinds == 1) | ((row_kinds == 2) & carry_leftover)
            grads = grad_fn(ts.params, ts.state, train_x[rows], train_y[rows],
                            weight.astype(train_x.dtype))  # fmt: skip
            changes, opt_state = optimizer.update(grads, ts.opt_state, ts.params)
            params = optax.apply_updates(ts.params, changes)
            return ts._replace(params=params, opt_state=opt_state, step=ts.step + 1)

        return jax.lax.fori_loop(0, updates, update, ts)

    return jax.jit(epoch)


@functools.lru_cache(maxsize=32)
def panel_function(net: Layer, classification: bool) -> Callable:
    """One jitted evaluation of what the Playground's panel shows: losses (and accuracies).

    Points whose mask is 0 are padding (fixed shapes: one compilation per network).
    """

    def mean(values, mask):
        return jnp.sum(values[:, 0] * mask) / jnp.sum(mask)

    def logs(params, state, train_x, train_y, train_mask, test_x, test_y, test_mask):
        out_train = net.apply(params, state, train_x)[0]
        out_test = net.apply(params, state, test_x)[0]
        values = {
            "loss": mean(0.5 * (out_train - train_y) ** 2, train_mask),
            "test_loss": mean(0.5 * (out_test - test_y) ** 2, test_mask),
        }
        if classification:
            right = lambda out, y: (jnp.where(out >= 0, 1.0, -1.0) == y).astype(out.dtype)  # noqa: E731
            values["accuracy"] = mean(right(out_train, train_y), train_mask)
            values["test_accuracy"] = mean(right(out_test, test_y), test_mask)
        return values

    return jax.jit(logs)


def _padded(values: np.ndarray, rows: int) -> np.ndarray:
    return np.concatenate([values, np.zeros((rows - len(values), *values.shape[1:]), values.dtype)])


@functools.lru_cache(maxsize=8)
def _page_optimizer(regularization: str) -> optax.GradientTransformation:
    """SGD and the site's regularization with the rates as state, not constants.

    A new learning rate or regularization rate is then a new value in the
    optimizer's state, not a new program to compile.
    """

    def chain(learning_rate, rate):
        return optax.chain(
            optax.sgd(learning_rate),
            playground_regularization(regularization, rate, learning_rate),
        )

    return optax.inject_hyperparams(chain)(learning_rate=0.0, rate=0.0)


def _with_rates(opt_state: Any, config: PlaygroundConfig) -> Any:
    hyperparams = dict(opt_state.hyperparams)
    hyperparams["learning_rate"] = jnp.asarray(config.learning_rate, jnp.float32)
    hyperparams["rate"] = jnp.asarray(config.regularization_rate, jnp.float32)
    return opt_state._replace(hyperparams=hyperparams)


class PlaygroundTrainer:
    """One Playground experiment that trains on demand, epoch by epoch.

    ``history`` holds the panel's values after each epoch, starting with
    epoch 0 (before any update), as the site's panel and chart do.

    Args:
        config: the settings.
        fixed_shapes: pad the points and batches to one shape for every data
            set, ratio and batch size up to 30, so that the page's changes do
            not compile again (False: exact shapes, quicker epochs for one run).

    Example:
        >>> trainer = PlaygroundTrainer(PlaygroundConfig(dataset="gauss", network_shape=()))
        >>> trainer.train(3), trainer.epoch, len(trainer.history["loss"])
        (3, 3, 4)
    """

    config: PlaygroundConfig

    def __init__(self, config: PlaygroundConfig, fixed_shapes: bool = True) -> None:
        self.fixed_shapes = fixed_shapes
        self.reset(config)

    def reset(self, config: PlaygroundConfig | None = None) -> None:
        """New data and new initial weights (for ``config``, or the current one)."""
        config = self.config if config is None else config
        train_x, train_y, test_x, test_y = playground_arrays(config)
        _check_batch_size(config, len(train_x))
        self.config = config
        self.data = (train_x, train_y, test_x, test_y)
        # Padded to one shape for every data set and ratio (masks say which points are
        # real), so that changing them does not compile again.
        rows = max(ROWS if self.fixed_shapes else 0, len(train_x), len(test_x))
        masks = [_padded(np.ones(len(a), np.float32), rows) for a in (train_x, test_x)]
        padded = [_padded(a, rows) for a in self.data]
        self.arrays = tuple(
            jnp.asarray(a) for a in (padded[0], padded[1], masks[0], padded[2], padded[3], masks[1])
        )
        self.net = playground_network(config)
        self.optimizer = _page_optimizer(config.regularization)
        ts = init_train_state(self.net, self.optimizer, (None, 2), key=config.seed)
        self.train_state = ts._replace(opt_state=_with_rates(ts.opt_state, config))
        self._epoch = _epoch_function(self.net, self.optimizer)
        self._panel = panel_function(self.net, config.problem == "classification")
        self._set_batches(config)
        self.epoch = 0
        self.diverged = False
        self.history: dict[str, list[float]] = {}
        self._record()

    def _set_batches(self, config: PlaygroundConfig) -> None:
        n = len(self.data[0])
        fixed = self.fixed_shapes
        indices, kinds = site_batches(
            n, config.batch_size, rows=ROWS if fixed else None, width=WIDTH if fixed else None
        )
        self._indices, self._kinds = jnp.asarray(indices), jnp.asarray(kinds)
        self._updates = jnp.asarray(n // config.batch_size, jnp.int32)

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
        _check_batch_size(config, len(self.data[0]))
        opt_state = self.train_state.opt_state
        if config.regularization != self.config.regularization:
            self.optimizer = _page_optimizer(config.regularization)
            self._epoch = _epoch_function(self.net, self.optimizer)
            opt_state = self.optimizer.init(self.train_state.params)
        # New rates are new values in the optimizer's state (L1's dead links stay dead).
        self.train_state = self.train_state._replace(opt_state=_with_rates(opt_state, config))
        self.config = config
        self._set_batches(config)
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
                self.train_state,
                train_x,
                train_y,
                self._indices,
                self._kinds,
                self._updates,
                self.epoch > 0,
            )
            self.epoch += 1
            done += 1
            self._record()
            if not all(np.isfinite(v[-1]) for v in self.history.values()):
                self.diverged = True
        return done


__all__ = ["PlaygroundTrainer", "panel_function", "playground_arrays", "site_batches"]
