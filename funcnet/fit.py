"""``fit``: Keras-style training on a compiled engine.

How an epoch runs, for in-memory arrays:

* The data goes to the device once. Each epoch's order is a
  ``jax.random.permutation`` computed on the device.
* The epoch's full batches run as compiled chunks of ``steps_per_execution``
  steps (default: the whole epoch in one chunk). A chunk is a ``lax.scan``
  over steps, each gathering its batch from the device-resident arrays, so no
  data crosses from the host. Callbacks and the progress bar run between
  chunks.
* The last partial batch is kept, as in Keras: one smaller step at the end of
  the epoch. Its size is the same every epoch, so it compiles once and never
  causes a recompile.
* ``loop="auto"`` picks how steps run: a ``lax.scan`` (fastest for dense
  models), or, on XLA:CPU for models with convolutions, a Python loop of
  jitted steps, because XLA:CPU compiles and runs convolutions inside a
  ``scan`` far slower than the same steps called one by one (measured in
  ``bench/README.md``).
* A non-finite loss or gradient is caught inside the compiled loop: with
  ``on_nonfinite="stop"`` (the default) the train state stays as it was
  before that step and training stops with a message naming the epoch and
  step; with ``"skip"``, that update is skipped and training goes on (as
  ``optax.apply_if_finite`` does).

Data that does not fit in memory is an iterable of ``(x, y)`` batches; it is
moved to the device ahead of use by a background thread and each batch runs
one jitted step.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from funcnet.cache import enable_compilation_cache
from funcnet.callbacks import Callback, Run, TerminateOnNaN, as_callback
from funcnet.checkpoint_manager import checkpoint_callback, resume_fit
from funcnet.core import Layer
from funcnet.data import (
    as_arrays,
    batch_signature,
    check_batch_size,
    check_pair,
    describe_signature,
    limit,
    prefetch_to_device,
    split_validation,
    take,
)
from funcnet.inference import eval_program, evaluate_arrays
from funcnet.losses import Loss, get_loss, sparse_categorical_crossentropy
from funcnet.metrics import Metric, get_metric
from funcnet.progress import Progress
from funcnet.sharding import Layout, ParamRule
from funcnet.sharding import layout as make_layout
from funcnet.train import History, TrainState, as_key, init_train_state, train_step_with_logs

# Shuffling draws from its own stream of the run's key, apart from the
# per-step keys fold_in(key, step) that stochastic layers get.
_SHUFFLE_STREAM = 0x5EED

LOOPS = ("auto", "scan", "python")
NONFINITE = ("stop", "skip")


class FitResult(NamedTuple):
    """What :func:`fit` returns.

    Attributes:
        train_state: the final :class:`TrainState` (pass it to ``fit`` again to continue).
        history: per-epoch logs, ``{"loss": [...], "val_loss": [...], <metric>: [...]}``.
        stop_reason: why training ended early (a callback's message), or None.
    """

    train_state: TrainState
    history: History
    stop_reason: str | None = None

    @property
    def params(self) -> Any:
        return self.train_state.params

    @property
    def state(self) -> Any:
        return self.train_state.state

    @property
    def opt_state(self) -> Any:
        return self.train_state.opt_state


class Carry(NamedTuple):
    """What the compiled loop threads from step to step besides the train state."""

    halted: jax.Array  # a non-finite step has stopped updates (on_nonfinite="stop")
    first_bad: jax.Array  # index within the epoch of the first non-finite step, or -1
    sums: dict[str, jax.Array]  # logs summed over examples of the applied steps
    examples: jax.Array  # examples in the applied steps


def empty_carry(log_names: Sequence[str]) -> Carry:
    zero = jnp.zeros((), jnp.float32)
    return Carry(
        jnp.zeros((), bool), jnp.full((), -1, jnp.int32), {k: zero for k in log_names}, zero
    )


def steps_function(
    net: Layer,
    loss: Loss,
    optimizer: optax.GradientTransformation,
    metrics: tuple[tuple[str, Metric], ...],
    on_nonfinite: str,
    layout: Layout | None = None,
) -> Callable:
    """``(ts, carry, x, y, index[k, b], first) -> (ts, carry)``: ``k`` steps in a ``lax.scan``.

    Step ``i`` trains on the examples ``index[i]`` of the device-resident
    ``x`` and ``y``; ``first`` is the index of the first step within the epoch.
    With ``index=None``, ``x`` and ``y`` are one batch, trained on as they are
    (a stream's batch, already split over the mesh: gathering rows from it
    would all-gather it). A ``layout`` (funcnet.sharding) splits each batch
    over the mesh's data axis and keeps the train state in its layout.
    """
    step = train_step_with_logs(net, loss, optimizer, metrics, layout)

    def run(ts, carry, x, y, index, first):
        def body(state, row):
            ts, carry, i = state
            batch = (x, y) if row is None else (take(x, row), take(y, row))
            new_ts, logs, finite = step(ts, batch)
            apply = finite & ~carry.halted if on_nonfinite == "stop" else finite
            ts = jax.tree.map(lambda new, old: jnp.where(apply, new, old), new_ts, ts)
            rows = jax.tree.leaves(batch[0])[0].shape[0]
            size = jnp.where(apply, rows, 0).astype(jnp.float32)
            carry = Carry(
                halted=carry.halted | ~finite if on_nonfinite == "stop" else carry.halted,
                first_bad=jnp.where(~finite & (carry.first_bad < 0), i, carry.first_bad),
                sums={
                    k: carry.sums[k] + size * jnp.where(apply, v, 0).astype(jnp.float32)
                    for k, v in logs.items()
                },
                examples=carry.examples + size,
            )
            return (ts, carry, i + 1), None

        length = 1 if index is None else None
        (ts, carry, _), _ = jax.lax.scan(body, (ts, carry, first), index, length=length)
        return ts, carry

    return run


@functools.lru_cache(maxsize=64)
def _steps_program(
    net: Layer,
    loss: Loss,
    optimizer: optax.GradientTransformation,
    metrics: tuple[tuple[str, Metric], ...],
    on_nonfinite: str,
    layout: Layout | None = None,
) -> Callable:
    """:func:`steps_function`, jitted, with the train state's buffers donated."""
    run = steps_function(net, loss, optimizer, metrics, on_nonfinite, layout)
    return jax.jit(run, donate_argnums=(0,))


@functools.partial(jax.jit, static_argnums=(2, 3))
def epoch_order(key: jax.Array, step: jax.Array, n: int, shuffle: bool) -> jax.Array:
    if not shuffle:
        return jnp.arange(n, dtype=jnp.int32)
    shuffle_key = jax.random.fold_in(jax.random.fold_in(key, _SHUFFLE_STREAM), step)
    return jax.random.permutation(shuffle_key, n).astype(jnp.int32)


def _contains_convolution(net: Layer, ts: TrainState, x: Any) -> bool:
    """Whether the model's forward pass has a convolution (searched in its jaxpr)."""
    sample = jax.tree.map(lambda a: jax.ShapeDtypeStruct((1, *a.shape[1:]), a.dtype), x)
    jaxpr = jax.make_jaxpr(lambda p, s, x: net.apply(p, s, x)[0])(ts.params, ts.state, sample)

    def search(jaxpr) -> bool:
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "conv_general_dilated":
                return True
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                if search(sub):
                    return True
        return False

    return search(jaxpr.jaxpr)


def _resolve_loop(loop: str, net: Layer, ts: TrainState, x: Any) -> str:
    if loop != "auto":
        return loop
    if jax.default_backend() == "cpu" and _contains_convolution(net, ts, x):
        return "python"
    return "scan"


def _check_targets(loss: Loss, net: Layer, ts: TrainState, x: Any, y: Any) -> None:
    """Catches labels outside the model's classes before any compile."""
    base = getattr(loss, "func", loss)
    if base is not sparse_categorical_crossentropy or not jnp.issubdtype(y.dtype, jnp.integer):
        return
    sample = jax.tree.map(lambda a: jax.ShapeDtypeStruct((1, *a.shape[1:]), a.dtype), x)
    out = jax.eval_shape(lambda p, s, x: net.apply(p, s, x)[0], ts.params, ts.state, sample)
    classes = out.shape[-1]
    low, high = int(jnp.min(y)), int(jnp.max(y))
    if low < 0 or high >= classes:
        raise ValueError(
            f"fit: labels must be class indices in [0, {classes}) for a model with {classes} "
            f"outputs, found labels from {low} to {high}. Give the last layer as many units as "
            "there are classes, or re-encode the labels."
        )


def _check_options(epochs: Any, loop: str, on_nonfinite: str, steps_per_execution: Any) -> None:
    if not isinstance(epochs, (int, np.integer)) or isinstance(epochs, bool) or epochs < 0:
        raise ValueError(f"fit: epochs must be an integer >= 0, got {epochs!r}.")
    if loop not in LOOPS:
        raise ValueError(f"fit: loop must be one of {', '.join(LOOPS)}, got {loop!r}.")
    if on_nonfinite not in NONFINITE:
        raise ValueError(
            f"fit: on_nonfinite must be one of {', '.join(NONFINITE)}, got {on_nonfinite!r}."
        )
    if steps_per_execution is not None and (
        not isinstance(steps_per_execution, (int, np.integer)) or steps_per_execution < 1
    ):
        raise ValueError(
            f"fit: steps_per_execution must be a positive integer or None, got {steps_per_execution!r}."
        )


def _resolve_verbose(verbose: int | str) -> int:
    if verbose == "auto":
        return 1 if sys.stderr is not None and sys.stderr.isatty() else 0
    if verbose not in (0, 1, 2):
        raise ValueError(f"fit: verbose must be 0, 1, 2 or 'auto', got {verbose!r}.")
    return int(verbose)


def _is_batch_stream(x: Any, y: Any) -> bool:
    if y is not None:
        return False
    # A tuple stays "several input arrays"; a list or any other iterable is a stream.
    return isinstance(x, Iterable) and not isinstance(x, (np.ndarray, jax.Array, tuple, dict))


def fit(
    net: Layer,
    x: Any,
    y: Any = None,
    *,
    loss: str | Loss,
    optimizer: optax.GradientTransformation,
    epochs: int = 1,
    batch_size: int | None = None,
    shuffle: bool = True,
    metrics: Sequence[str | Metric] = (),
    key: jax.Array | int | None = None,
    train_state: TrainState | None = None,
    checkpoint: Any = None,
    resume: Any = False,
    validation_data: tuple[Any, Any] | None = None,
    validation_split: float = 0.0,
    callbacks: Sequence[Any] = (),
    verbose: int | str = "auto",
    steps_per_execution: int | None = None,
    steps_per_epoch: int | None = None,
    loop: str = "auto",
    on_nonfinite: str = "stop",
    prefetch: int = 2,
    mesh: Mesh | Sequence[Any] | None = None,
    data_axis: str = "data",
    param_sharding: str | ParamRule | None = None,
) -> FitResult:
    """Trains ``net`` on ``(x, y)`` for ``epochs`` passes, like Keras's ``model.fit``.

    Args:
        net: the model.
        x: inputs ``[n, ...]`` (a tuple of arrays for several inputs), or an
            iterable of ``(x, y)`` batches for data that does not fit in memory
            (then leave ``y`` as None).
        y: targets ``[n, ...]`` (a tuple for several outputs).
        loss: a loss function or name ("mse", "binary_crossentropy", ...).
        optimizer: an optax optimizer, e.g. ``optax.sgd(0.01)``.
        epochs: passes over the data (0 trains nothing).
        batch_size: examples per step; None means ``min(32, n)``. Must not
            exceed the number of examples.
        shuffle: reshuffle the examples every epoch, on the device.
        metrics: metric functions or names, logged per epoch (on the device).
        key: key or integer seed for init, shuffling and dropout (default 0).
        train_state: continue from this state (e.g. ``result.train_state``)
            instead of initialising. Its buffers are donated: do not reuse it.
        checkpoint: a :class:`~funcnet.CheckpointManager` or a directory: save
            the train state and history there after every epoch (see
            ``docs/checkpoints.md``).
        resume: True continues from ``checkpoint``'s newest checkpoint; a
            manager, directory or checkpoint file continues from there. A
            new or empty directory starts afresh. ``epochs`` is the total:
            a run saved after 5 epochs, resumed with ``epochs=10``, trains 5
            more, exactly as if it had never stopped; the history continues.
        validation_data: ``(x_val, y_val)`` evaluated after every epoch
            (logged as ``val_loss`` and ``val_<metric>``).
        validation_split: hold out this last fraction of ``(x, y)`` (taken
            before shuffling, as Keras does) as validation data.
        callbacks: :class:`~funcnet.callbacks.Callback` objects, objects with
            ``on_epoch_end(epoch, logs)``, or functions ``f(epoch, logs)``.
        verbose: 0 silent, 1 a progress bar, 2 one line per epoch; "auto" (the
            default) is 1 when stderr is a terminal and 0 otherwise (logs, pipes, CI).
        steps_per_execution: steps per compiled chunk (None: a whole epoch);
            smaller chunks update the progress bar more often.
        steps_per_epoch: for an iterator of batches, the batches per epoch
            (None: one pass over the iterable per epoch).
        loop: "scan", "python" (a Python loop of jitted steps) or "auto".
        on_nonfinite: "stop" (keep the last finite state and stop) or "skip"
            (skip non-finite updates and go on).
        prefetch: batches of a stream moved to the device ahead of use.
        mesh: data parallelism over a ``jax.sharding.Mesh`` or a list of
            devices (see ``docs/data-parallel.md``). Each batch is split over
            the data axis, the train state replicated, XLA adds the collectives.
            ``batch_size`` must be a multiple of the data axis' size ``d``
            (None: ``min(32, n)`` rounded down to one); the last partial batch
            of an epoch is trimmed to a multiple of ``d`` (at most ``d - 1``
            examples, different ones each epoch, sit out). In-memory arrays
            are replicated on every device (the same on every process); a
            stream yields this process's share of each batch (see
            :func:`funcnet.distributed.process_share`). Logs and the progress
            bar come from process 0 only.
        data_axis: the mesh axis the batch is split over.
        param_sharding: None (replicated), ``"fsdp"`` or :func:`funcnet.fsdp`
            (large leaves sharded over the data axis), or a rule
            ``rule(path, leaf, mesh, data_axis) -> PartitionSpec``.

    Returns:
        A :class:`FitResult`: ``result.params``, ``result.state``,
        ``result.opt_state``, ``result.train_state``, ``result.history``
        (one value per epoch for each log) and ``result.stop_reason``.

    Example:
        >>> import numpy as np, optax, funcnet as fn
        >>> x = np.array([[-1.0], [0.0], [1.0], [2.0], [3.0], [4.0]]); y = 2 * x - 1
        >>> result = fn.fit(fn.Dense(1), x, y, loss="mse", optimizer=optax.sgd(0.05), epochs=200)
        >>> round(float(fn.predict(fn.Dense(1), result.params, result.state, np.array([[10.0]]))[0, 0]))
        19
    """
    loss_fn = get_loss(loss)
    metric_fns = tuple(get_metric(m) for m in metrics)
    _check_options(epochs, loop, on_nonfinite, steps_per_execution)
    verbose = _resolve_verbose(verbose)
    placement = make_layout(mesh, data_axis, param_sharding, "fit")
    if placement is not None and jax.process_index() != 0:
        verbose = 0  # one progress bar per run, not one per process
    enable_compilation_cache()
    if _is_batch_stream(x, y):
        if validation_split:
            raise ValueError(
                "fit: validation_split needs in-memory arrays; with a stream of batches pass "
                "validation_data=(x_val, y_val)."
            )
        stream = _StreamEngine(net, loss_fn, optimizer, metric_fns, on_nonfinite, placement)
        stream.prepare_stream(x, epochs, steps_per_epoch, prefetch, key, train_state)
        engine: _Engine = stream
    else:
        if y is None:
            raise ValueError(
                "fit: y is missing. Pass targets as fit(net, x, y, ...), or an iterable of "
                "(x, y) batches as x."
            )
        x, y = as_arrays(x), as_arrays(y)
        if validation_split:
            if validation_data is not None:
                raise ValueError("fit: give validation_data or validation_split, not both.")
            x, y, x_val, y_val = split_validation(x, y, validation_split)
            validation_data = (x_val, y_val)
        engine = _ArrayEngine(net, loss_fn, optimizer, metric_fns, on_nonfinite, placement)
        engine.prepare_arrays(
            x, y, batch_size, shuffle, steps_per_execution, loop, key, train_state
        )
    validator = _validator(net, loss_fn, metric_fns, validation_data, batch_size)
    engine.ts, initial_epoch, history = resume_fit(
        resume, checkpoint, engine.ts, net, engine.input_spec, train_state is not None
    )
    saver = checkpoint_callback(checkpoint, net, engine.input_spec)
    hooks = [*callbacks, saver] if saver is not None else callbacks  # last: sees every log
    return _train(engine, epochs, hooks, on_nonfinite, verbose, validator, initial_epoch, history)


def _validator(
    net: Layer,
    loss: Loss,
    metrics: tuple[tuple[str, Metric], ...],
    validation_data: tuple[Any, Any] | None,
    batch_size: int | None,
) -> Callable[[TrainState], dict[str, float]] | None:
    if validation_data is None:
        return None
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
        raise ValueError("fit: validation_data must be a pair (x_val, y_val).")
    x_val, y_val = as_arrays(validation_data[0]), as_arrays(validation_data[1])
    n_val = check_pair("fit (validation_data)", x_val, y_val)
    program = eval_program(net, loss, metrics)
    size = min(batch_size or 256, n_val)

    def validate(ts: TrainState) -> dict[str, float]:
        logs = evaluate_arrays(program, ts.params, ts.state, x_val, y_val, n_val, size)
        return {f"val_{name}": value for name, value in logs.items()}

    return validate


def _train(
    engine: _Engine,
    epochs: int,
    callbacks: Sequence[Any],
    on_nonfinite: str,
    verbose: int,
    validator: Callable[[TrainState], dict[str, float]] | None,
    initial_epoch: int = 0,
    history: History | None = None,
) -> FitResult:
    names = [*engine.log_names, *(f"val_{n}" for n in engine.log_names if validator)]
    history = {**{name: [] for name in names}, **(history or {})}
    run = Run(train_state=engine.ts, history=history, epochs=epochs)
    hooks: list[Callback] = [as_callback(c) for c in callbacks]
    if on_nonfinite == "stop" and not any(isinstance(c, TerminateOnNaN) for c in hooks):
        hooks.insert(0, TerminateOnNaN())
    for hook in hooks:
        hook.set_run(run)
    for hook in hooks:
        hook.on_train_begin()
    progress = Progress(verbose, epochs, engine.steps_per_epoch)
    try:
        for epoch in range(initial_epoch, epochs):
            run.epoch = epoch
            engine.ts = run.train_state
            logs, first_bad = engine.run_epoch(epoch, progress)
            run.train_state = engine.ts
            run.extra["nonfinite"] = None if first_bad < 0 else (epoch, first_bad)
            if validator is not None:
                logs.update(validator(run.train_state))
            for hook in hooks:
                hook.on_epoch_end(epoch, logs)
            for name, value in logs.items():
                run.history.setdefault(name, []).append(value)
            progress.epoch_done(epoch, logs)
            if run.stop_training:
                break
        for hook in hooks:
            hook.on_train_end()
    finally:
        progress.close(run.stop_reason)
    return FitResult(run.train_state, run.history, run.stop_reason)


class _Engine:
    """Runs epochs of training steps; ``ts`` is the current train state."""

    ts: TrainState
    steps_per_epoch: int | None = None

    def __init__(
        self,
        net: Layer,
        loss: Loss,
        optimizer: optax.GradientTransformation,
        metrics: tuple[tuple[str, Metric], ...],
        on_nonfinite: str,
        layout: Layout | None = None,
    ):
        self.net, self.loss, self.optimizer, self.metrics = net, loss, optimizer, metrics
        self.layout = layout
        self.program = _steps_program(net, loss, optimizer, metrics, on_nonfinite, layout)
        self.log_names = ("loss", *(name for name, _ in metrics))

    def _start(self, key: Any, train_state: TrainState | None, x: Any) -> None:
        self.input_spec = jax.tree.map(
            lambda a: jax.ShapeDtypeStruct((None, *a.shape[1:]), a.dtype), x
        )
        if train_state is None:
            spec = jax.tree.map(lambda a: jax.ShapeDtypeStruct((None, *a.shape[1:]), a.dtype), x)
            train_state = init_train_state(self.net, self.optimizer, spec, key=as_key(key))
        if self.layout is not None:
            train_state = self.layout.place_state(train_state)
        self.ts = train_state

    def _finish(self, carry: Carry) -> tuple[dict[str, float], int]:
        carry = jax.device_get(carry)
        count = float(carry.examples)
        logs = {k: (float(v) / count if count else float("nan")) for k, v in carry.sums.items()}
        return logs, int(carry.first_bad)

    def run_epoch(self, epoch: int, progress: Progress) -> tuple[dict[str, float], int]:
        raise NotImplementedError


class _ArrayEngine(_Engine):
    """In-memory arrays on the device, shuffled there, run in compiled chunks."""

    def prepare_arrays(
        self,
        x: Any,
        y: Any,
        batch_size: int | None,
        shuffle: bool,
        steps_per_execution: int | None,
        loop: str,
        key: Any,
        train_state: TrainState | None,
    ) -> None:
        self.n = check_pair("fit", x, y)
        self.batch_size = check_batch_size(batch_size, self.n)
        if self.layout is not None:
            self.batch_size = self.layout.fit_batch_size(batch_size, self.batch_size, self.n)
            self.x, self.y = self.layout.place_data((x, y))
        else:
            self.x, self.y = jax.device_put((x, y))
        self.shuffle = shuffle
        self._start(key, train_state, x)
        _check_targets(self.loss, self.net, self.ts, x, y)
        self.loop = _resolve_loop(loop, self.net, self.ts, x)
        self.full, self.rest = divmod(self.n, self.batch_size)
        if self.layout is not None:
            self.rest -= self.rest % self.layout.size  # every device gets the same share
        self.steps_per_epoch = self.full + (1 if self.rest else 0)
        chunk = self.full if steps_per_execution is None else min(steps_per_execution, self.full)
        self.chunk = 1 if self.loop == "python" else chunk

    def run_epoch(self, epoch: int, progress: Progress) -> tuple[dict[str, float], int]:
        order = epoch_order(self.ts.key, self.ts.step, self.n, self.shuffle)
        rows = order[: self.full * self.batch_size].reshape(self.full, self.batch_size)
        carry = empty_carry(self.log_names)
        ts = self.ts
        done = 0
        while done < self.full:
            k = min(self.chunk, self.full - done)
            ts, carry = self.program(ts, carry, self.x, self.y, rows[done : done + k], done)
            done += k
            if progress.bar is not None:
                progress.steps_done(epoch, k)
        if self.rest:
            start = self.full * self.batch_size
            last = order[start : start + self.rest].reshape(1, self.rest)
            ts, carry = self.program(ts, carry, self.x, self.y, last, self.full)
            progress.steps_done(epoch, 1)
        self.ts = ts
        return self._finish(carry)


class _StreamEngine(_Engine):
    """An iterable of ``(x, y)`` batches, prefetched to the device, one jitted step each."""

    def prepare_stream(
        self,
        batches: Iterable[Any],
        epochs: int,
        steps_per_epoch: int | None,
        prefetch: int,
        key: Any,
        train_state: TrainState | None,
    ) -> None:
        one_shot = iter(batches) is batches
        if one_shot and epochs > 1 and steps_per_epoch is None:
            raise ValueError(
                "fit: a one-shot iterator of batches can be read only once; for several epochs "
                "pass steps_per_epoch (batches per epoch), or an iterable that can be iterated "
                "again (a list, or an object whose __iter__ starts over)."
            )
        self.source = batches
        self.prefetch = prefetch
        self.steps_per_epoch = steps_per_epoch
        # One prefetcher for a continuing stream, so batches read ahead are not lost.
        self.stream = (
            prefetch_to_device(self._placed(batches), prefetch) if steps_per_epoch else None
        )
        self.signature: Any = None
        self.pending_first = self._first_batch()
        self._start(key, train_state, self.pending_first[0])

    def _first_batch(self) -> Any:
        iterator = self._epoch_iterator()
        try:
            first = next(iterator)
        except StopIteration:
            raise ValueError("fit: the iterable of batches is empty.") from None
        self._current = iterator
        return self._as_batch(first, 0, 0)

    def _epoch_iterator(self) -> Any:
        if self.stream is not None:
            return limit(self.stream, self.steps_per_epoch)
        return prefetch_to_device(self._placed(self.source), self.prefetch)

    def _placed(self, batches: Iterable[Any]) -> Iterable[Any]:
        # With a mesh on one process, the prefetch thread also splits each batch over
        # the devices; across processes its device_put cannot take a global array,
        # so run_epoch assembles the global batch.
        if self.layout is None or jax.process_count() > 1:
            return batches
        return map(self.layout.try_place_batch, batches)

    def _as_batch(self, batch: Any, epoch: int, index: int) -> Any:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            what = (
                f"an array of shape {tuple(batch.shape)}"
                if hasattr(batch, "shape")
                else f"a {type(batch).__name__}"
            )
            raise ValueError(
                f"fit: batch {index + 1} of epoch {epoch + 1} is {what}; "
                "a stream must yield (x, y) pairs."
            )
        return tuple(batch)

    def run_epoch(self, epoch: int, progress: Progress) -> tuple[dict[str, float], int]:
        if self.pending_first is not None:
            iterator, first = self._current, [self.pending_first]
            self.pending_first = None
        else:
            iterator, first = self._epoch_iterator(), []
        carry = empty_carry(self.log_names)
        ts = self.ts
        odd: str | None = None
        steps = 0
        for index, batch in enumerate(_chain(first, iterator)):
            x, y = self._as_batch(batch, epoch, index)
            if self.layout is not None and not self.layout.is_placed((x, y)):
                where = f"fit: batch {index + 1} of epoch {epoch + 1}"
                x, y = self.layout.place_batch(where, (x, y))
            signature = batch_signature((x, y))
            if self.signature is None:
                self.signature = signature
                check_pair("fit", x, y)
            if odd is not None:
                raise ValueError(
                    f"fit: batch {index} of epoch {epoch + 1} has shapes {odd} but earlier "
                    f"batches had {describe_signature(self.signature)}. Every batch must have "
                    "the same shapes, except a smaller last batch of an epoch."
                )
            if signature != self.signature:
                odd = describe_signature(signature)
            ts, carry = self.program(ts, carry, x, y, None, steps)
            steps += 1
            progress.steps_done(epoch, 1)
        if steps == 0:
            raise ValueError(f"fit: the iterable of batches gave no batch in epoch {epoch + 1}.")
        self.ts = ts
        return self._finish(carry)


def _chain(first: list[Any], rest: Any) -> Any:
    yield from first
    yield from rest
