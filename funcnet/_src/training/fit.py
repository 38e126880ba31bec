"""``fit``: Keras-style training on a compiled engine.

``fit`` validates its arguments, builds an engine
(``funcnet._src.training.engine``) for in-memory arrays or for a stream of
batches, and runs epochs of it with validation, callbacks, checkpoints and a
progress display in between. How the engine runs an epoch, and why, is in
``docs/training.md``.
"""

from __future__ import annotations

import sys
import time
import types
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
import optax
from jax.sharding import Mesh

from funcnet._src.compilation_cache import enable_from_environment
from funcnet._src.core import Layer
from funcnet._src.losses import Loss, check_first_batch, crossentropy_kind, get_loss
from funcnet._src.metrics import Metric
from funcnet._src.parallel.sharding import Layout, ParamRule
from funcnet._src.parallel.sharding import layout as make_layout
from funcnet._src.training.arguments import (
    check_net,
    check_positive_int,
    get_metrics,
    get_optimizer,
)
from funcnet._src.training.callbacks import (
    Callback,
    ModelCheckpoint,
    Run,
    TerminateOnNaN,
    as_callback,
    injected_hyperparam,
)
from funcnet._src.training.data import (
    as_arrays,
    check_pair,
    example_spec,
    split_validation,
    take,
)
from funcnet._src.training.engine import (
    ArrayEngine,
    Engine,
    EpochResult,
    StreamEngine,
    Training,
    signature_of,
    value_range,
)
from funcnet._src.training.eval_program import eval_program, evaluate_arrays
from funcnet._src.training.inference import predict
from funcnet._src.training.keras_callbacks import BackupAndRestore
from funcnet._src.training.model_cache import ModelCache
from funcnet._src.training.precision import MixedPrecision, as_policy, check_loss_scale
from funcnet._src.training.programs import shared_jit
from funcnet._src.training.progress import Progress
from funcnet._src.training.resume import as_manager, resume_fit
from funcnet._src.training.sharded_eval import sharded_evaluator
from funcnet._src.training.step import History, NonFinite, TrainState, as_key, init_train_state

LOOPS = ("auto", "scan", "python")
NONFINITE = ("stop", "skip", "ignore")


class FitResult(NamedTuple):
    """What :func:`fit` returns.

    Attributes:
        train_state: the final :class:`TrainState` (pass it to ``fit`` again to continue).
        history: per-epoch logs, ``{"loss": [...], "val_loss": [...], <metric>: [...]}``.
        stop_reason: why training ended early (a callback's message), or None.
        nonfinite: the run's first step with a non-finite loss or gradient
            (a :class:`~funcnet.callbacks.NonFinite`: epoch, step, what), or None.
    """

    train_state: TrainState
    history: History
    stop_reason: str | None = None
    nonfinite: NonFinite | None = None

    @property
    def params(self) -> Any:
        return self.train_state.params

    @property
    def state(self) -> Any:
        return self.train_state.state

    @property
    def opt_state(self) -> Any:
        return self.train_state.opt_state


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


