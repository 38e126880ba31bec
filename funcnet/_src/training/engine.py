"""The compiled training engine behind ``fit``: epochs of steps over arrays or streams.

For in-memory arrays the data goes to the device once and each epoch runs as
compiled chunks of steps (a ``lax.scan``, or a Python loop of jitted steps),
with the non-finite guard inside the compiled loop; a stream of batches runs
one jitted step per batch, prefetched to the device. How an epoch runs, and
why, is in ``docs/training.md``.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax

from funcnet._src.core import Layer
from funcnet._src.losses import Loss, sparse_categorical_crossentropy
from funcnet._src.metrics import Metric
from funcnet._src.parallel.sharding import Layout
from funcnet._src.training.data import (
    batch_signature,
    check_batch_size,
    check_pair,
    describe_signature,
    example_spec,
    limit,
    prefetch_to_device,
    take,
)
from funcnet._src.training.model_cache import ModelCache
from funcnet._src.training.precision import MixedPrecision
from funcnet._src.training.programs import shared_jit
from funcnet._src.training.progress import Progress
from funcnet._src.training.step import (
    NONFINITE_WHAT,
    NonFinite,
    TrainState,
    train_step_with_logs,
)

# Shuffling draws from its own stream of the run's key, apart from the
# per-step keys fold_in(key, step) that stochastic layers get.
_SHUFFLE_STREAM = 0x5EED


class Carry(NamedTuple):
    """What the compiled loop threads from step to step besides the train state."""

    first_bad: jax.Array  # int32: index within the epoch of the first non-finite step, or -1
    cause: jax.Array  # int32: what that step found non-finite, as NONFINITE_WHAT[cause]
    sums: dict[str, jax.Array]  # logs summed over examples of the applied steps
    examples: jax.Array  # examples in the applied steps


def empty_carry(log_names: Sequence[str]) -> Carry:
    zero = jnp.zeros((), jnp.float32)
    return Carry(
        jnp.full((), -1, jnp.int32), jnp.zeros((), jnp.int32), {k: zero for k in log_names}, zero
    )


class Training(NamedTuple):
    """What every compiled training program is built from (hashable: programs are cached by it)."""

    net: Layer
    loss: Loss
    optimizer: optax.GradientTransformation
    metrics: tuple[tuple[str, Metric], ...] = ()
    on_nonfinite: str = "stop"
    layout: Layout | None = None
    policy: MixedPrecision | None = None
    accumulate: int = 1

    @property
    def log_names(self) -> tuple[str, ...]:
        return ("loss", *(name for name, _ in self.metrics))


class EpochResult(NamedTuple):
    """What one epoch reports: its mean logs, and its first non-finite step (or None)."""

    logs: dict[str, float]
    nonfinite: NonFinite | None


def steps_function(training: Training) -> Callable:
    """``(ts, carry, x, y, index[k, b], first, halted=False) -> (ts, carry)``: ``k`` steps in a ``lax.scan``.

    Step ``i`` trains on the examples ``index[i]`` of the device-resident
    ``x`` and ``y``; ``first`` is the index of the first step within the epoch.
    With ``index=None``, ``x`` and ``y`` are one batch, trained on as they are
    (a stream's batch, already split over the mesh: gathering rows from it
    would all-gather it). A ``layout`` (``_src.parallel.sharding``) splits each batch
    over the mesh's data axis and keeps the train state in its layout; ``x``
    and ``y`` are then split over the devices too (``Layout.place_data``).

    The guard: with ``on_nonfinite="stop"`` no update is applied after the
    first non-finite step (``carry.first_bad`` is then set) nor at all when
    ``halted`` (a traced bool: ``fit_many``'s models that stopped in an
    earlier epoch), with ``"skip"`` only the non-finite steps' updates are
    dropped, and ``"ignore"`` applies every update.
    """
    net, loss, optimizer, metrics, on_nonfinite, layout, policy, accumulate = training
    step = train_step_with_logs(
        net,
        loss,
        optimizer,
        metrics,
        layout,
        guard=on_nonfinite != "ignore",
        policy=policy,
        accumulate=accumulate,
    )

    def run(ts, carry, x, y, index, first, halted=False):
        def body(state, row):
            ts, carry, i = state
            if row is None:
                batch = (x, y)
            elif layout is not None:  # x, y split over the devices (Layout.place_data)
                batch = layout.take_rows((x, y), row)
            else:
                batch = (take(x, row), take(y, row))
            allowed: Any = True
            if on_nonfinite == "stop":
                # One carried scalar says both "stopped" and where: first_bad >= 0.
                allowed = carry.first_bad < 0
                if halted is not False:
                    allowed = allowed & ~halted
            ts, logs, finite, cause, applied = step(ts, batch, allowed)
            rows = jax.tree.leaves(batch[0])[0].shape[0]
            # A step's logs count if its update was applied, or if it was
            # finite and allowed but skipped: a float16 overflow that the
            # loss scale absorbed, whose loss is still the batch's loss.
            counted = applied | (finite & allowed)
            size = jnp.where(counted, rows, 0).astype(jnp.float32)
            new_bad = ~finite & (carry.first_bad < 0)
            carry = Carry(
                first_bad=jnp.where(new_bad, i, carry.first_bad),
                cause=jnp.where(new_bad, cause, carry.cause),
                sums={
                    k: carry.sums[k] + size * jnp.where(counted, v, 0).astype(jnp.float32)
                    for k, v in logs.items()
                },
                examples=carry.examples + size,
            )
            return (ts, carry, i + 1), None

        length = 1 if index is None else None
        (ts, carry, _), _ = jax.lax.scan(body, (ts, carry, first), index, length=length)
        return ts, carry

    return run


# Every compiled program below closes over its model; kept per model, weakly.
_PROGRAMS: ModelCache[Any] = ModelCache()  # jitted functions


def steps_program(training: Training) -> Callable:
    """:func:`steps_function`, jitted, with the train state's buffers donated."""
    return _PROGRAMS.get(
        training.net,
        ("steps", training[1:]),
        lambda net: shared_jit(steps_function(training._replace(net=net)), donate_argnums=(0,)),
    )


