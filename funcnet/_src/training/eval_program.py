"""The compiled evaluation program: losses and metrics summed on the device, one batch per call.

Shared by ``evaluate`` (one device), ``fit``'s validation and the evaluation
split over a mesh (``sharded_eval``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import jax

from funcnet._src.core import Layer, Params, State
from funcnet._src.losses import Loss
from funcnet._src.metrics import Metric
from funcnet._src.training.data import take
from funcnet._src.training.model_cache import ModelCache
from funcnet._src.training.programs import SharedProgram, shared_jit

# Compiled per model, and dropped with it.
_PROGRAMS: ModelCache[Callable] = ModelCache()


def eval_program(net: Layer, loss: Loss, metrics: tuple[tuple[str, Metric], ...]) -> SharedProgram:
    """``(params, state, x, y) -> {name: sum over the batch}``: losses and metrics on the device."""

    def build(net: Layer) -> Callable:
        def sums(params, state, x, y):
            predictions = net.apply(params, state, x, train=False)[0]
            count = jax.tree.leaves(y)[0].shape[0]
            out = {"loss": loss(predictions, y) * count}
            for name, metric in metrics:
                out[name] = metric(predictions, y) * count
            return out

        return shared_jit(sums)

    return cast(SharedProgram, _PROGRAMS.get(net, ("evaluate", loss, metrics), build))


def batches(n: int, batch_size: int | None) -> list[slice]:
    """Consecutive slices of at most ``batch_size`` (all ``n`` when None)."""
    size = n if batch_size is None else int(batch_size)
    return [slice(i, min(i + size, n)) for i in range(0, n, size)] or [slice(0, 0)]


def evaluate_arrays(
    program: Callable, params: Params, state: State, x: Any, y: Any, n: int, batch_size: int | None
) -> dict[str, float]:
    """Means over all examples of the sums that ``program`` computes per batch."""
    totals: dict[str, jax.Array] = {}
    for s in batches(n, batch_size):
        for name, value in program(params, state, take(x, s), take(y, s)).items():
            totals[name] = totals[name] + value if name in totals else value
    return {name: float(value) / n for name, value in jax.device_get(totals).items()}