def _callback_list(callbacks: Any) -> list[Any]:
    """``callbacks`` as a list: a single callback (not in a list) is a list of one."""
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback) or callable(callbacks) or hasattr(callbacks, "on_epoch_end"):
        return [callbacks]
    if not isinstance(callbacks, Iterable) or isinstance(callbacks, (str, bytes, dict)):
        raise TypeError(
            f"fit: callbacks must be a list of callbacks, e.g. callbacks=[fn.callbacks."
            f"EarlyStopping(patience=3)], got {type(callbacks).__name__}: {callbacks!r:.80}."
        )
    return list(callbacks)


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
    optimizer: optax.GradientTransformation | str,
    epochs: int = 1,
    batch_size: int | None = None,
    shuffle: bool = True,
    metrics: str | Metric | Sequence[str | Metric] = (),
    key: jax.Array | int | None = None,
    train_state: TrainState | None = None,
    checkpoint: Any = None,
    resume: Any = False,
    validation_data: tuple[Any, Any] | None = None,
    validation_split: float = 0.0,
    callbacks: Any = (),
    verbose: int | str = "auto",
    steps_per_execution: int | None = None,
    steps_per_epoch: int | None = None,
    loop: str = "auto",
    on_nonfinite: str = "stop",
    prefetch: int = 2,
    mesh: Mesh | Sequence[Any] | None = None,
    data_axis: str = "data",
    param_sharding: str | ParamRule | None = None,
    mixed_precision: str | MixedPrecision | None = None,
    accumulate: int = 1,
) -> FitResult:
    """Trains ``net`` on ``(x, y)`` for ``epochs`` passes, like Keras's ``model.fit``.

    Args:
        net: the model.
        x: inputs ``[n, ...]`` (a tuple of arrays for several inputs), or an
            iterable of ``(x, y)`` batches for data that does not fit in memory
            (then leave ``y`` as None).
        y: targets ``[n, ...]`` (a tuple for several outputs).
        loss: a loss function or name ("mse", "binary_crossentropy", ...).
        optimizer: an optax optimizer, e.g. ``optax.sgd(0.01)``, or a Keras
            name ("sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta",
            "adamax", "nadam", "lion", "lamb") built with Keras 3's defaults
            (learning rate 0.01 for sgd, 0.001 for the others).
        epochs: passes over the data (0 trains nothing).
        batch_size: examples per step; None means ``min(32, n)``. Must not
            exceed the number of examples.
        shuffle: reshuffle the examples every epoch, on the device.
        metrics: metric functions or names (or a single one), logged per
            epoch (on the device).
        key: key or integer seed for init, shuffling and dropout (default 0).
        train_state: continue from this state (e.g. ``result.train_state``)
            instead of initialising. Its buffers are donated: do not reuse it.
        checkpoint: a :class:`~funcnet.CheckpointManager` or a directory: save
            the train state and history there after every epoch (see
            ``docs/checkpoints.md``). With several processes, process 0
            writes (after gathering sharded arrays) and the directory must be
            one every process sees.
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
            ``on_epoch_end(epoch, logs)``, or functions ``f(epoch, logs)``
            (a list, or a single one).
        verbose: 0 silent, 1 a progress bar, 2 one line per epoch; "auto" (the
            default) is 1 when stderr is a terminal and 0 otherwise (logs, pipes, CI).
        steps_per_execution: steps per compiled chunk (None: a whole epoch);
            smaller chunks update the progress bar more often.
        steps_per_epoch: for an iterator of batches, the batches per epoch
            (None: one pass over the iterable per epoch).
        loop: "scan", "python" (a Python loop of jitted steps) or "auto".
        on_nonfinite: "stop" (keep the last finite state and stop), "skip"
            (skip non-finite updates and go on), or "ignore" (no guard: apply
            every update; saves the guard's cost, a few percent on large models).
        prefetch: batches of a stream moved to the device ahead of use.
        mesh: data parallelism over a ``jax.sharding.Mesh`` or a list of
            devices (see ``docs/data-parallel.md``). Each batch is split over
            the data axis, the train state replicated, XLA adds the collectives.
            ``batch_size`` must be a multiple of the data axis' size ``d``
            (None: ``min(32, n)`` rounded down to one); the last partial batch
            of an epoch is trimmed to a multiple of ``d`` (at most ``d - 1``
            examples, different ones each epoch, sit out). In-memory arrays
            (the same on every process) are split over the data axis, each
            device holding ``1 / d`` of the examples; a
            stream yields this process's share of each batch (see
            :func:`funcnet.distributed.process_share`). Logs and the progress
            bar come from process 0 only.
        data_axis: the mesh axis the batch is split over.
        param_sharding: None (replicated), ``"fsdp"`` or :func:`funcnet.fsdp`
            (large leaves sharded over the data axis), or a rule
            ``rule(path, leaf, mesh, data_axis) -> PartitionSpec``.
        mixed_precision: None (float32), "mixed_bfloat16", "mixed_float16" or
            a :class:`~funcnet.MixedPrecision`: the model computes in bfloat16
            or float16, the params stay float32, the loss is float32; float16
            adds dynamic loss scaling, its scale kept in the train state (see
            ``docs/training.md``). Validation runs in float32.
        accumulate: micro-batches per optimizer update (gradient
            accumulation): each batch of ``batch_size`` examples is split
            into ``accumulate`` equal micro-batches, run one after another
            inside the compiled step, and one update applied with their mean
            gradient, so only one micro-batch's activations are in memory.
            ``batch_size`` stays the examples per update and must be a
            multiple of ``accumulate``.

    Returns:
        A :class:`FitResult`: ``result.params``, ``result.state``,
        ``result.opt_state``, ``result.train_state``, ``result.history``
        (one value per epoch for each log, and ``learning_rate`` when the
        optimizer exposes it through ``optax.inject_hyperparams``: the rate
        of the epoch's last update) and ``result.stop_reason``.

    Example:
        >>> import numpy as np, optax, funcnet as fn
        >>> x = np.array([[-1.0], [0.0], [1.0], [2.0], [3.0], [4.0]]); y = 2 * x - 1
        >>> result = fn.fit(fn.Dense(1), x, y, loss="mse", optimizer=optax.sgd(0.05), epochs=200)
        >>> round(float(fn.predict(fn.Dense(1), result.params, result.state, np.array([[10.0]]))[0, 0]))
        19
    """
    check_net(net, "fit")
    loss_fn = get_loss(loss)
    optimizer = get_optimizer(optimizer, "fit")
    metric_fns = get_metrics(metrics, "fit")
    _check_options(epochs, loop, on_nonfinite, steps_per_execution)
    check_positive_int("fit", "steps_per_epoch", steps_per_epoch)
    check_positive_int("fit", "accumulate", accumulate, allow_none=False)
    policy = as_policy(mixed_precision, "fit")
    hooks = [as_callback(c) for c in _callback_list(callbacks)]
    backups = [hook for hook in hooks if isinstance(hook, BackupAndRestore)]
    if len(backups) > 1:
        raise ValueError("fit: give at most one BackupAndRestore callback (one run, one backup).")
    if backups:
        checkpoint, resume = backups[0].take_over(checkpoint, resume, train_state is not None)
    verbose = _resolve_verbose(verbose)
    placement = make_layout(mesh, data_axis, param_sharding, "fit")
    if placement is not None and jax.process_index() != 0:
        verbose = 0  # one progress bar per run, not one per process
    enable_from_environment()  # the persistent cache only when asked for
    training = Training(
        net, loss_fn, optimizer, metric_fns, on_nonfinite, placement, policy, int(accumulate)
    )
    engine: Engine
    y_range = None
    if _is_batch_stream(x, y):
        if validation_split:
            raise ValueError(
                "fit: validation_split needs in-memory arrays; with a stream of batches pass "
                "validation_data=(x_val, y_val)."
            )
        stream = StreamEngine(
            training, x, epochs=epochs, steps_per_epoch=steps_per_epoch, prefetch=prefetch
        )
        input_spec = stream.input_spec
        ts, initial_epoch, history = _first_state(
            training, input_spec, key, train_state, resume, checkpoint
        )
        engine = stream
    else:
        if y is None:
            raise ValueError(
                "fit: y is missing. Pass targets as fit(net, x, y, ...), or an iterable of "
                "(x, y) batches as x."
            )
        # With a mesh, the data stays on the host until it is split over the devices.
        on_host = placement is not None
        given_y = y
        x, y = as_arrays(x, "fit", "x", host=on_host), as_arrays(y, "fit", "y", host=on_host)
        if validation_split:
            if validation_data is not None:
                raise ValueError("fit: give validation_data or validation_split, not both.")
            x, y, x_val, y_val = split_validation(x, y, validation_split)
            validation_data = (x_val, y_val)
            given_y = y
        check_pair("fit", x, y)
        # The targets' range is all their checks read: from the host copy when
        # there is one, so that checking costs no device work.
        if crossentropy_kind(loss_fn)[0] is not None and jax.process_count() == 1:
            y_range = value_range(given_y)
        input_spec = example_spec(x)
        ts, initial_epoch, history = _first_state(
            training, input_spec, key, train_state, resume, checkpoint
        )
        engine = ArrayEngine(
            training, x, y, batch_size=batch_size, shuffle=shuffle,
            steps_per_execution=steps_per_execution, loop=loop, like=ts, y_range=y_range,
        )  # fmt: skip
    _check_loss_inputs(training, ts, engine, x, y, batch_size, y_range)
    validator = _validator(net, loss_fn, metric_fns, validation_data, batch_size, ts, placement)
    if on_nonfinite == "stop" and not any(isinstance(c, TerminateOnNaN) for c in hooks):
        hooks.insert(0, TerminateOnNaN())
    saver = None
    if checkpoint is not None:
        saver = ModelCheckpoint(as_manager(checkpoint), net=net, input_shape=input_spec)
    names = [*training.log_names, *(f"val_{n}" for n in training.log_names if validator)]
    run = Run(train_state=ts, history={**{n: [] for n in names}, **(history or {})}, epochs=epochs)
    progress = Progress(verbose, epochs, engine.steps_per_epoch)
    logs_rate = _holds_learning_rate(ts.opt_state)
    # Several epochs per call of the compiled program when nothing needs the
    # host between them: no validation, checkpoint, display or callback
    # (TerminateOnNaN reads what the program reports), no learning rate to log.
    host_free = (
        validator is None
        and saver is None
        and verbose == 0
        and all(type(hook) is TerminateOnNaN for hook in hooks)
        # The program stops at a non-finite step only under "stop".
        and (on_nonfinite == "stop" or not hooks)
        and not logs_rate
    )
    most = getattr(engine, "max_epochs_per_call", 1) if host_free else 1
    _train(run, engine, hooks, saver, validator, progress, initial_epoch, most, logs_rate)
    return FitResult(run.train_state, run.history, run.stop_reason, run.nonfinite)


