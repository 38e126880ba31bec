"""Training: the train state, a jitted train step, and ``fit``/``evaluate``/``predict``.

The train step is one pure function ``step(train_state, batch) -> (train_state,
loss)`` over a :class:`TrainState` NamedTuple, so it works with ``jax.jit``,
buffer donation, sharding and checkpointing.

``fit`` puts in-memory data on the device once, shuffles it there each epoch
and runs the epoch as one compiled ``lax.scan`` over full batches. When the
dataset size is not a multiple of the batch size, the remaining examples form
one smaller last batch, as in Keras; its shape is the same every epoch, so it
is compiled once, inside the same epoch program, and never causes a
recompile. The epoch loss is the mean over examples.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from funcnet.core import Layer, Params, State
from funcnet.losses import Loss, get_loss
from funcnet.metrics import Metric, get_metric

# Shuffling draws from its own stream of the run's key, apart from the
# per-step keys fold_in(key, step) that stochastic layers get.
_SHUFFLE_STREAM = 0x5EED

History = dict[str, list[float]]
"""Per-epoch logs, as Keras's ``History.history``: ``{"loss": [...], ...}``."""


class TrainState(NamedTuple):
    """Everything a training run carries from one step to the next.

    Attributes:
        params: the model's trainable parameters.
        state: the model's non-trainable state (e.g. batch-norm statistics).
        opt_state: the optax optimizer's state.
        step: the number of steps taken, an int32 scalar.
        key: the run's base key; step ``i`` uses ``fold_in(key, i)``.
    """

    params: Params
    state: State
    opt_state: optax.OptState
    step: jax.Array
    key: jax.Array


class FitResult(NamedTuple):
    """What :func:`fit` returns: the final train state and the per-epoch history."""

    train_state: TrainState
    history: History

    @property
    def params(self) -> Params:
        return self.train_state.params

    @property
    def state(self) -> State:
        return self.train_state.state

    @property
    def opt_state(self) -> optax.OptState:
        return self.train_state.opt_state


def _as_key(key: jax.Array | int | None) -> jax.Array:
    if key is None:
        return jax.random.key(0)
    if isinstance(key, (int, np.integer)):
        return jax.random.key(int(key))
    return key


def init_train_state(
    net: Layer,
    optimizer: optax.GradientTransformation,
    input_shape: Any,
    *,
    key: jax.Array | int | None = None,
) -> TrainState:
    """Initialises params, state and optimizer state for training ``net``.

    Args:
        net: the model.
        optimizer: an optax optimizer.
        input_shape: the model's input shape (batch may be ``None``).
        key: a key or integer seed (default 0) for init and for training randomness.

    Example:
        >>> import optax, funcnet as fn
        >>> ts = fn.init_train_state(fn.Dense(1), optax.sgd(0.01), (None, 1), key=0)
        >>> int(ts.step)
        0
    """
    init_key, train_key = jax.random.split(_as_key(key))
    _, params, state = net.init(init_key, input_shape)
    return TrainState(params, state, optimizer.init(params), jnp.zeros((), jnp.int32), train_key)


def _resolve_metrics(metrics: Sequence[str | Metric]) -> tuple[tuple[str, Metric], ...]:
    return tuple(get_metric(m) for m in metrics)


def _check_scalar_loss(value: Any) -> None:
    if jnp.shape(value) != ():
        raise ValueError(
            f"the loss must return a scalar (the mean over the batch), got shape {jnp.shape(value)}. "
            "End it with jnp.mean(...)."
        )