def shuffles(shuffle: bool, n: int, batch_size: int) -> bool:
    """Whether an epoch is shuffled: not when one batch holds every example.

    Shuffling would then only reorder rows inside the batch, which changes
    nothing but the order of a sum, and its sort is most of a small model's
    compile time (hello: 222 ms of compile with it, 95 ms without).
    """
    return shuffle and n > batch_size


@functools.partial(jax.jit, static_argnums=(2, 3))
def epoch_order(key: jax.Array, step: jax.Array, n: int, shuffle: bool) -> jax.Array:
    if not shuffle:
        return jnp.arange(n, dtype=jnp.int32)
    shuffle_key = jax.random.fold_in(jax.random.fold_in(key, _SHUFFLE_STREAM), step)
    return jax.random.permutation(shuffle_key, n).astype(jnp.int32)


def _pack(carry: Carry, names: Sequence[str]) -> jax.Array:
    """The epoch's carry in one float32 array, to fetch it in one transfer.

    The means of the named logs, then the first bad step and its cause code
    (``NONFINITE_WHAT``), as int32 bit patterns (exact, unlike int32 -> float32).
    """
    # By name: dicts come back from a scan with their keys sorted.
    means = jnp.stack([carry.sums[name] / carry.examples for name in names])
    codes = jnp.stack([carry.first_bad, carry.cause])
    return jnp.concatenate([means, jax.lax.bitcast_convert_type(codes, jnp.float32)])


def _unpack(names: Sequence[str], packed: np.ndarray, epoch: int) -> EpochResult:
    k = len(names)
    first_bad, cause = packed[k:].view(np.int32).tolist()
    return EpochResult(
        dict(zip(names, packed[:k].tolist())), nonfinite_step(epoch, first_bad, cause)
    )


