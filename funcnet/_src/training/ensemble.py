"""``fit_many``: many models trained at once, as one compiled program.

The same architecture trained from many seeds, or over a sweep of
hyperparameters such as the learning rate (through
``optax.inject_hyperparams``), runs as a ``jax.vmap`` of the training loop;
the data is shared. See ``docs/training.md``, section "Many models at once".
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from funcnet._src.core import Layer
from funcnet._src.losses import Loss, get_loss
from funcnet._src.metrics import Metric
from funcnet._src.training.arguments import (
    check_net,
    check_positive_int,
    get_metrics,
    get_optimizer,
)
from funcnet._src.training.callbacks import injected_hyperparam, with_hyperparam
from funcnet._src.training.data import as_arrays, check_batch_size, check_pair, example_spec
from funcnet._src.training.engine import (
    Training,
    accumulated_batch_size,
    epoch_function,
    nonfinite_step,
)
from funcnet._src.training.model_cache import ModelCache
from funcnet._src.training.precision import MixedPrecision, as_policy
from funcnet._src.training.programs import shared_jit
from funcnet._src.training.progress import Progress
from funcnet._src.training.step import NonFinite, TrainState, as_key, init_train_state

NONFINITE = ("stop", "skip", "ignore")


class FitManyResult(NamedTuple):
    """What :func:`fit_many` returns.

    Attributes:
        train_state: the stacked train states: every leaf has a leading model axis.
        history: ``{name: array [models, epochs]}``; NaN for the epochs after
            a model stopped (``on_nonfinite="stop"``), in which it did not train.
        nonfinite: one entry per model: its first step with a non-finite loss
            or gradient (a :class:`~funcnet.callbacks.NonFinite`: epoch, step,
            what), or None if every step was finite.
    """

    train_state: TrainState
    history: dict[str, np.ndarray]
    nonfinite: tuple[NonFinite | None, ...] = ()

    @property
    def params(self) -> Any:
        return self.train_state.params

    @property
    def state(self) -> Any:
        return self.train_state.state

    def model(self, i: int) -> TrainState:
        """The train state of model ``i`` alone."""
        return jax.tree.map(lambda a: a[i], self.train_state)


_PROGRAMS: ModelCache[Callable] = ModelCache()


def _epoch_program(training: Training, n: int, batch_size: int, shuffle: bool) -> Callable:
    """The epoch of ``epoch_function``, vmapped over models (and their ``halted`` flags), jitted."""
    rest = n % batch_size
    rest -= rest % training.accumulate  # equal micro-batches, as fit trims its last batch

    def build(net: Layer) -> Callable:
        one_model = epoch_function(training._replace(net=net), n, batch_size, rest, shuffle)
        many = jax.vmap(one_model, in_axes=(0, None, None, 0))
        return shared_jit(many, donate_argnums=(0,))

    return _PROGRAMS.get(training.net, (training[1:], n, batch_size, shuffle), build)


def _init_many(
    net: Layer,
    optimizer: optax.GradientTransformation,
    x: Any,
    keys: jax.Array,
    hyperparams: Mapping[str, Sequence[float]],
    policy: MixedPrecision | None,
) -> TrainState:
    spec = example_spec(x)

    def init_one(key: jax.Array) -> TrainState:
        return init_train_state(net, optimizer, spec, key=key, mixed_precision=policy)

    # One compiled program for every model's initialisation: vmap alone would
    # run (and on a cold cache compile) each initializer operation separately.
    # Each model gets its own loss scale (a leading model axis), as it gets its params.
    init_all = shared_jit(jax.vmap(init_one))
    ts = init_all(keys)
    if hyperparams:
        missing = [n for n in hyperparams if injected_hyperparam(ts.opt_state, n) is None]
        if missing:
            raise ValueError(
                f"fit_many: the optimizer has no injected hyperparameter {', '.join(map(repr, missing))}. "
                "Build it with optax.inject_hyperparams, e.g. "
                "optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)."
            )
        opt_state = ts.opt_state
        for name, values in hyperparams.items():
            opt_state = with_hyperparam(opt_state, name, np.asarray(values, np.float32))
        ts = ts._replace(opt_state=opt_state)
    return ts


def _model_keys(seeds: Any) -> jax.Array:
    """One key per model, stacked: from a number of models, or from a list of seeds or keys."""
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        seeds = range(int(seeds))
    elif isinstance(seeds, jax.Array) and jnp.issubdtype(seeds.dtype, jax.dtypes.prng_key):
        seeds = list(seeds) if seeds.ndim == 1 else [seeds]
    elif isinstance(seeds, (str, bytes)) or not isinstance(seeds, (Sequence, range, np.ndarray)):
        raise TypeError(
            "fit_many: seeds must be the number of models (e.g. seeds=4) or one integer seed "
            f"or jax.random.key per model (e.g. seeds=[0, 1, 2]), got {type(seeds).__name__}: "
            f"{seeds!r:.80}."
        )
    keys = [as_key(seed, f"fit_many: seeds[{i}]") for i, seed in enumerate(seeds)]
    if not keys:
        raise ValueError("fit_many: seeds must name at least one model.")
    # Typed keys throughout: a raw uint32 key and a typed one cannot be stacked.
    return jnp.stack(
        [k if jnp.issubdtype(k.dtype, jax.dtypes.prng_key) else jax.random.wrap_key_data(k)
         for k in keys]
    )  # fmt: skip


def _batch_size(requested: int | None, n: int, training: Training) -> int:
    """``fit``'s rule: ``min(32, n)`` by default, a multiple of ``accumulate`` when accumulating."""
    resolved = check_batch_size(requested, n, "fit_many")
    try:
        return accumulated_batch_size(requested, resolved, training.accumulate, training)
    except ValueError as error:  # fit's message, for fit_many's argument
        raise ValueError(f"fit_many{str(error).removeprefix('fit')}") from None