def _logged_step(
    net: Layer,
    loss: Loss,
    optimizer: optax.GradientTransformation,
    metrics: tuple[tuple[str, Metric], ...],
) -> Callable[[TrainState, Any], tuple[TrainState, dict[str, jax.Array]]]:
    """The pure train step, returning the new train state and a dict of logs."""

    def step(ts: TrainState, batch: Any) -> tuple[TrainState, dict[str, jax.Array]]:
        x, y = batch
        step_key = jax.random.fold_in(ts.key, ts.step)

        def objective(params):
            predictions, new_state = net.apply(params, ts.state, x, key=step_key, train=True)
            value = loss(predictions, y)
            _check_scalar_loss(value)
            return value, (new_state, predictions)

        (value, (new_state, predictions)), grads = jax.value_and_grad(objective, has_aux=True)(
            ts.params
        )
        updates, opt_state = optimizer.update(grads, ts.opt_state, ts.params)
        params = optax.apply_updates(ts.params, updates)
        logs = {"loss": value}
        for name, metric in metrics:
            logs[name] = metric(jax.lax.stop_gradient(predictions), y)
        return TrainState(params, new_state, opt_state, ts.step + 1, ts.key), logs

    return step


def make_train_step(
    net: Layer,
    loss: str | Loss,
    optimizer: optax.GradientTransformation,
    *,
    donate: bool = True,
) -> Callable[[TrainState, Any], tuple[TrainState, jax.Array]]:
    """Builds the jitted step ``step(train_state, (x, y)) -> (train_state, loss)``.

    The step computes the loss and its gradient with respect to the params,
    applies the optimizer, threads the model state and advances ``step``.
    Stochastic layers get ``fold_in(train_state.key, train_state.step)``.

    Args:
        net: the model.
        loss: a loss function ``loss(predictions, targets) -> scalar`` or its name.
        optimizer: an optax optimizer.
        donate: donate the input train state's buffers, so params update in
            place; the train state passed in must not be used again.

    Example:
        >>> import jax.numpy as jnp, optax, funcnet as fn
        >>> net, opt = fn.Dense(1), optax.sgd(0.1)
        >>> ts = fn.init_train_state(net, opt, (None, 1), key=0)
        >>> step = fn.make_train_step(net, fn.mse, opt)
        >>> x = jnp.array([[0.0], [1.0]]); y = 2 * x - 1
        >>> ts, loss = step(ts, (x, y))
        >>> int(ts.step)
        1
    """
    logged = _logged_step(net, get_loss(loss), optimizer, ())

    def step(ts: TrainState, batch: Any) -> tuple[TrainState, jax.Array]:
        ts, logs = logged(ts, batch)
        return ts, logs["loss"]

    return jax.jit(step, donate_argnums=(0,) if donate else ())


# --------------------------------------------------------------------------
# fit, evaluate, predict


def _as_arrays(data: Any) -> Any:
    return jax.tree.map(jnp.asarray, data)


def _num_examples(name: str, data: Any) -> int:
    leaves = jax.tree.leaves(data)
    if not leaves:
        raise ValueError(f"fit: {name} holds no arrays.")
    if any(np.ndim(leaf) == 0 for leaf in leaves):
        raise ValueError(f"fit: every array in {name} needs a leading example axis; got a scalar.")
    sizes = {int(np.shape(leaf)[0]) for leaf in leaves}
    if len(sizes) > 1:
        raise ValueError(
            f"fit: the arrays in {name} have different numbers of examples: {sorted(sizes)}."
        )
    return sizes.pop()


def _check_data(x: Any, y: Any) -> int:
    n_x, n_y = _num_examples("x", x), _num_examples("y", y)
    if n_x != n_y:
        raise ValueError(
            f"fit: x has {n_x} examples but y has {n_y}; they must match along the first axis."
        )
    if n_x == 0:
        raise ValueError("fit: the dataset is empty (x has 0 examples).")
    return n_x


def _check_batch_size(batch_size: int | None, n: int) -> int:
    if batch_size is None:
        return min(32, n)
    if (
        not isinstance(batch_size, (int, np.integer))
        or isinstance(batch_size, bool)
        or batch_size <= 0
    ):
        raise ValueError(f"fit: batch_size must be a positive integer, got {batch_size!r}.")
    if batch_size > n:
        raise ValueError(
            f"fit: batch_size {batch_size} is larger than the dataset ({n} examples). "
            f"The rule: 1 <= batch_size <= number of examples. Use batch_size={n} for "
            "full-batch training, or batch_size=None for min(32, n)."
        )
    return int(batch_size)