def nonfinite_step(epoch: int, first_bad: int, cause: Any) -> NonFinite | None:
    """The carry's ``first_bad`` and ``cause`` as a :class:`NonFinite` (None when all finite)."""
    if first_bad < 0:
        return None
    return NonFinite(epoch, int(first_bad), NONFINITE_WHAT[int(cause)])


def _result(carry: Carry, epoch: int) -> EpochResult:
    carry = jax.device_get(carry)
    count = float(carry.examples)
    logs = {k: (float(v) / count if count else float("nan")) for k, v in carry.sums.items()}
    return EpochResult(logs, nonfinite_step(epoch, int(carry.first_bad), carry.cause))


def epoch_function(
    training: Training, n: int, batch_size: int, rest: int, shuffle: bool
) -> Callable:
    """``(ts, x, y, halted=False) -> (ts, carry)``: a whole epoch, its shuffle included.

    ``rest`` is the size of the last, smaller batch (0 for none). ``fit``
    jits it; ``fit_many`` vmaps it over models first (and passes ``halted``).
    """
    run = steps_function(training)
    full = n // batch_size
    shuffle = shuffles(shuffle, n, batch_size)

    def epoch(ts: TrainState, x: Any, y: Any, halted: Any = False) -> tuple[TrainState, Carry]:
        order = epoch_order(ts.key, ts.step, n, shuffle)
        carry = empty_carry(training.log_names)
        rows = order[: full * batch_size].reshape(full, batch_size)
        ts, carry = run(ts, carry, x, y, rows, 0, halted)
        if rest:
            last = order[full * batch_size : full * batch_size + rest].reshape(1, rest)
            ts, carry = run(ts, carry, x, y, last, full, halted)
        return ts, carry

    return epoch


# Epochs one call of the epochs program may run: its logs come back as one
# [EPOCHS_PER_CALL, logs + 2] array, a few kilobytes at most.
EPOCHS_PER_CALL = 64


def _epochs_program(training: Training, n: int, batch_size: int, rest: int, shuffle: bool) -> Any:
    """``(ts, x, y, count) -> (ts, rows)``: ``count`` epochs of :func:`epoch_function` in one call.

    ``count`` (at most :data:`EPOCHS_PER_CALL`) is traced, so one executable
    runs one epoch (when a callback needs the host after every epoch) or
    many (when none does): the same compiled epoch either way, so the
    history does not depend on how many epochs a call runs. Row ``i`` of
    ``rows`` is epoch ``i``'s carry packed by :func:`_pack`. With
    ``on_nonfinite="stop"`` the loop ends after the first epoch with a
    non-finite step, the epoch at which ``fit`` stops.
    """

    def build(net: Layer) -> Callable:
        spec = training._replace(net=net)
        epoch = epoch_function(spec, n, batch_size, rest, shuffle)
        width = len(spec.log_names) + 2
        stops = spec.on_nonfinite == "stop"

        def epochs(ts: TrainState, x: Any, y: Any, count: Any) -> tuple[TrainState, jax.Array]:
            def more(state: tuple) -> jax.Array:
                i, _, _, stopped = state
                return (i < count) & ~stopped

            def one(state: tuple) -> tuple:
                i, ts, rows, _ = state
                ts, carry = epoch(ts, x, y)
                rows = jax.lax.dynamic_update_index_in_dim(rows, _pack(carry, spec.log_names), i, 0)
                stopped = carry.first_bad >= 0 if stops else jnp.zeros((), bool)
                return i + 1, ts, rows, stopped

            rows = jnp.zeros((EPOCHS_PER_CALL, width), jnp.float32)
            start = (jnp.zeros((), jnp.int32), ts, rows, jnp.zeros((), bool))
            _, ts, rows, _ = jax.lax.while_loop(more, one, start)
            return ts, rows

        return shared_jit(epochs, donate_argnums=(0,))

    key = ("epochs", training[1:], n, batch_size, rest, shuffle)
    return _PROGRAMS.get(training.net, key, build)