# A key from an integer seed in one compiled call: eagerly, jax.random.key is
# several dispatches (about a quarter of a fresh warm fit's own time). The
# implementation is read at each call, so a changed default is honoured.
_key_from_seed = jax.jit(jax.random.key, static_argnames="impl")


def _run_key(key: Any) -> jax.Array:
    """:func:`as_key` for ``fit``: the same key, an int32 seed's made by a compiled call."""
    seed = 0 if key is None else key
    if type(seed) is int and -(2**31) <= seed < 2**31:
        return _key_from_seed(seed, impl=jax.config.values["jax_default_prng_impl"])
    return as_key(key, "fit: key")


def _first_state(
    training: Training,
    input_spec: Any,
    key: Any,
    train_state: TrainState | None,
    resume: Any,
    checkpoint: Any,
) -> tuple[TrainState, int, History | None]:
    """The run's first train state (given, initialised or resumed), the epochs done, the history."""
    ts = train_state
    if ts is None:
        ts = init_train_state(
            training.net,
            training.optimizer,
            input_spec,
            key=_run_key(key),
            mixed_precision=training.policy,
        )
    else:
        check_loss_scale(training.policy, getattr(ts, "loss_scale", None), "fit")
    if training.layout is not None:
        ts = training.layout.place_state(ts)
    return resume_fit(resume, checkpoint, ts, training.net, input_spec, train_state is not None)


