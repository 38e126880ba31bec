"""Evaluation of data split over a mesh: ``fit``'s validation data, ``1 / d`` of it per device.

With ``fit(mesh=...)`` the validation data (and with ``evaluate(mesh=...)``
the data evaluated) is placed as the training data is
(``Layout.place_data``: each of the ``d`` devices along the data axis holds
``ceil(n / d)`` rows, the last shard padded with zero rows that no batch
reads), so the memory it takes per device falls as devices are added. One
compiled program evaluates it: a ``lax.scan`` over the full batches, each
gathered with ``Layout.take_rows`` (one reduce-scatter, the batch split over
the devices), then the last, smaller batch. The batches are those of the
one-device evaluation (``eval_program.batches``), their sums added in the same
order, so the logs equal it up to the order of the sums inside a batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from funcnet._src.core import Layer, Params, State
from funcnet._src.losses import Loss
from funcnet._src.metrics import Metric
from funcnet._src.parallel.sharding import Layout, put
from funcnet._src.training.data import take
from funcnet._src.training.eval_program import eval_program
from funcnet._src.training.model_cache import ModelCache
from funcnet._src.training.programs import shared_jit

_PROGRAMS: ModelCache[Callable] = ModelCache()


def split_batch_size(batch_size: int, n: int, layout: Layout) -> int:
    """The evaluation batch: ``min(batch_size, n)`` rounded down to a multiple of the devices.

    A multiple of ``d`` splits over the devices; with fewer than ``d``
    examples the one batch is gathered whole instead (see :func:`_batch`).
    """
    size = min(batch_size, n)
    return size - size % layout.size if size >= layout.size else size


def _batch(layout: Layout, data: Any, rows: jax.Array) -> Any:
    """Rows ``rows`` of placed data: split over the devices when they divide evenly.

    A batch of rows that does not divide (the last one, at most one per
    evaluation) is an ordinary gather, which XLA partitions by giving every
    device the whole batch: one batch, never the data set.
    """
    if rows.shape[0] % layout.size == 0:
        return layout.take_rows(data, rows)
    return take(data, rows)


def _program(
    net: Layer,
    loss: Loss,
    metrics: tuple[tuple[str, Metric], ...],
    layout: Layout,
    n: int,
    size: int,
) -> Callable:
    """``(params, state, x, y) -> {name: sum over the n examples}``, jitted, cached per model."""
    sums = eval_program(net, loss, metrics).__wrapped__  # traced inline, not called compiled
    full, rest = divmod(n, size)

    def build(_: Layer) -> Callable:
        def run(params: Params, state: State, x: Any, y: Any) -> dict[str, jax.Array]:
            def batch_sums(rows: jax.Array) -> dict[str, jax.Array]:
                batch_x, batch_y = _batch(layout, (x, y), rows)
                return sums(params, state, batch_x, batch_y)

            def body(totals: Any, start: jax.Array) -> tuple[Any, None]:
                rows = start + jnp.arange(size, dtype=jnp.int32)
                return jax.tree.map(jnp.add, totals, batch_sums(rows)), None

            shapes = jax.eval_shape(batch_sums, jnp.arange(size, dtype=jnp.int32))
            totals = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
            starts = jnp.arange(full, dtype=jnp.int32) * size
            totals, _ = jax.lax.scan(body, totals, starts)
            if rest:
                last = batch_sums(full * size + jnp.arange(rest, dtype=jnp.int32))
                totals = jax.tree.map(jnp.add, totals, last)
            return totals

        return shared_jit(run)

    return _PROGRAMS.get(net, (loss, metrics, layout, n, size), build)


def on_mesh(layout: Layout, tree: Any) -> Any:
    """``tree`` on the layout's mesh: leaves already on its devices stay as they are
    (replicated or FSDP-sharded by ``fit``), the others are replicated onto it."""
    devices = set(layout.mesh.devices.flat)

    def one(leaf: Any) -> Any:
        sharding = getattr(leaf, "sharding", None)
        if sharding is not None and sharding.device_set == devices:
            return leaf
        return put(leaf, layout.replicated)

    return jax.tree.map(one, tree)


def sharded_evaluator(
    net: Layer,
    loss: Loss,
    metrics: tuple[tuple[str, Metric], ...],
    layout: Layout,
    x: Any,
    y: Any,
    n: int,
    batch_size: int,
) -> Callable[[Params, State], dict[str, float]]:
    """``evaluate(params, state) -> {name: mean}`` over ``(x, y)``, placed once over ``layout``.

    Args:
        net, loss, metrics: what to evaluate, as for ``eval_program.eval_program``.
        layout: the mesh and data axis the data is split over.
        x, y: ``n`` examples (host arrays: no device ever holds them whole).
        n: the number of examples.
        batch_size: examples per batch, rounded down to a multiple of the devices.

    Example:
        >>> import jax, numpy as np, funcnet as fn
        >>> from funcnet._src.parallel.sharding import layout
        >>> net = fn.Dense(1, w_init=jax.nn.initializers.ones)
        >>> _, params, state = net.init(jax.random.key(0), (None, 2))
        >>> x, y = np.ones((5, 2), np.float32), np.zeros((5, 1), np.float32)
        >>> evaluate = sharded_evaluator(net, fn.mse, (), layout(jax.devices()[:1]), x, y, 5, 2)
        >>> evaluate(params, state)
        {'loss': 4.0}
    """
    placed = layout.place_data((x, y))
    program = _program(net, loss, metrics, layout, n, split_batch_size(batch_size, n, layout))

    def evaluate(params: Params, state: State) -> dict[str, float]:
        totals = jax.device_get(program(params, state, *placed))
        return {name: float(value) / n for name, value in totals.items()}

    return evaluate