def _chunk_program(training: Training) -> Any:
    """``(ts, carry, x, y, order, start, first, steps, size) -> (ts, carry)``:
    ``steps`` steps of ``size`` examples from position ``start`` of the epoch's
    ``order``; ``first`` is the index of the first of them within the epoch."""

    def build(net: Layer) -> Callable:
        run = steps_function(training._replace(net=net))

        def chunk(ts, carry, x, y, order, start, first, steps, size):
            rows = jax.lax.dynamic_slice_in_dim(order, start, steps * size).reshape(steps, size)
            return run(ts, carry, x, y, rows, first)

        return shared_jit(chunk, donate_argnums=(0,), static_argnums=(7, 8))

    return _PROGRAMS.get(training.net, ("chunk", training[1:]), build)


def _branch_for(platforms: Sequence[Any], platform: str) -> int | None:
    """The branch a ``platform_dependent`` choice takes on ``platform`` (None: unknown)."""
    for i, names in enumerate(platforms):
        if names is not None and platform in names:
            return i
    return next((i for i, names in enumerate(platforms) if names is None), None)


def convolves(jaxpr: Any, platform: str = "cpu") -> bool:
    """Whether ``jaxpr`` (a Jaxpr or ClosedJaxpr) runs a ``conv_general_dilated`` on ``platform``.

    Sub-jaxprs (scan bodies, nested jits, gradients) are searched too; of a
    ``lax.platform_dependent`` choice only the branch taken on ``platform``.
    """
    import jax.extend  # here: importing it costs ~20 ms, and only the CPU asks

    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    chosen: dict[int, int | None] = {}  # id of a platform_index output -> its branch
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "conv_general_dilated":
            return True
        if name == "platform_index":
            chosen[id(eqn.outvars[0])] = _branch_for(eqn.params["platforms"], platform)
            continue
        subs = list(jax.extend.core.jaxprs_in_params(eqn.params))
        if name == "cond":
            platforms = eqn.params.get("branches_platforms")
            if platforms is not None:
                branch = _branch_for(platforms, platform)
            else:
                branch = chosen.get(id(eqn.invars[0]))
            if branch is not None:
                subs = [eqn.params["branches"][branch].jaxpr]
        if any(convolves(sub, platform) for sub in subs):
            return True
    return False


def platform_of(tree: Any) -> str:
    """The platform ("cpu", "gpu", "tpu") of the first array in ``tree``; JAX's default if none."""
    for leaf in jax.tree.leaves(tree):
        devices = getattr(leaf, "devices", None)
        if callable(devices):
            return next(iter(devices())).platform
    return jax.default_backend()


def resolve_loop(loop: str, program: Callable[[], Any], platform: str = "cpu") -> str:
    """The loop to run: ``loop``, or for ``"auto"`` a Python loop for convolutions on XLA:CPU.

    XLA:CPU runs a native convolution's gradient inside a ``lax.scan`` far
    slower than the same steps called one by one (docs/layers-conv.md), so
    when the scan's program (``program()``, its jaxpr; only traced on the
    CPU) holds one, the steps run as a Python loop; otherwise in a scan.
    ``platform`` is where the data lives (:func:`platform_of`), not JAX's
    default backend: data placed on the CPU of a GPU machine takes the CPU's
    choice, and an accelerator always runs the scan.
    """
    if loop != "auto":
        return loop
    if platform != "cpu":
        return "scan"
    return "python" if convolves(program(), platform) else "scan"


