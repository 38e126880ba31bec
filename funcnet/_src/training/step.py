"""The train state and the jitted train step.

The train step is one pure function ``step(train_state, batch) -> (train_state,
loss)`` over a :class:`TrainState` NamedTuple, so it works with ``jax.jit``,
buffer donation, sharding and checkpointing. ``funcnet.fit`` builds its
compiled loops from the same step (:func:`train_step_with_logs`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from funcnet._src.core import Layer, Params, State, key_from
from funcnet._src.losses import Loss, get_loss
from funcnet._src.metrics import Metric
from funcnet._src.parallel.sharding import Layout, ParamRule
from funcnet._src.parallel.sharding import layout as make_layout
from funcnet._src.training.arguments import check_net, check_positive_int, get_optimizer
from funcnet._src.training.init_program import run_compiled
from funcnet._src.training.precision import (
    LossScale,
    MixedPrecision,
    as_policy,
    cast_like,
    check_loss_scale,
)

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
        loss_scale: float16 mixed precision's dynamic loss scale
            (:class:`LossScale`: scale, good steps), or None (no loss scaling).
    """

    params: Params
    state: State
    opt_state: optax.OptState
    step: jax.Array
    key: jax.Array
    loss_scale: LossScale | None = None


def as_key(key: jax.Array | int | None, where: str = "key") -> jax.Array:
    """A PRNG key from a key, an integer seed, or None (seed 0).

    One rule for every training entry point, the layers' own
    (:func:`funcnet._src.core.key_from`): ``key=0`` and
    ``key=jax.random.key(0)`` are the same run; anything else is a TypeError
    that starts with ``where`` (e.g. ``"fit: key"``).

    Example:
        >>> bool((jax.random.key_data(as_key(3)) == jax.random.key_data(jax.random.key(3))).all())
        True
    """
    if key is None:
        return jax.random.key(0)
    normalised = key_from(key)
    if normalised is None:
        raise TypeError(
            f"{where} must be a jax.random.key(...) or an integer seed, got "
            f"{type(key).__name__}{_shape_of(key)}: {key!r:.80}. Pass e.g. key=0."
        )
    return normalised


def _shape_of(value: Any) -> str:
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    return f" of shape {tuple(shape)} and dtype {dtype}" if shape is not None else ""


def init_train_state(
    net: Layer,
    optimizer: optax.GradientTransformation | str,
    input_shape: Any,
    *,
    key: jax.Array | int | None = None,
    mixed_precision: str | MixedPrecision | None = None,
) -> TrainState:
    """Initialises params, state and optimizer state for training ``net``.

    Args:
        net: the model.
        optimizer: an optax optimizer, or a Keras name as in :func:`funcnet.fit`
            ("adam": Keras's defaults).
        input_shape: the model's input shape (batch may be ``None``).
        key: a key or integer seed (default 0) for init and for training randomness.
        mixed_precision: the policy the train step will use (as in
            :func:`make_train_step`): with float16's dynamic loss scaling the
            train state carries the scale (``loss_scale``). The params are
            created as ``net.init`` creates them (float32).

    Example:
        >>> import optax, funcnet as fn
        >>> ts = fn.init_train_state(fn.Dense(1), "sgd", (None, 1), key=0)
        >>> int(ts.step)
        0
    """
    check_net(net, "init_train_state")
    optimizer = get_optimizer(optimizer, "init_train_state")
    key = as_key(key, "init_train_state: key")
    policy = as_policy(mixed_precision, "init_train_state")
    loss_scale = None if policy is None else policy.initial_loss_scale()

    def build(key: jax.Array) -> TrainState:
        init_key, train_key = jax.random.split(key)
        _, params, state = net.init(init_key, input_shape)
        return TrainState(
            params, state, optimizer.init(params), jnp.zeros((), jnp.int32), train_key
        )

    # One compiled program rather than dozens of eager operations (init_program.py).
    ts = run_compiled(build, key, net, identity=(optimizer, input_shape))
    return ts if loss_scale is None else ts._replace(loss_scale=loss_scale)


def _check_scalar_loss(value: Any) -> None:
    if jnp.shape(value) != ():
        raise ValueError(
            f"the loss must return a scalar (the mean over the batch), got shape {jnp.shape(value)}. "
            "End it with jnp.mean(...)."
        )


