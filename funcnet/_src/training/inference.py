"""Inference: ``predict`` and ``evaluate``, compiled once per model and batch shape."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from funcnet._src.core import Layer, Params, State
from funcnet._src.losses import Loss, get_loss
from funcnet._src.metrics import Metric
from funcnet._src.parallel.sharding import layout
from funcnet._src.training.arguments import check_net, check_positive_int, get_metrics
from funcnet._src.training.data import as_arrays, check_pair, num_examples, take
from funcnet._src.training.eval_program import batches, eval_program, evaluate_arrays
from funcnet._src.training.model_cache import ModelCache
from funcnet._src.training.programs import shared_jit
from funcnet._src.training.sharded_eval import on_mesh, sharded_evaluator

# Compiled per model, and dropped with it.
_PROGRAMS: ModelCache[Callable] = ModelCache()


def _predict_program(net: Layer) -> Callable:
    def build(net: Layer) -> Callable:
        def forward(params, state, x):
            return net.apply(params, state, x, train=False)[0]

        return shared_jit(forward)

    return _PROGRAMS.get(net, "predict", build)


def predict(
    net: Layer, params: Params, state: State, x: Any, *, batch_size: int | None = None
) -> Any:
    """The model's outputs for ``x`` in inference mode (``train=False``).

    Args:
        net: the model.
        params: from ``init`` or ``fit`` (``result.params``).
        state: from ``init`` or ``fit`` (``result.state``).
        x: inputs, ``[n, ...]``.
        batch_size: split the computation into batches of this size (default: one batch).

    Returns:
        The outputs, ``[n, ...]``.

    Example:
        >>> import jax, numpy as np, funcnet as fn
        >>> net = fn.Dense(2)
        >>> _, params, state = net.init(jax.random.key(0), (None, 3))
        >>> fn.predict(net, params, state, np.ones((4, 3), np.float32)).shape
        (4, 2)
    """
    check_net(net, "predict")
    check_positive_int("predict", "batch_size", batch_size)
    x = as_arrays(x, "predict", "x")
    n = num_examples("predict", "x", x)
    forward = _predict_program(net)
    parts = [forward(params, state, take(x, s)) for s in batches(n, batch_size)]
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
    metrics: str | Metric | Sequence[str | Metric] = (),
    batch_size: int | None = None,
    mesh: Mesh | Sequence[Any] | None = None,
    data_axis: str = "data",
) -> dict[str, float]:
    """The loss and metrics of the model on ``(x, y)``, in inference mode.

    Args:
        net: the model.
        params: from ``init`` or ``fit`` (``result.params``).
        state: from ``init`` or ``fit`` (``result.state``).
        x: inputs ``[n, ...]``.
        y: targets ``[n, ...]``.
        loss: a loss function or name; metrics: metric functions or names.
        batch_size: examples per batch (default: one batch).
        mesh: a ``jax.sharding.Mesh`` or a list of devices: ``x`` and ``y``
            are split over its data axis (``ceil(n / d)`` examples per
            device, as ``fit(mesh=...)`` splits its data) and each batch
            computed split over the devices (``batch_size`` rounded down to
            a multiple of ``d``). Params already on the mesh stay as they
            are (replicated or FSDP); others are replicated onto it.
        data_axis: the mesh axis the examples are split over.

    Returns:
        ``{"loss": value, <metric>: value, ...}``, each a mean over all examples.

    Example:
        >>> import jax, numpy as np, funcnet as fn
        >>> net = fn.Dense(1, w_init=jax.nn.initializers.ones)
        >>> _, params, state = net.init(jax.random.key(0), (None, 1))
        >>> fn.evaluate(net, params, state, np.ones((4, 1), np.float32), np.zeros((4, 1)), loss="mse")
        {'loss': 1.0}
    """
    check_net(net, "evaluate")
    check_positive_int("evaluate", "batch_size", batch_size)
    placement = layout(mesh, data_axis, None, "evaluate")
    on_host = placement is not None  # split over the devices from the host, never whole on one
    x, y = as_arrays(x, "evaluate", "x", host=on_host), as_arrays(y, "evaluate", "y", host=on_host)
    n = check_pair("evaluate", x, y)
    loss_fn, metric_fns = get_loss(loss), get_metrics(metrics, "evaluate")
    if placement is not None:
        split = sharded_evaluator(net, loss_fn, metric_fns, placement, x, y, n, batch_size or n)
        return split(*on_mesh(placement, (params, state)))
    program = eval_program(net, loss_fn, metric_fns)
    return evaluate_arrays(program, params, state, x, y, n, batch_size)