def signature_of(tree: Any) -> Hashable:
    """What a trace depends on in ``tree``: its structure and each leaf's shape and dtype."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple(
        (getattr(leaf, "shape", ()), getattr(leaf, "dtype", type(leaf))) for leaf in leaves
    )


# Per model: what fit works out from a trace (the loop to run, the number of
# classes) per signature of its arguments, so that a warm call traces nothing.
_PLANS: ModelCache[Any] = ModelCache()

# Array id -> (weak reference, [min, max]) for device arrays: their values never change.
_RANGES: dict[int, tuple[weakref.ref, np.ndarray]] = {}


@jax.jit
def _min_max(y: jax.Array) -> jax.Array:
    return jnp.stack([jnp.min(y), jnp.max(y)])


def value_range(y: Any) -> np.ndarray | None:
    """``[min, max]`` of ``y`` (one array) in the dtype it trains in; None for several or no values.

    What the target checks need, and all they read: a host array is reduced
    on the host (no device work), a device array on its device once (its
    values never change, so the answer is kept for as long as the array lives).

    Example:
        >>> value_range(np.array([[1], [0], [2]])).tolist()
        [0, 2]
    """
    leaves = jax.tree.leaves(y)
    if len(leaves) != 1 or np.size(leaves[0]) == 0:
        return None
    leaf = leaves[0]
    if not isinstance(leaf, jax.Array):
        array = np.asarray(leaf)
        if array.dtype.kind not in "biuf":
            return None
        # Rounding is monotonic, so the range of the cast array is the cast range.
        found = np.array([array.min(), array.max()])
        return found.astype(jax.dtypes.canonicalize_dtype(array.dtype))
    known = _RANGES.get(id(leaf))
    if known is not None and known[0]() is leaf:
        return known[1]
    found = np.asarray(_min_max(leaf))
    key = id(leaf)

    def forget(_: weakref.ref) -> None:
        _RANGES.pop(key, None)

    _RANGES[key] = (weakref.ref(leaf, forget), found)
    return found


def check_targets(
    loss: Loss, net: Layer, ts: TrainState, x: Any, y: Any, y_range: np.ndarray | None = None
) -> None:
    """Catches labels outside the model's classes before any compile.

    ``y_range`` is ``value_range(y)`` when the caller has it (from the host copy).
    """
    base = getattr(loss, "func", loss)
    if base is not sparse_categorical_crossentropy or not jnp.issubdtype(y.dtype, jnp.integer):
        return

    def classes_of(weak_net: Layer) -> int:
        sample = example_spec(x, batch=1)
        out = jax.eval_shape(
            lambda p, s, x: weak_net.apply(p, s, x)[0], ts.params, ts.state, sample
        )
        return int(out.shape[-1])

    signature = ("classes", signature_of((ts.params, ts.state)), signature_of(example_spec(x)))
    classes = _PLANS.get(net, signature, classes_of)
    if y_range is None:
        y_range = value_range(y)
    if y_range is None:
        return
    low, high = int(y_range[0]), int(y_range[1])
    if low < 0 or high >= classes:
        raise ValueError(
            f"fit: labels must be class indices in [0, {classes}) for a model with {classes} "
            f"outputs, found labels from {low} to {high}. Give the last layer as many units as "
            "there are classes, or re-encode the labels."
        )


def accumulated_batch_size(
    requested: int | None, resolved: int, unit: int, training: Training
) -> int:
    """``fit``'s batch size with ``accumulate``: a multiple of ``unit`` (accumulate x devices).

    ``requested`` None takes ``resolved`` rounded down to a multiple.
    """
    if unit == 1:
        return resolved
    k = training.accumulate
    devices = unit // k
    per = f"accumulate={k}" + (f" micro-batches over {devices} devices" if devices > 1 else "")
    if requested is None and resolved >= unit:
        return resolved - resolved % unit
    if resolved % unit:
        suggestion = max(unit, resolved - resolved % unit)
        raise ValueError(
            f"fit: batch_size {resolved} cannot be split into {per}: with accumulate, batch_size "
            f"is the examples per update and must be a multiple of {unit}. Use "
            f"batch_size={suggestion}, or another accumulate."
        )
    return resolved


class Engine(Protocol):
    """Runs epochs of training steps; the train state is passed in and handed back."""

    @property
    def steps_per_epoch(self) -> int | None:
        """Steps in an epoch, when known in advance (for the progress bar)."""
        ...

    def run_epoch(
        self, ts: TrainState, epoch: int, progress: Progress
    ) -> tuple[TrainState, EpochResult]:
        """Trains one epoch from ``ts`` (whose buffers it donates); the new state and the logs."""
        ...


class ArrayEngine:
    """In-memory arrays on the device, shuffled there, run in compiled chunks.

    Args:
        training: what the programs are built from.
        x, y: the training arrays (checked with ``check_pair``).
        batch_size, shuffle, steps_per_execution, loop: as in ``fit``.
        like: the train state the run starts from: read for its shapes (to
            check the labels and choose the loop), not kept.
        y_range: ``value_range(y)`` when the caller has it (from the host copy).
    """

    def __init__(
        self,
        training: Training,
        x: Any,
        y: Any,
        *,
        batch_size: int | None,
        shuffle: bool,
        steps_per_execution: int | None,
        loop: str,
        like: TrainState,
        y_range: np.ndarray | None = None,
    ):
        self.training = training
        self.log_names = training.log_names
        self.n = n = int(jax.tree.leaves(x)[0].shape[0])
        self.batch_size = check_batch_size(batch_size, n)
        layout = training.layout
        if layout is not None:
            self.batch_size = layout.fit_batch_size(batch_size, self.batch_size, n)
            self.x, self.y = layout.place_data((x, y))
        elif all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves((x, y))):
            self.x, self.y = x, y  # already on a device (fit's as_arrays): device_put costs ~20 µs
        else:
            self.x, self.y = jax.device_put((x, y))
        # Every batch splits into `accumulate` micro-batches, each split over the devices.
        unit = training.accumulate * (1 if layout is None else layout.size)
        self.batch_size = accumulated_batch_size(batch_size, self.batch_size, unit, training)
        check_targets(training.loss, training.net, like, x, y, y_range)
        self.full, self.rest = divmod(n, self.batch_size)
        self.rest -= self.rest % unit  # equal micro-batches, equal shares per device
        self.shuffle = shuffles(shuffle, n, self.batch_size)
        self.steps_per_epoch = self.full + (1 if self.rest else 0)
        chunk = self.full if steps_per_execution is None else min(steps_per_execution, self.full)
        # Traced for the choice, the scan's program is the one run: JAX reuses
        # the trace. The choice is kept per model and signature, so a warm
        # fit traces nothing.
        where = platform_of(self.x)  # the data's devices decide, not JAX's default backend
        plan = (
            "loop", training[1:], loop, n, self.batch_size, self.rest, self.shuffle, chunk,
            where, signature_of(like), signature_of((self.x, self.y)),
        )  # fmt: skip
        self.loop = _PLANS.get(
            training.net,
            plan,
            lambda _: resolve_loop(loop, lambda: self._scan_trace(like, chunk), where),
        )
        self.chunk = 1 if self.loop == "python" else chunk
        # Whole epochs run as one program, which can run several in one call.
        self.max_epochs_per_call = EPOCHS_PER_CALL if self.chunk >= self.full else 1

    def _epochs(self) -> Any:
        return _epochs_program(self.training, self.n, self.batch_size, self.rest, self.shuffle)

    def _scan_trace(self, like: TrainState, chunk: int) -> Any:
        """The jaxpr of the program that the scan loop would run first."""
        if chunk >= self.full:
            return self._epochs().trace(like, self.x, self.y, 1).jaxpr
        order = jax.ShapeDtypeStruct((self.n,), jnp.int32)
        carry = empty_carry(self.log_names)
        args = (like, carry, self.x, self.y, order, 0, 0, chunk, self.batch_size)
        return _chunk_program(self.training).trace(*args).jaxpr

    def run_epochs(
        self, ts: TrainState, epoch: int, count: int, progress: Progress
    ) -> tuple[TrainState, list[EpochResult]]:
        """Trains epochs ``epoch, epoch + 1, ...``: ``count`` of them (at most
        :attr:`max_epochs_per_call`), fewer when ``on_nonfinite="stop"`` stops
        at one; their results in order."""
        if count > self.max_epochs_per_call:
            raise ValueError(f"run_epochs: count {count} > {self.max_epochs_per_call}")
        if self.chunk < self.full:
            ts, result = self._run_chunks(ts, epoch, progress)
            return ts, [result]
        # The common case: whole epochs, orders included, in one program
        # returning one packed array of logs (one dispatch, one transfer).
        ts, packed = self._epochs()(ts, self.x, self.y, count)
        # np.asarray, not jax.device_get: a third of a small epoch's time.
        rows = np.asarray(packed)
        results = []
        for i in range(count):
            results.append(_unpack(self.log_names, rows[i], epoch + i))
            progress.steps_done(epoch + i, self.steps_per_epoch)
            if results[-1].nonfinite is not None and self.training.on_nonfinite == "stop":
                break  # the program stopped after this epoch
        return ts, results

    def run_epoch(
        self, ts: TrainState, epoch: int, progress: Progress
    ) -> tuple[TrainState, EpochResult]:
        ts, results = self.run_epochs(ts, epoch, 1, progress)
        return ts, results[0]

    def _run_chunks(
        self, ts: TrainState, epoch: int, progress: Progress
    ) -> tuple[TrainState, EpochResult]:
        order = epoch_order(ts.key, ts.step, self.n, self.shuffle)
        carry = empty_carry(self.log_names)
        chunk_program = _chunk_program(self.training)
        done = 0
        while done < self.full:
            k = min(self.chunk, self.full - done)
            start = done * self.batch_size
            ts, carry = chunk_program(
                ts, carry, self.x, self.y, order, start, done, k, self.batch_size
            )
            done += k
            progress.steps_done(epoch, k)
        if self.rest:
            start = self.full * self.batch_size
            ts, carry = chunk_program(
                ts, carry, self.x, self.y, order, start, self.full, 1, self.rest
            )
            progress.steps_done(epoch, 1)
        return ts, _result(carry, epoch)


class StreamEngine:
    """An iterable of ``(x, y)`` batches, prefetched to the device, one jitted step each.

    The first batch is read here, for :attr:`input_spec` (what the model is
    initialised for); it is trained on first in epoch 0.
    """

    def __init__(
        self,
        training: Training,
        batches: Iterable[Any],
        *,
        epochs: int,
        steps_per_epoch: int | None,
        prefetch: int,
    ):
        one_shot = iter(batches) is batches
        if one_shot and epochs > 1 and steps_per_epoch is None:
            raise ValueError(
                "fit: a one-shot iterator of batches can be read only once; for several epochs "
                "pass steps_per_epoch (batches per epoch), or an iterable that can be iterated "
                "again (a list, or an object whose __iter__ starts over)."
            )
        self.training = training
        self.log_names = training.log_names
        self.layout = training.layout
        self.program = steps_program(training)
        self.source = batches
        self.prefetch = prefetch
        self.steps_per_epoch = steps_per_epoch
        # One prefetcher for a continuing stream, so batches read ahead are not lost.
        self.stream = (
            prefetch_to_device(self._placed(batches), prefetch) if steps_per_epoch else None
        )
        self.signature: Any = None
        iterator = self._epoch_iterator()
        try:
            first = next(iterator)
        except StopIteration:
            raise ValueError("fit: the iterable of batches is empty.") from None
        # Epoch 0 resumes this iterator after the batch read here.
        self.pending: tuple[Iterator[Any], Any] | None = (iterator, self._as_batch(first, 0, 0))
        self.input_spec = example_spec(self.pending[1][0])

    def _epoch_iterator(self) -> Iterator[Any]:
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

    def run_epoch(
        self, ts: TrainState, epoch: int, progress: Progress
    ) -> tuple[TrainState, EpochResult]:
        if self.pending is not None:
            iterator, first = self.pending[0], [self.pending[1]]
            self.pending = None
        else:
            iterator, first = self._epoch_iterator(), []
        carry = empty_carry(self.log_names)
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
        return ts, _result(carry, epoch)


def _chain(first: list[Any], rest: Any) -> Any:
    yield from first
    yield from rest