def _check_loss_inputs(
    training: Training,
    ts: TrainState,
    engine: Engine,
    x: Any,
    y: Any,
    batch_size: int | None,
    y_range: np.ndarray | None = None,
) -> None:
    """Once per run, outside the compiled programs: a cross-entropy's targets and predictions.

    Inside the epoch program the loss sees tracers and cannot look at values,
    so -1/+1 labels or logits given to a probability loss would train without
    a word. Only the cross-entropies are checked, on the first batch's
    predictions (one forward pass, one compiled program) and on every target
    of in-memory ``y`` (the first batch's of a stream). The target checks
    read only the targets' smallest and largest value, so ``y_range``
    (``[min, max]``) stands for in-memory ``y`` when given.
    """
    if crossentropy_kind(training.loss)[0] is None or jax.process_count() > 1:
        return
    if isinstance(engine, StreamEngine):
        if engine.pending is None:
            return
        x_first, y_first = engine.pending[1]
        predictions = predict(training.net, ts.params, ts.state, x_first)
        check_first_batch(training.loss, predictions, y_first)
        return
    size = min(batch_size or 32, jax.tree.leaves(x)[0].shape[0])
    if not all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(x)):
        x = take(x, slice(0, size))  # host data (a mesh's): only the first rows go to a device
    predictions = _first_rows_program(training.net, size)(ts.params, ts.state, x)
    check_first_batch(training.loss, predictions, y if y_range is None else y_range)