def _means(sums: np.ndarray, examples: np.ndarray) -> np.ndarray:
    """Per model, a log's mean over the examples it trained on (NaN for none)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(examples > 0, sums / examples, np.nan)


def _mean_over_models(values: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # every model stopped: NaN
        return float(np.nanmean(values))


def fit_many(
    net: Layer,
    x: Any,
    y: Any,
    *,
    loss: str | Loss,
    optimizer: optax.GradientTransformation | str,
    seeds: Sequence[int | jax.Array] | int,
    hyperparams: Mapping[str, Sequence[float]] | None = None,
    epochs: int = 1,
    batch_size: int | None = None,
    shuffle: bool = True,
    metrics: str | Metric | Sequence[str | Metric] = (),
    on_nonfinite: str = "stop",
    verbose: int = 0,
    mixed_precision: str | MixedPrecision | None = None,
    accumulate: int = 1,
) -> FitManyResult:
    """Trains one model per seed (and hyperparameter value) at once, vmapped.

    Args:
        net: the model (one architecture for all).
        x: the training inputs, shared by every model.
        y: the training targets, shared by every model.
        loss: a loss function or name.
        optimizer: an optax optimizer, or a Keras name as in :func:`funcnet.fit`;
            to sweep hyperparameters, build it with ``optax.inject_hyperparams``.
        seeds: one integer seed (or ``jax.random.key``) per model, or the
            number of models (seeds 0..n-1).
        hyperparams: ``{name: one value per model}``, e.g.
            ``{"learning_rate": [0.01, 0.03, 0.1, 0.3]}``.
        epochs: as in :func:`funcnet.fit`.
        batch_size: as in :func:`funcnet.fit`.
        shuffle: as in :func:`funcnet.fit`.
        metrics: as in :func:`funcnet.fit`.
        on_nonfinite: as in :func:`funcnet.fit`, for each model on its own:
            "stop" (the model keeps its last finite state and trains no more;
            the others go on), "skip" (its non-finite updates are skipped), or
            "ignore" (no guard). ``result.nonfinite`` says which models had a
            non-finite step, and where.
        verbose: 2 prints the models' mean logs per epoch.
        mixed_precision: as in :func:`funcnet.fit`: None (float32),
            "mixed_bfloat16", "mixed_float16" or a :class:`~funcnet.MixedPrecision`.
            With float16's dynamic loss scaling each model has its own scale
            (``result.train_state.loss_scale``, leading model axis): an
            overflow in one model skips that model's update and halves its
            scale only.
        accumulate: as in :func:`funcnet.fit`: micro-batches per update;
            ``batch_size`` (the examples per update) must be a multiple of it
            and the last smaller batch of an epoch is trimmed to a multiple of it.

    Returns:
        A :class:`FitManyResult` with stacked params (leading model axis),
        ``history[name]`` of shape ``[models, epochs]`` and ``nonfinite``.

    Example:
        >>> import numpy as np, optax, funcnet as fn
        >>> x = np.linspace(-1, 1, 20, dtype=np.float32)[:, None]; y = 2 * x - 1
        >>> sgd = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
        >>> result = fn.fit_many(fn.Dense(1), x, y, loss="mse", optimizer=sgd, seeds=3,
        ...                      hyperparams={"learning_rate": [0.01, 0.1, 0.5]}, epochs=5)
        >>> result.params["w"].shape, result.history["loss"].shape, result.nonfinite
        ((3, 1, 1), (3, 5), (None, None, None))
    """
    check_net(net, "fit_many")
    optimizer = get_optimizer(optimizer, "fit_many")
    policy = as_policy(mixed_precision, "fit_many")
    check_positive_int("fit_many", "accumulate", accumulate, allow_none=False)
    keys = _model_keys(seeds)
    models = int(keys.shape[0])
    hyperparams = dict(hyperparams or {})
    for name, values in hyperparams.items():
        if len(values) != models:
            raise ValueError(
                f"fit_many: hyperparams[{name!r}] has {len(values)} values but there are "
                f"{models} models (seeds); give one value per model."
            )
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"fit_many: epochs must be an integer >= 0, got {epochs!r}.")
    if on_nonfinite not in NONFINITE:
        raise ValueError(
            f"fit_many: on_nonfinite must be one of {', '.join(NONFINITE)}, got {on_nonfinite!r}."
        )
    loss_fn = get_loss(loss)
    metric_fns = get_metrics(metrics, "fit_many")
    x, y = as_arrays(x, "fit_many", "x"), as_arrays(y, "fit_many", "y")
    n = check_pair("fit_many", x, y)
    training = Training(
        net, loss_fn, optimizer, metric_fns, on_nonfinite, None, policy, int(accumulate)
    )
    batch_size = _batch_size(batch_size, n, training)
    ts = _init_many(net, optimizer, x, keys, hyperparams, policy)
    program = _epoch_program(training, n, batch_size, shuffle)
    names = training.log_names
    columns: dict[str, list[np.ndarray]] = {name: [] for name in names}
    first: list[NonFinite | None] = [None] * models
    halted = np.zeros(models, bool)  # models stopped by a non-finite step ("stop")
    progress = Progress(verbose, epochs, None)
    for epoch in range(epochs):
        ts, carry = program(ts, x, y, halted)
        carry = jax.device_get(carry)
        bad = np.asarray(carry.first_bad) >= 0
        for i in np.flatnonzero(bad):
            if first[i] is None:
                first[i] = nonfinite_step(epoch, int(carry.first_bad[i]), carry.cause[i])
        if on_nonfinite == "stop":
            halted = halted | bad
        examples = np.asarray(carry.examples)
        for name in names:
            columns[name].append(_means(np.asarray(carry.sums[name]), examples))
        progress.epoch_done(epoch, {name: _mean_over_models(columns[name][-1]) for name in names})
    progress.close()
    history = {
        name: np.stack(values, axis=1) if values else np.zeros((models, 0), np.float32)
        for name, values in columns.items()
    }
    return FitManyResult(ts, history, tuple(first))