class StepResult(NamedTuple):
    """What :func:`train_step_with_logs`'s step returns."""

    train_state: TrainState  # after the step (unchanged if the update was not applied)
    logs: dict[str, jax.Array]  # the loss and the metrics on this batch
    finite: jax.Array  # whether the loss, the gradients and the updated params were all finite
    cause: jax.Array  # int32: if not finite, what was not, as NONFINITE_WHAT[cause]
    applied: jax.Array  # whether the update was applied


NONFINITE_WHAT = ("gradient", "loss", "update")
"""``NonFinite.what`` by the step's ``cause`` code (0, 1, 2)."""


class NonFinite(NamedTuple):
    """The first training step whose loss, gradients or updated params were not finite.

    Attributes:
        epoch: the epoch, counting from 0.
        step: the step within that epoch, counting from 0.
        what: ``"loss"`` if the loss itself was NaN or infinite, ``"gradient"``
            if the loss was finite but a gradient was not, ``"update"`` if both
            were finite but the optimizer's update made a param non-finite
            (an overflow, e.g. float16 params with a large learning rate).

    Example:
        >>> NonFinite(epoch=0, step=2, what="loss").describe()
        'non-finite loss at epoch 1, step 3 of that epoch'
    """

    epoch: int
    step: int
    what: str

    def describe(self) -> str:
        """The step in words, counting epochs and steps from 1."""
        return (
            f"non-finite {self.what} at epoch {self.epoch + 1}, step {self.step + 1} of that epoch"
        )


def _finite_sum(leaves: Any, start: Any = 0.0) -> jax.Array:
    # A sum is finite exactly when every term is (barring overflow past 3e38,
    # where training has diverged anyway); one reduction per leaf, no squares
    # (a norm would call values above 1e19 non-finite). Summed in float32, so
    # float16 and bfloat16 leaves cannot overflow the check itself.
    total = sum((jnp.sum(leaf, dtype=jnp.float32) for leaf in jax.tree.leaves(leaves)), start)
    return jnp.isfinite(total)


def split_micro_batches(batch: Any, accumulate: int, where: str) -> Any:
    """``batch`` (leaves ``[B, ...]``) as ``accumulate`` micro-batches, leaves ``[k, B/k, ...]``.

    Micro-batch ``i`` holds rows ``i, i + k, i + 2k, ...``: strided rather
    than contiguous, so that a batch split over a mesh's devices gives every
    device an equal share of every micro-batch (no data moves between them).
    """
    rows = jax.tree.leaves(batch)[0].shape[0]
    if rows % accumulate:
        raise ValueError(
            f"{where}: a batch of {rows} examples cannot be split into accumulate={accumulate} "
            f"equal micro-batches. Use a batch size that is a multiple of {accumulate} "
            f"(e.g. {max(accumulate, rows - rows % accumulate)}), or another accumulate."
        )
    size = rows // accumulate
    return jax.tree.map(lambda a: a.reshape(size, accumulate, *a.shape[1:]).swapaxes(0, 1), batch)