# The first-batch forward pass of the check above, one program per model and batch size.
_FIRST_ROWS: ModelCache[Any] = ModelCache()
# Per model: the signatures whose validation data has been traced through the model.
_TRACED: ModelCache[bool] = ModelCache()


def _first_rows_program(net: Layer, size: int) -> Any:
    """``(params, state, x) -> predictions`` for the first ``size`` rows of ``x``, sliced inside."""

    def build(weak_net: Layer) -> Any:
        def forward(params: Any, state: Any, x: Any) -> Any:
            return weak_net.apply(params, state, take(x, slice(0, size)), train=False)[0]

        return shared_jit(forward)

    return _FIRST_ROWS.get(net, ("first rows", size), build)


def _validator(
    net: Layer,
    loss: Loss,
    metrics: tuple[tuple[str, Metric], ...],
    validation_data: tuple[Any, Any] | None,
    batch_size: int | None,
    ts: TrainState,
    layout: Layout | None = None,
) -> Callable[[TrainState], dict[str, float]] | None:
    if validation_data is None:
        return None
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
        raise ValueError("fit: validation_data must be a pair (x_val, y_val).")
    # With a mesh, the data stays on the host until it is split over the devices.
    on_host = layout is not None
    x_val = as_arrays(validation_data[0], "fit", "validation_data's x", host=on_host)
    y_val = as_arrays(validation_data[1], "fit", "validation_data's y", host=on_host)
    n_val = check_pair("fit (validation_data)", x_val, y_val)
    program = eval_program(net, loss, metrics)
    size = min(batch_size or 256, n_val)
    # Traced on the first validation batch's shapes, so that data the model
    # cannot take fails before training, naming validation_data; once per
    # model and signature, as a warm fit traces nothing.
    first = (example_spec(x_val, batch=size), example_spec(y_val, batch=size))

    def trace(_: Layer) -> bool:
        try:
            program.trace(ts.params, ts.state, *first)
        except (ValueError, TypeError) as error:
            kind = TypeError if isinstance(error, TypeError) else ValueError
            raise kind(
                f"fit: validation_data does not fit the model: {error} The validation x and y "
                "must look like the training x and y (the same shape per example)."
            ) from error
        return True

    signature = ("validation", loss, metrics, signature_of((ts.params, ts.state, first)))
    _TRACED.get(net, signature, trace)

    if layout is not None:  # split over the devices, as the training data is
        split = sharded_evaluator(net, loss, metrics, layout, x_val, y_val, n_val, size)

    def validate(ts: TrainState) -> dict[str, float]:
        if layout is not None:
            return {f"val_{name}": value for name, value in split(ts.params, ts.state).items()}
        logs = evaluate_arrays(program, ts.params, ts.state, x_val, y_val, n_val, size)
        return {f"val_{name}": value for name, value in logs.items()}

    return validate


def _epoch_logs(hooks: Sequence[Callback], epoch: int, logs: dict[str, float]) -> None:
    """Adds the callbacks' own logs (``Callback.epoch_logs``) to ``logs``."""
    for hook in hooks:
        view = types.MappingProxyType(logs)
        for name, value in hook.epoch_logs(epoch, view).items():
            if name in logs:
                raise ValueError(
                    f"fit: the callback {type(hook).__name__} logs {name!r}, which is already in "
                    f"the logs ({', '.join(logs)}); return it under another name from epoch_logs."
                )
            logs[name] = float(value)


# Optimizer-state structure -> whether it holds an injected learning rate.
# Bounded: cleared when full (a process builds few optimizers).
_RATE_IN_STATE: dict[Any, bool] = {}


def _holds_learning_rate(opt_state: Any) -> bool:
    """Whether ``opt_state`` exposes a learning rate (``optax.inject_hyperparams``).

    A question about the state's structure, which a run never changes: so
    it is answered once per run, and from a cache per structure (the
    lookup walks the whole state, ~50 µs).
    """
    structure = jax.tree.structure(opt_state)
    known = _RATE_IN_STATE.get(structure)
    if known is None:
        known = injected_hyperparam(opt_state, "learning_rate") is not None
        if len(_RATE_IN_STATE) >= 64:
            _RATE_IN_STATE.clear()
        _RATE_IN_STATE[structure] = known
    return known