def _input_spec(x: Any) -> Any:
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct((None, *a.shape[1:]), a.dtype), x)


def _take(data: Any, index: jax.Array | slice) -> Any:
    return jax.tree.map(lambda a: a[index], data)


@functools.lru_cache(maxsize=64)
def _epoch_program(
    net: Layer,
    loss: Loss,
    optimizer: optax.GradientTransformation,
    metrics: tuple[tuple[str, Metric], ...],
    n: int,
    batch_size: int,
    shuffle: bool,
) -> Callable:
    """One compiled epoch: shuffle on the device, scan over full batches, then the rest."""
    step = _logged_step(net, loss, optimizer, metrics)
    full, rest = divmod(n, batch_size)

    def epoch(ts: TrainState, x: Any, y: Any) -> tuple[TrainState, dict[str, jax.Array]]:
        shuffle_key = jax.random.fold_in(jax.random.fold_in(ts.key, _SHUFFLE_STREAM), ts.step)
        order = jax.random.permutation(shuffle_key, n) if shuffle else jnp.arange(n)

        def body(ts, index):
            return step(ts, (_take(x, index), _take(y, index)))

        ts, logs = jax.lax.scan(body, ts, order[: full * batch_size].reshape(full, batch_size))
        totals = jax.tree.map(lambda v: jnp.sum(v) * batch_size, logs)
        if rest:
            index = order[full * batch_size :]
            ts, last = step(ts, (_take(x, index), _take(y, index)))
            totals = jax.tree.map(lambda t, v: t + v * rest, totals, last)
        return ts, jax.tree.map(lambda t: t / n, totals)

    return jax.jit(epoch, donate_argnums=(0,))


def fit(
    net: Layer,
    x: Any,
    y: Any,
    *,
    loss: str | Loss,
    optimizer: optax.GradientTransformation,
    epochs: int = 1,
    batch_size: int | None = None,
    shuffle: bool = True,
    metrics: Sequence[str | Metric] = (),
    key: jax.Array | int | None = None,
    train_state: TrainState | None = None,
    verbose: int = 0,
) -> FitResult:
    """Trains ``net`` on ``(x, y)`` for ``epochs`` passes, like Keras's ``model.fit``.

    Args:
        net: the model.
        x: inputs, ``[n, ...]`` (or a tuple of arrays for several inputs).
        y: targets, ``[n, ...]`` (or a tuple for several outputs).
        loss: a loss function or name ("mse", "binary_crossentropy", ...).
        optimizer: an optax optimizer, e.g. ``optax.sgd(0.01)``.
        epochs: the number of passes over the data (0 trains nothing).
        batch_size: examples per step; None means ``min(32, n)``.
        shuffle: reshuffle the examples every epoch (on the device).
        metrics: metric functions or names, logged per epoch.
        key: key or integer seed for init, shuffling and dropout (default 0).
            Ignored for init when ``train_state`` is given.
        train_state: continue from this state (e.g. a previous fit's
            ``result.train_state``) instead of initialising.
        verbose: 1 prints one line per epoch; 0 prints nothing.

    Returns:
        A :class:`FitResult`: ``result.params``, ``result.state``,
        ``result.opt_state``, ``result.train_state`` and ``result.history``
        (``{"loss": [...], <metric>: [...]}``, one value per epoch).

    Example:
        >>> import numpy as np, optax, funcnet as fn
        >>> x = np.array([[-1.0], [0.0], [1.0], [2.0], [3.0], [4.0]]); y = 2 * x - 1
        >>> result = fn.fit(fn.Dense(1), x, y, loss="mse", optimizer=optax.sgd(0.05), epochs=200)
        >>> round(float(fn.predict(fn.Dense(1), result.params, result.state, np.array([[10.0]]))[0, 0]))
        19
    """
    loss_fn = get_loss(loss)
    metric_fns = _resolve_metrics(metrics)
    if not isinstance(epochs, (int, np.integer)) or isinstance(epochs, bool) or epochs < 0:
        raise ValueError(f"fit: epochs must be an integer >= 0, got {epochs!r}.")
    x, y = _as_arrays(x), _as_arrays(y)
    n = _check_data(x, y)
    batch_size = _check_batch_size(batch_size, n)
    if train_state is None:
        train_state = init_train_state(net, optimizer, _input_spec(x), key=key)
    epoch = _epoch_program(net, loss_fn, optimizer, metric_fns, n, batch_size, shuffle)
    history: History = {"loss": [], **{name: [] for name, _ in metric_fns}}
    for i in range(epochs):
        train_state, logs = epoch(train_state, x, y)
        logs = jax.device_get(logs)
        for name, value in logs.items():
            history[name].append(float(value))
        if verbose:
            text = " - ".join(f"{k}: {float(v):.4f}" for k, v in logs.items())
            print(f"Epoch {i + 1}/{epochs} - {text}")
    return FitResult(train_state, history)


