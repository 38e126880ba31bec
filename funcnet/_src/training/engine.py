"""The compiled training engine behind ``fit``: epochs of steps over arrays or streams.

For in-memory arrays the data goes to the device once and each epoch runs as
compiled chunks of steps (a ``lax.scan``, or a Python loop of jitted steps),
with the non-finite guard inside the compiled loop; a stream of batches runs
one jitted step per batch, prefetched to the device. How an epoch runs, and
why, is in ``docs/training.md``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from funcnet._src.core import Layer
from funcnet._src.layers import _cpu_kernels
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
from funcnet._src.training.progress import Progress
from funcnet._src.training.step import TrainState, as_key, init_train_state, train_step_with_logs

# Shuffling draws from its own stream of the run's key, apart from the
# per-step keys fold_in(key, step) that stochastic layers get.
_SHUFFLE_STREAM = 0x5EED


class Carry(NamedTuple):
    """What the compiled loop threads from step to step besides the train state."""

    first_bad: jax.Array  # index within the epoch of the first non-finite step, or -1
    sums: dict[str, jax.Array]  # logs summed over examples of the applied steps
    examples: jax.Array  # examples in the applied steps


def empty_carry(log_names: Sequence[str]) -> Carry:
    zero = jnp.zeros((), jnp.float32)
    return Carry(jnp.full((), -1, jnp.int32), {k: zero for k in log_names}, zero)


class Training(NamedTuple):
    """What every compiled training program is built from (hashable: programs are cached by it)."""

    net: Layer
    loss: Loss
    optimizer: optax.GradientTransformation
    metrics: tuple[tuple[str, Metric], ...] = ()
    on_nonfinite: str = "stop"
    layout: Layout | None = None

    @property
    def log_names(self) -> tuple[str, ...]:
        return ("loss", *(name for name, _ in self.metrics))


def steps_function(training: Training) -> Callable:
    """``(ts, carry, x, y, index[k, b], first) -> (ts, carry)``: ``k`` steps in a ``lax.scan``.

    Step ``i`` trains on the examples ``index[i]`` of the device-resident
    ``x`` and ``y``; ``first`` is the index of the first step within the epoch.
    With ``index=None``, ``x`` and ``y`` are one batch, trained on as they are
    (a stream's batch, already split over the mesh: gathering rows from it
    would all-gather it). A ``layout`` (``_src.parallel.sharding``) splits each batch
    over the mesh's data axis and keeps the train state in its layout.

    The guard: with ``on_nonfinite="stop"`` no update is applied after the
    first non-finite step (``carry.first_bad`` is then set), with ``"skip"``
    only the non-finite steps' updates are dropped, and ``"ignore"`` applies
    every update.
    """
    net, loss, optimizer, metrics, on_nonfinite, layout = training
    step = train_step_with_logs(
        net, loss, optimizer, metrics, layout, guard=on_nonfinite != "ignore"
    )

    def run(ts, carry, x, y, index, first):
        def body(state, row):
            ts, carry, i = state
            batch = (x, y) if row is None else (take(x, row), take(y, row))
            # One carried scalar says both "halted" and where: first_bad >= 0.
            allowed = carry.first_bad < 0 if on_nonfinite == "stop" else True
            ts, logs, finite, applied = step(ts, batch, allowed)
            rows = jax.tree.leaves(batch[0])[0].shape[0]
            size = jnp.where(applied, rows, 0).astype(jnp.float32)
            carry = Carry(
                first_bad=jnp.where(~finite & (carry.first_bad < 0), i, carry.first_bad),
                sums={
                    k: carry.sums[k] + size * jnp.where(applied, v, 0).astype(jnp.float32)
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
def _steps_program(training: Training) -> Callable:
    """:func:`steps_function`, jitted, with the train state's buffers donated."""
    return jax.jit(steps_function(training), donate_argnums=(0,))


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
    """The epoch's logs in one array: the mean of each named log, then the first bad step."""
    # By name: dicts come back from a scan with their keys sorted.
    means = [carry.sums[name] / carry.examples for name in names]
    return jnp.stack([*means, carry.first_bad.astype(jnp.float32)])


def _unpack(names: Sequence[str], packed: np.ndarray) -> tuple[dict[str, float], int]:
    values = packed.tolist()
    return dict(zip(names, values[:-1])), int(values[-1])


def epoch_function(
    training: Training, n: int, batch_size: int, rest: int, shuffle: bool
) -> Callable:
    """``(ts, x, y) -> (ts, carry)``: a whole epoch, its shuffle included.

    ``rest`` is the size of the last, smaller batch (0 for none). ``fit``
    jits it; ``fit_many`` vmaps it over models first.
    """
    run = steps_function(training)
    full = n // batch_size
    shuffle = shuffles(shuffle, n, batch_size)

    def epoch(ts: TrainState, x: Any, y: Any) -> tuple[TrainState, Carry]:
        order = epoch_order(ts.key, ts.step, n, shuffle)
        carry = empty_carry(training.log_names)
        ts, carry = run(ts, carry, x, y, order[: full * batch_size].reshape(full, batch_size), 0)
        if rest:
            last = order[full * batch_size : full * batch_size + rest].reshape(1, rest)
            ts, carry = run(ts, carry, x, y, last, full)
        return ts, carry

    return epoch


@functools.lru_cache(maxsize=64)
def _whole_epoch_program(
    training: Training, n: int, batch_size: int, rest: int, shuffle: bool
) -> Callable:
    """:func:`epoch_function`, jitted, returning its logs packed in one array."""
    epoch = epoch_function(training, n, batch_size, rest, shuffle)

    def packed(ts: TrainState, x: Any, y: Any) -> tuple[TrainState, jax.Array]:
        ts, carry = epoch(ts, x, y)
        return ts, _pack(carry, training.log_names)

    return jax.jit(packed, donate_argnums=(0,))


