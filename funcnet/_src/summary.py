"""``summary``: the table of a model's layers, output shapes and sizes."""

from __future__ import annotations

import jax

from funcnet._src.core import InputShape, Layer, param_count, record_layers


def summary(net: Layer, input_shape: InputShape, *, key: jax.Array | None = None) -> str:
    """A table of each layer's path, output shape and parameter count, with the total.

    Like Keras's ``model.summary()``; it is returned as a string, so
    ``print(summary(net, shape))`` shows it.

    Args:
        net: the model.
        input_shape: the input shape given to ``net.init`` (batch may be ``None``).
        key: the key for init; parameter values do not matter here.

    Example:
        >>> import funcnet as fn
        >>> print(fn.summary(fn.serial(fn.Dense(32), fn.Dense(32)), (None, 784)))
        Layer            Output shape  Params
        =====================================
        input            (None, 784)        0
        serial[0].Dense  (None, 32)    25,120
        serial[1].Dense  (None, 32)     1,056
        =====================================
        Total params: 26,176
    """
    key = jax.random.key(0) if key is None else key
    with record_layers() as rows:
        output_shape, params, _ = net.init(key, input_shape)
    lines = [("input", str(_shape_text(input_shape)), "0")]
    if rows:
        lines += [
            ("  " * r.depth + r.path, str(r.output_shape), f"{r.param_count:,}") for r in rows
        ]
    else:
        lines.append((net.name, str(output_shape), f"{param_count(params):,}"))
    header = ("Layer", "Output shape", "Params")
    widths = [max(len(row[i]) for row in [header, *lines]) + 2 for i in range(2)]
    width_params = max(len(row[2]) for row in [header, *lines])
    rule = "=" * (sum(widths) + width_params)
    out = [f"{header[0]:<{widths[0]}}{header[1]:<{widths[1]}}{header[2]:>{width_params}}", rule]
    out += [f"{a:<{widths[0]}}{b:<{widths[1]}}{c:>{width_params}}" for a, b, c in lines]
    out += [rule, f"Total params: {param_count(params):,}"]
    return "\n".join(out)


def _shape_text(input_shape: InputShape) -> object:
    if isinstance(input_shape, jax.ShapeDtypeStruct):
        return tuple(input_shape.shape)
    return input_shape