@functools.lru_cache(maxsize=64)
def _predict_program(net: Layer) -> Callable:
    def forward(params, state, x):
        return net.apply(params, state, x, train=False)[0]

    return jax.jit(forward)


def _batches(n: int, batch_size: int | None) -> list[slice]:
    size = n if batch_size is None else max(1, int(batch_size))
    return [slice(i, min(i + size, n)) for i in range(0, n, size)] or [slice(0, 0)]


def predict(
    net: Layer, params: Params, state: State, x: Any, *, batch_size: int | None = None
) -> Any:
    """The model's outputs for ``x`` in inference mode (``train=False``).

    Args:
        net: the model.
        params, state: from ``init`` or ``fit`` (``result.params, result.state``).
        x: inputs, ``[n, ...]``.
        batch_size: split the computation into batches of this size (default: one batch).

    Example:
        >>> import jax, numpy as np, funcnet as fn
        >>> net = fn.Dense(2)
        >>> _, params, state = net.init(jax.random.key(0), (None, 3))
        >>> fn.predict(net, params, state, np.ones((4, 3), np.float32)).shape
        (4, 2)
    """
    x = _as_arrays(x)
    n = _num_examples("x", x)
    forward = _predict_program(net)
    parts = [forward(params, state, _take(x, s)) for s in _batches(n, batch_size)]
    if len(parts) == 1:
        return parts[0]
    return jax.tree.map(lambda *p: jnp.concatenate(p), *parts)


def evaluate(
    net: Layer,
    params: Params,
    state: State,
    x: Any,
    y: Any,
    *,
    loss: str | Loss,
    metrics: Sequence[str | Metric] = (),
    batch_size: int | None = None,
) -> dict[str, float]:
    """The loss and metrics of the model on ``(x, y)``, in inference mode.

    Returns:
        ``{"loss": value, <metric>: value, ...}``, each a mean over all examples.

    Example:
        >>> import jax, numpy as np, funcnet as fn
        >>> net = fn.Dense(1, w_init=jax.nn.initializers.ones)
        >>> _, params, state = net.init(jax.random.key(0), (None, 1))
        >>> fn.evaluate(net, params, state, np.ones((4, 1), np.float32), np.zeros((4, 1)), loss="mse")
        {'loss': 1.0}
    """
    loss_fn = get_loss(loss)
    metric_fns = _resolve_metrics(metrics)
    x, y = _as_arrays(x), _as_arrays(y)
    n = _check_data(x, y)
    forward = _predict_program(net)
    totals: dict[str, float] = {}
    for s in _batches(n, batch_size):
        predictions, targets = forward(params, state, _take(x, s)), _take(y, s)
        count = s.stop - s.start
        values = {"loss": loss_fn(predictions, targets)}
        values.update({name: metric(predictions, targets) for name, metric in metric_fns})
        for name, value in values.items():
            totals[name] = totals.get(name, 0.0) + float(value) * count
    return {name: total / n for name, total in totals.items()}