@functools.lru_cache(maxsize=64)
def _chunk_program(training: Training) -> Callable:
    """``(ts, carry, x, y, order, start, first, steps, size) -> (ts, carry)``:
    ``steps`` steps of ``size`` examples from position ``start`` of the epoch's
    ``order``; ``first`` is the index of the first of them within the epoch."""
    run = steps_function(training)

    def chunk(ts, carry, x, y, order, start, first, steps, size):
        rows = jax.lax.dynamic_slice_in_dim(order, start, steps * size).reshape(steps, size)
        return run(ts, carry, x, y, rows, first)

    return jax.jit(chunk, donate_argnums=(0,), static_argnums=(7, 8))


def _contains_convolution(net: Layer, ts: TrainState, x: Any) -> bool:
    """Whether the model's forward pass has a convolution (searched in its jaxpr)."""
    import jax.extend  # here: importing it costs ~20 ms, and only the native CPU path asks

    sample = example_spec(x, batch=1)
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


# Whether a model convolves depends only on the model and the input's shapes;
# tracing it to find out costs more than a small model's epoch, so remember.
_CONVOLVES: dict[tuple, bool] = {}


def resolve_loop(loop: str, net: Layer, ts: TrainState, x: Any) -> str:
    """The loop for ``loop="auto"``: a Python loop of steps for convolutions on XLA:CPU."""
    if loop != "auto":
        return loop
    if jax.default_backend() != "cpu" or _cpu_kernels.conv_impl() != "native":
        # On the CPU funcnet's convolutions are im2col by default, which a scan
        # runs 1.3-1.6x faster than a loop (docs/layers-conv.md); only XLA's
        # native convolution needs the loop there.
        return "scan"
    signature = (
        net,
        jax.tree.structure(x),
        tuple((a.shape[1:], a.dtype) for a in jax.tree.leaves(x)),
    )
    if signature not in _CONVOLVES:
        if len(_CONVOLVES) > 256:
            _CONVOLVES.clear()
        _CONVOLVES[signature] = _contains_convolution(net, ts, x)
    return "python" if _CONVOLVES[signature] else "scan"


def check_targets(loss: Loss, net: Layer, ts: TrainState, x: Any, y: Any) -> None:
    """Catches labels outside the model's classes before any compile."""
    base = getattr(loss, "func", loss)
    if base is not sparse_categorical_crossentropy or not jnp.issubdtype(y.dtype, jnp.integer):
        return
    sample = example_spec(x, batch=1)
    out = jax.eval_shape(lambda p, s, x: net.apply(p, s, x)[0], ts.params, ts.state, sample)
    classes = out.shape[-1]
    low, high = int(jnp.min(y)), int(jnp.max(y))
    if low < 0 or high >= classes:
        raise ValueError(
            f"fit: labels must be class indices in [0, {classes}) for a model with {classes} "
            f"outputs, found labels from {low} to {high}. Give the last layer as many units as "
            "there are classes, or re-encode the labels."
        )


class Engine:
    """Runs epochs of training steps; ``ts`` is the current train state."""

    ts: TrainState
    steps_per_epoch: int | None = None

    def __init__(self, training: Training):
        self.training = training
        self.net, self.layout = training.net, training.layout
        self.program = _steps_program(training)
        self.log_names = training.log_names

    def _start(self, key: Any, train_state: TrainState | None, x: Any) -> None:
        self.input_spec = example_spec(x)
        if train_state is None:
            train_state = init_train_state(
                self.net, self.training.optimizer, self.input_spec, key=as_key(key)
            )
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


class ArrayEngine(Engine):
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
        self._start(key, train_state, x)
        check_targets(self.training.loss, self.net, self.ts, x, y)
        self.loop = resolve_loop(loop, self.net, self.ts, x)
        self.full, self.rest = divmod(self.n, self.batch_size)
        self.shuffle = shuffles(shuffle, self.n, self.batch_size)
        if self.layout is not None:
            self.rest -= self.rest % self.layout.size  # every device gets the same share
        self.steps_per_epoch = self.full + (1 if self.rest else 0)
        chunk = self.full if steps_per_execution is None else min(steps_per_execution, self.full)
        self.chunk = 1 if self.loop == "python" else chunk
        self.chunk_program = _chunk_program(self.training)

    def run_epoch(self, epoch: int, progress: Progress) -> tuple[dict[str, float], int]:
        if self.chunk >= self.full:
            # The common case: the whole epoch, order included, is one program
            # returning one packed array of logs (one dispatch, one transfer).
            program = _whole_epoch_program(
                self.training, self.n, self.batch_size, self.rest, self.shuffle
            )
            self.ts, packed = program(self.ts, self.x, self.y)
            progress.steps_done(epoch, self.full + (1 if self.rest else 0))
            # np.asarray, not jax.device_get: a third of this small epoch's time.
            return _unpack(self.log_names, np.asarray(packed))
        order = epoch_order(self.ts.key, self.ts.step, self.n, self.shuffle)
        carry = empty_carry(self.log_names)
        ts = self.ts
        done = 0
        while done < self.full:
            k = min(self.chunk, self.full - done)
            start = done * self.batch_size
            ts, carry = self.chunk_program(
                ts, carry, self.x, self.y, order, start, done, k, self.batch_size
            )
            done += k
            progress.steps_done(epoch, k)
        if self.rest:
            start = self.full * self.batch_size
            ts, carry = self.chunk_program(
                ts, carry, self.x, self.y, order, start, self.full, 1, self.rest
            )
            progress.steps_done(epoch, 1)
        self.ts = ts
        return self._finish(carry)


class StreamEngine(Engine):
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