def train_step_with_logs(
    net: Layer,
    loss: Loss,
    optimizer: optax.GradientTransformation,
    metrics: tuple[tuple[str, Metric], ...] = (),
    layout: Layout | None = None,
    where: str = "fit",
    guard: bool = False,
    policy: MixedPrecision | None = None,
    accumulate: int = 1,
) -> Callable[..., StepResult]:
    """The pure train step ``step(ts, batch, allowed=True) -> StepResult``.

    Without ``guard`` every update is applied. With ``guard``, the update
    (params, model state, optimizer state and step count) is applied only if
    the loss, the gradients and the params it would produce are finite and
    ``allowed`` (a traced bool) is true; otherwise the train state comes back
    unchanged. The choice is a
    ``lax.cond`` around the optimizer update, not a ``jnp.where`` over the
    whole state: the update then runs in place, and the guard costs about
    nothing (measured in ``docs/training.md``).

    With a ``layout`` (:func:`funcnet._src.parallel.sharding.layout`) the batch is split over
    the mesh's data axis and the train state kept in its layout; XLA inserts
    the collectives (a batch that cannot be split is an error naming ``where``).

    A ``policy`` (:class:`MixedPrecision`) runs the model in its compute
    dtype. With its dynamic loss scale, a step whose gradients overflow while
    the loss is finite is the scale's business, not the guard's: the update
    is skipped, the scale halved, and the step reported finite. A non-finite
    loss, or gradients that overflow at scale 1, are reported as without
    scaling, so the guard's promise holds.

    ``accumulate=k`` splits the batch into ``k`` micro-batches
    (:func:`split_micro_batches`), runs them one after another in a
    ``lax.scan`` (the model state threads through them in order), and applies
    one update with the mean of their gradients: one large batch's update,
    with one micro-batch's activations in memory.
    """

    def forward(params, state, x, y, key, scale):
        if policy is not None:
            params, x = policy.cast_to_compute(params), policy.cast_to_compute(x)
        predictions, new_state = net.apply(params, state, x, key=key, train=True)
        if policy is not None:
            predictions = policy.cast_to_output(predictions)
            new_state = cast_like(new_state, state)  # the state keeps its stored dtypes
        value = loss(predictions, y)
        _check_scalar_loss(value)
        scaled = value if scale is None else value * scale
        return scaled, (value, new_state, predictions)

    def gradients(params, state, batch, key, scale):
        x, y = batch
        (_, (value, new_state, predictions)), grads = jax.value_and_grad(forward, has_aux=True)(
            params, state, x, y, key, scale
        )
        logs = {"loss": value}
        for name, metric in metrics:
            logs[name] = metric(jax.lax.stop_gradient(predictions), y)
        return logs, new_state, grads

    def accumulated(params, state, batch, key, scale):
        def micro_step(carry, micro):
            state, total = carry
            batch, i = micro
            if layout is not None:
                batch = layout.constrain_batch(where, batch)
            logs, state, grads = gradients(params, state, batch, jax.random.fold_in(key, i), scale)
            return (state, jax.tree.map(jnp.add, total, grads)), logs

        micro = (split_micro_batches(batch, accumulate, where), jnp.arange(accumulate))
        zeros = jax.tree.map(jnp.zeros_like, params)
        (new_state, total), logs = jax.lax.scan(micro_step, (state, zeros), micro)
        grads = jax.tree.map(lambda g: (g / accumulate).astype(g.dtype), total)
        return jax.tree.map(jnp.mean, logs), new_state, grads

    def step(ts: TrainState, batch: Any, allowed: Any = True) -> StepResult:
        if layout is not None:
            batch = layout.constrain_batch(where, batch)
            ts = layout.constrain_state(ts)
        check_loss_scale(policy, ts.loss_scale, where)
        step_key = jax.random.fold_in(ts.key, ts.step)
        scale = None if ts.loss_scale is None else ts.loss_scale.scale
        run = gradients if accumulate == 1 else accumulated
        logs, new_state, grads = run(ts.params, ts.state, batch, step_key, scale)
        if scale is not None:
            grads = jax.tree.map(lambda g: (g / scale).astype(g.dtype), grads)
        value = logs["loss"]

        def update(ts: TrainState) -> TrainState:
            updates, opt_state = optimizer.update(grads, ts.opt_state, ts.params)
            params = optax.apply_updates(ts.params, updates)
            new_ts = TrainState(params, new_state, opt_state, ts.step + 1, ts.key, ts.loss_scale)
            return layout.constrain_state(new_ts) if layout is not None else new_ts

        loss_finite = jnp.isfinite(value)
        grads_finite = _finite_sum(grads, value)
        # An overflow the loss scale absorbs: finite loss, non-finite
        # gradients, and a scale that can still fall.
        overflow = (
            loss_finite & ~grads_finite & (scale > 1) if scale is not None else jnp.zeros((), bool)
        )

        def rescaled(new_ts: TrainState, applies: Any) -> TrainState:
            if ts.loss_scale is None or policy is None:
                return new_ts
            adjusted = policy.adjust(ts.loss_scale, grads_finite)
            kept = jax.tree.map(lambda a, b: jnp.where(applies, a, b), adjusted, ts.loss_scale)
            return new_ts._replace(loss_scale=kept)

        if not guard:
            # Every update is applied (but an overflow's under loss scaling);
            # the first non-finite loss or gradient is still reported, as
            # with the guard.
            cause = jnp.where(~loss_finite, 1, 0).astype(jnp.int32)
            if scale is None:
                return StepResult(update(ts), logs, grads_finite, cause, jnp.ones((), bool))
            applied = grads_finite | ~overflow
            new_ts = rescaled(jax.lax.cond(applied, update, lambda ts: ts, ts), True)
            return StepResult(new_ts, logs, grads_finite | overflow, cause, applied)
        # What the update would produce, checked before it is applied: an
        # overflow (float16 params, a large learning rate) gives inf params
        # from finite gradients. The optimizer runs here once more, but only
        # into this one sum per param leaf, which XLA fuses (no params-sized
        # buffer); the update itself stays inside the cond, in place.
        check_updates, _ = optimizer.update(grads, ts.opt_state, ts.params)
        update_finite = _finite_sum(optax.apply_updates(ts.params, check_updates))
        finite = grads_finite & update_finite
        cause = jnp.where(~loss_finite, 1, jnp.where(grads_finite, 2, 0)).astype(jnp.int32)
        applied = finite & allowed
        new_ts = jax.lax.cond(applied, update, lambda ts: ts, ts)
        # A stopped run ("stop" after a non-finite step) keeps its whole state, scale included.
        new_ts = rescaled(new_ts, allowed & (finite | overflow))
        return StepResult(new_ts, logs, finite | overflow, cause, applied)

    return step


