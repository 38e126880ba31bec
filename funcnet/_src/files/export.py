"""``export``: a trained model's inference function as a file any JAX program can run.

The file holds ``jax.export``'s serialization of ``x -> net.apply(params,
state, x)[0]`` (inference mode, ``train=False``), with the params and state
baked in as constants. Another project needs only jax to run it::

    exported = jax.export.deserialize(bytearray(open(path, "rb").read()))
    y = exported.call(x)

Every ``None`` in ``input_shape`` is a symbolic dimension, so one file serves
any batch size. The decisions behind the file (symbolic dimensions, weights
inside, raw ``Exported.serialize()`` bytes, platforms) are in
``docs/checkpoints.md``, section "Export".
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from funcnet._src.core import InputShape, Layer, Params, State, dtype_of, is_shape, shape_of
from funcnet._src.files.format import write_atomic


class ExportError(ValueError):
    """A model could not be exported, or a file is not an exported model."""


def _symbolic_specs(input_shape: InputShape) -> Any:
    """``jax.ShapeDtypeStruct``\\ s with every ``None`` replaced by a symbolic dimension."""
    scope = jax.export.SymbolicScope()
    counter = [0]

    def one(spec: InputShape) -> jax.ShapeDtypeStruct:
        dims = []
        for i, d in enumerate(shape_of(spec)):
            if d is not None:
                dims.append(str(d))
            elif i == 0:
                dims.append("batch")
            else:
                counter[0] += 1
                dims.append(f"d{counter[0]}")
        shape = jax.export.symbolic_shape(", ".join(dims), scope=scope) if dims else ()
        return jax.ShapeDtypeStruct(shape, dtype_of(spec, jnp.float32))

    def walk(spec: InputShape) -> Any:
        if is_shape(spec):
            return one(spec)
        if isinstance(spec, (tuple, list)):
            return tuple(walk(s) for s in spec)
        raise ExportError(
            f"export: input_shape must be a shape such as (None, 3), a jax.ShapeDtypeStruct, "
            f"or a tuple of these; got {spec!r}."
        )

    return walk(input_shape)


def export(
    net: Layer,
    params: Params,
    state: State,
    input_shape: InputShape,
    path: str | os.PathLike | None = None,
    *,
    platforms: Sequence[str] | None = None,
) -> jax.export.Exported:
    """Exports ``net``'s inference function with ``jax.export``, and writes it to ``path``.

    Args:
        net: the model.
        params: its trained params.
        state: its state (e.g. batch-norm running statistics).
        input_shape: the input shape with ``None`` for the batch (and any
            other size the file should accept); a ``jax.ShapeDtypeStruct``
            sets a dtype other than float32; a tuple of shapes for several inputs.
        path: where to write the serialized function; None writes nothing.
        platforms: the platforms to export for ("cpu", "cuda", "rocm",
            "tpu"); None is the current backend.

    Returns:
        The ``jax.export.Exported``: ``exported.call(x)`` runs it, and
        ``exported.serialize()`` is what was written.

    Example:
        >>> import jax, jax.numpy as jnp, funcnet as fn
        >>> net = fn.serial(fn.Dense(4), fn.Relu(), fn.Dense(2))
        >>> _, params, state = net.init(jax.random.key(0), (None, 3))
        >>> exported = fn.export(net, params, state, (None, 3))
        >>> exported.in_avals
        (ShapedArray(float32[batch,3]),)
        >>> exported.call(jnp.ones((5, 3))).shape
        (5, 2)
    """
    specs = _symbolic_specs(input_shape)
    # Several inputs are several arguments: exported.call(ids, x), not call((ids, x)).
    several = not is_shape(input_shape)

    def infer(*xs: Any) -> Any:
        return net.apply(params, state, xs if several else xs[0], train=False)[0]

    try:
        exported = jax.export.export(jax.jit(infer), platforms=platforms)(
            *(specs if several else (specs,))
        )
    except Exception as error:
        raise ExportError(
            f"export: {net.name} could not be exported for inputs {input_shape}: "
            f"{type(error).__name__}: {str(error).rstrip('.')}. If a layer needs a concrete "
            "size where the input has None, give that size in input_shape."
        ) from error
    if path is not None:
        if Path(path).is_dir():
            raise IsADirectoryError(
                f"export: {path} is a directory; export writes one file. Give a file path such "
                f"as {Path(path) / 'model.jax'}."
            )
        write_atomic(path, [exported.serialize()])
    return exported


def load_exported(path: str | os.PathLike) -> jax.export.Exported:
    """Reads a file written by :func:`export` (plain ``jax.export.deserialize``, with clear errors).

    Example:
        >>> import os, tempfile, jax, jax.numpy as jnp, funcnet as fn
        >>> net = fn.Dense(2)
        >>> _, params, state = net.init(jax.random.key(0), (None, 3))
        >>> path = os.path.join(tempfile.mkdtemp(), "dense.jax")
        >>> _ = fn.export(net, params, state, (None, 3), path)
        >>> fn.load_exported(path).call(jnp.ones((4, 3))).shape
        (4, 2)
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"load_exported: no file at {path}.") from None
    try:
        return jax.export.deserialize(bytearray(data))
    except Exception as error:
        raise ExportError(
            f"load_exported: {path} is not a model exported with jax.export (or it is "
            f"truncated or corrupted): {type(error).__name__}: {error}"
        ) from None
