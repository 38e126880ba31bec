"""``fit_many``: many models trained at once, as one compiled program.

The same architecture trained from many seeds, or over a sweep of
hyperparameters such as the learning rate (through
``optax.inject_hyperparams``), runs as a ``jax.vmap`` of the training loop;
the data is shared. See ``docs/training.md``, section "Many models at once".
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from funcnet._src.core import Layer
from funcnet._src.losses import Loss, get_loss
from funcnet._src.metrics import Metric, get_metric
from funcnet._src.training.callbacks import find_hyperparams, replace_hyperparam
from funcnet._src.training.data import as_arrays, check_batch_size, check_pair, example_spec
from funcnet._src.training.engine import Training, epoch_function
from funcnet._src.training.progress import Progress
from funcnet._src.training.step import TrainState, as_key, init_train_state


class FitManyResult(NamedTuple):
    """What :func:`fit_many` returns.

    Attributes:
        train_state: the stacked train states: every leaf has a leading model axis.
        history: ``{name: array [models, epochs]}``.
    """

    train_state: TrainState
    history: dict[str, np.ndarray]

    @property
    def params(self) -> Any:
        return self.train_state.params

    @property
    def state(self) -> Any:
        return self.train_state.state

    def model(self, i: int) -> TrainState:
        """The train state of model ``i`` alone."""
        return jax.tree.map(lambda a: a[i], self.train_state)


@functools.lru_cache(maxsize=32)
def _epoch_program(training: Training, n: int, batch_size: int, shuffle: bool) -> Callable:
    """The epoch of :func:`funcnet.engine.epoch_function`, vmapped over models and jitted."""
    one_model = epoch_function(training, n, batch_size, n % batch_size, shuffle)
    many = jax.vmap(one_model, in_axes=(0, None, None))
    return jax.jit(many, donate_argnums=(0,))


def _init_many(
    net: Layer,
    optimizer: optax.GradientTransformation,
    x: Any,
    seeds: Sequence[int],
    hyperparams: Mapping[str, Sequence[float]],
) -> TrainState:
    spec = example_spec(x)
    keys = jnp.stack([as_key(int(seed)) for seed in seeds])
    ts = jax.vmap(lambda key: init_train_state(net, optimizer, spec, key=key))(keys)
    if hyperparams:
        injected = find_hyperparams(ts.opt_state)
        missing = [name for name in hyperparams if injected is None or name not in injected]
        if missing:
            raise ValueError(
                f"fit_many: the optimizer has no injected hyperparameter {', '.join(map(repr, missing))}. "
                "Build it with optax.inject_hyperparams, e.g. "
                "optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)."
            )
        opt_state = ts.opt_state
        for name, values in hyperparams.items():
            opt_state = replace_hyperparam(opt_state, name, np.asarray(values, np.float32))
        ts = ts._replace(opt_state=opt_state)
    return ts


def fit_many(
    net: Layer,
    x: Any,
    y: Any,
    *,
    loss: str | Loss,
    optimizer: optax.GradientTransformation,
    seeds: Sequence[int] | int,
    hyperparams: Mapping[str, Sequence[float]] | None = None,
    epochs: int = 1,
    batch_size: int | None = None,
    shuffle: bool = True,
    metrics: Sequence[str | Metric] = (),
    verbose: int = 0,
) -> FitManyResult:
    """Trains one model per seed (and hyperparameter value) at once, vmapped.

    Args:
        net: the model (one architecture for all).
        x, y: the training data, shared by every model.
        loss: a loss function or name.
        optimizer: an optax optimizer; to sweep hyperparameters, build it with
            ``optax.inject_hyperparams``.
        seeds: one integer seed per model, or the number of models (seeds 0..n-1).
        hyperparams: ``{name: one value per model}``, e.g.
            ``{"learning_rate": [0.01, 0.03, 0.1, 0.3]}``.
        epochs, batch_size, shuffle, metrics: as in :func:`funcnet.fit`.
        verbose: 2 prints the models' mean logs per epoch.

    Returns:
        A :class:`FitManyResult` with stacked params (leading model axis) and
        ``history[name]`` of shape ``[models, epochs]``.

    Example:
        >>> import numpy as np, optax, funcnet as fn
        >>> x = np.linspace(-1, 1, 20, dtype=np.float32)[:, None]; y = 2 * x - 1
        >>> sgd = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
        >>> result = fn.fit_many(fn.Dense(1), x, y, loss="mse", optimizer=sgd, seeds=3,
        ...                      hyperparams={"learning_rate": [0.01, 0.1, 0.5]}, epochs=5)
        >>> result.params["w"].shape, result.history["loss"].shape
        ((3, 1, 1), (3, 5))
    """
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("fit_many: seeds must name at least one model.")
    hyperparams = dict(hyperparams or {})
    for name, values in hyperparams.items():
        if len(values) != len(seed_list):
            raise ValueError(
                f"fit_many: hyperparams[{name!r}] has {len(values)} values but there are "
                f"{len(seed_list)} models (seeds); give one value per model."
            )
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"fit_many: epochs must be an integer >= 0, got {epochs!r}.")
    loss_fn = get_loss(loss)
    metric_fns = tuple(get_metric(m) for m in metrics)
    x, y = as_arrays(x), as_arrays(y)
    n = check_pair("fit_many", x, y)
    batch_size = check_batch_size(batch_size, n)
    ts = _init_many(net, optimizer, x, seed_list, hyperparams)
    training = Training(net, loss_fn, optimizer, metric_fns, "stop")
    program = _epoch_program(training, n, batch_size, shuffle)
    names = training.log_names
    columns: dict[str, list[np.ndarray]] = {name: [] for name in names}
    progress = Progress(verbose, epochs, None)
    for epoch in range(epochs):
        ts, carry = program(ts, x, y)
        carry = jax.device_get(carry)
        for name in names:
            columns[name].append(np.asarray(carry.sums[name]) / np.asarray(carry.examples))
        progress.epoch_done(epoch, {name: float(np.mean(columns[name][-1])) for name in names})
    progress.close()
    history = {
        name: np.stack(values, axis=1) if values else np.zeros((len(seed_list), 0), np.float32)
        for name, values in columns.items()
    }
    return FitManyResult(ts, history)