def make_train_step(
    net: Layer,
    loss: str | Loss,
    optimizer: optax.GradientTransformation | str,
    *,
    donate: bool = True,
    mesh: Mesh | Sequence[Any] | None = None,
    data_axis: str = "data",
    param_sharding: str | ParamRule | None = None,
    mixed_precision: str | MixedPrecision | None = None,
    accumulate: int = 1,
) -> Callable[[TrainState, Any], tuple[TrainState, jax.Array]]:
    """Builds the jitted step ``step(train_state, (x, y)) -> (train_state, loss)``.

    The step computes the loss and its gradient with respect to the params,
    applies the optimizer, threads the model state and advances ``step``.
    Stochastic layers get ``fold_in(train_state.key, train_state.step)``.

    Args:
        net: the model.
        loss: a loss function ``loss(predictions, targets) -> scalar`` or its name.
        optimizer: an optax optimizer, or a Keras name as in :func:`funcnet.fit`
            (give :func:`init_train_state` the same optimizer object or name).
        donate: donate the input train state's buffers, so params update in
            place; the train state passed in must not be used again.
        mesh: data parallelism: a ``jax.sharding.Mesh`` or a list of devices.
            Each batch is split along its leading axis over the data axis (its
            size must be a multiple of that axis' size) and the train state is
            replicated; XLA inserts the all-reduces. Place the train state once
            with :func:`funcnet.place_train_state` and, across processes, build
            batches with :func:`funcnet.shard_batch`.
        data_axis: the mesh axis the batch is split over.
        param_sharding: None (replicated), ``"fsdp"`` or :func:`funcnet.fsdp`
            (large leaves sharded over the data axis), or a rule
            ``rule(path, leaf, mesh, data_axis) -> PartitionSpec``.
        mixed_precision: None (float32), "mixed_bfloat16", "mixed_float16"
            or a :class:`MixedPrecision`: the model computes in bfloat16 or
            float16 while the params stay float32; float16 adds dynamic loss
            scaling (give :func:`init_train_state` the same policy: the scale
            lives in the train state).
        accumulate: micro-batches per update: the batch is split into
            ``accumulate`` equal parts, run one after another inside the
            step, and their mean gradient applied once (equal to the whole
            batch's gradient; batch-norm state is updated micro-batch by
            micro-batch). The batch size must be a multiple of it.

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
    check_net(net, "make_train_step")
    optimizer = get_optimizer(optimizer, "make_train_step")
    placement = make_layout(mesh, data_axis, param_sharding, "make_train_step")
    policy = as_policy(mixed_precision, "make_train_step")
    check_positive_int("make_train_step", "accumulate", accumulate, allow_none=False)
    logged = train_step_with_logs(
        net,
        get_loss(loss),
        optimizer,
        layout=placement,
        where="train step",
        policy=policy,
        accumulate=int(accumulate),
    )

    def step(ts: TrainState, batch: Any) -> tuple[TrainState, jax.Array]:
        result = logged(ts, batch)
        return result.train_state, result.logs["loss"]

    return jax.jit(step, donate_argnums=(0,) if donate else ())