def _log_learning_rate(ts: TrainState, logs: dict[str, float]) -> None:
    """Adds the optimizer's learning rate to ``logs`` when ``optax.inject_hyperparams`` exposes it.

    The value in the optimizer state is the rate of the last update (a
    schedule's value at that step). A callback that logs it first
    (``LearningRateScheduler``) keeps its value.
    """
    rate = injected_hyperparam(ts.opt_state, "learning_rate")
    if rate is not None and "learning_rate" not in logs and np.ndim(rate) == 0:
        logs["learning_rate"] = float(np.asarray(rate))


# A call that runs several epochs returns within about this long, so that
# Ctrl-C and a stop are never far off even for epochs of long steps.
_SECONDS_PER_CALL = 0.25


def _epochs_next(left: int, most: int, seconds_per_epoch: float | None) -> int:
    """Epochs for the next call of the compiled program: one until an epoch has been timed."""
    if most == 1 or seconds_per_epoch is None:
        return 1
    return max(1, min(left, most, int(_SECONDS_PER_CALL / max(seconds_per_epoch, 1e-9))))


def _train(
    run: Run,
    engine: Engine,
    hooks: Sequence[Callback],
    saver: ModelCheckpoint | None,
    validator: Callable[[TrainState], dict[str, float]] | None,
    progress: Progress,
    initial_epoch: int,
    epochs_per_call: int = 1,
    logs_rate: bool = True,
) -> None:
    """Runs the epochs. ``run`` owns the train state: only this loop and the callbacks replace it.

    Each epoch: the engine trains from ``run.train_state`` and hands the new
    state back; validation and the callbacks' own logs complete the epoch's
    logs, which go to the history; then every callback sees them read-only,
    and last ``fit``'s checkpoint saves the state the callbacks leave.

    With ``epochs_per_call > 1`` (nothing needs the host between epochs)
    one call of the engine trains several epochs, and their logs then go
    through the same steps, epoch by epoch: the history is the same.
    """
    everyone = [*hooks, saver] if saver is not None else list(hooks)
    for hook in everyone:
        hook.set_run(run)
    for hook in everyone:
        hook.on_train_begin()
    try:
        epoch = initial_epoch
        seconds_per_epoch: float | None = None
        while epoch < run.epochs:
            count = _epochs_next(run.epochs - epoch, epochs_per_call, seconds_per_epoch)
            if count == 1:
                run.epoch = epoch
                for hook in everyone:
                    hook.on_epoch_begin(epoch, types.MappingProxyType({}))
            started = time.perf_counter()
            if count == 1:
                run.train_state, result = engine.run_epoch(run.train_state, epoch, progress)
                results = [result]
            else:
                run.train_state, results = engine.run_epochs(  # type: ignore[attr-defined]
                    run.train_state, epoch, count, progress
                )
            seconds_per_epoch = (time.perf_counter() - started) / len(results)
            for result in results:
                if count > 1:
                    run.epoch = epoch
                    for hook in everyone:
                        hook.on_epoch_begin(epoch, types.MappingProxyType({}))
                _end_epoch(run, result, hooks, everyone, validator, progress, epoch, logs_rate)
                epoch += 1
                if run.stop_training:
                    break
            if run.stop_training:
                break
        for hook in everyone:
            hook.on_train_end()
    finally:
        progress.close(run.stop_reason, run.epoch)


def _end_epoch(
    run: Run,
    result: EpochResult,
    hooks: Sequence[Callback],
    everyone: Sequence[Callback],
    validator: Callable[[TrainState], dict[str, float]] | None,
    progress: Progress,
    epoch: int,
    logs_rate: bool,
) -> None:
    """An epoch's logs completed (validation, callbacks' logs), recorded, shown to every callback."""
    if run.nonfinite is None:
        run.nonfinite = result.nonfinite
    logs = dict(result.logs)
    if validator is not None:
        logs.update(validator(run.train_state))
    _epoch_logs(hooks, epoch, logs)
    if logs_rate:
        _log_learning_rate(run.train_state, logs)
    for name, value in logs.items():
        run.history.setdefault(name, []).append(value)
    view = types.MappingProxyType(logs)
    for hook in everyone:
        hook.on_epoch_end(epoch, view)
    progress.epoch_done(epoch, logs)
