"""Blocks built from one layer: residual connections and repeated stacks.

Design decisions:

* Params and state follow the combinators' rule: a tuple with one entry per
  child, and a child's path segment is its index: ``residual[1]`` is
  ``params[1]``, the projection.
* ``residual`` never broadcasts: ``f(x)`` and the shortcut must have equal
  shapes, and the error names both.
* ``residual`` applies its projection, when given, to every input, so the
  params do not depend on the data.
* ``repeat`` stores its copies' params stacked along a new leading axis (not
  as a tuple) and applies them with ``jax.lax.scan``, so the program holds one
  copy of the layer and compiles in constant time whatever ``n``. Its child's
  path segment is ``repeat[0:n]``: an error inside is the same in every copy.
  Its summary row counts all ``n`` copies; rows nested inside it are not
  listed, since they would count one copy while claiming the ``repeat[0:n]``
  path. ``init`` and ``apply`` split the key exactly as ``serial`` does, so
  ``repeat(layer, n)`` has the same params and outputs as ``serial`` of ``n``
  copies of ``layer``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from funcnet.combinators import _check_count, _merge_dim, _plain
from funcnet.core import (
    Layer,
    LayerValueError,
    apply_child,
    as_layer,
    check_children_tree,
    check_input_shape,
    init_child,
    is_shape,
    record_layers,
    shape_error,
    shape_of,
    split_key,
    type_error,
)


def residual(layer: Any, projection: Any = None, *, name: str = "residual") -> Layer:
    """A skip connection: ``layer(x) + x``, or ``layer(x) + projection(x)``.

    Args:
        layer: the residual branch ``f``, a layer or function of ``[batch, ...]``.
        projection: a layer for the shortcut, needed when ``f`` changes the
            shape (e.g. ``Dense(units)``, or a strided 1x1 convolution). When
            given it is always applied.
        name: the name used in error paths and summaries.

    Returns:
        A layer with the output shape of ``f``; params and state are
        ``(f's,)`` or ``(f's, projection's)``, paths ``residual[0]`` and ``residual[1]``.

    Example:
        >>> import jax, funcnet as fn
        >>> block = fn.residual(fn.serial(fn.Dense(4), fn.Relu()), projection=fn.Dense(4))
        >>> out_shape, params, state = block.init(jax.random.key(0), (None, 3))
        >>> out_shape, len(params)
        ((None, 4), 2)
    """
    children = (as_layer(layer),) if projection is None else (as_layer(layer), as_layer(projection))
    segments = tuple(f"{name}[{i}]" for i in range(len(children)))

    def mismatch(x_shape: tuple, y_shape: tuple, shortcut: tuple) -> LayerValueError:
        if len(children) == 2:
            return shape_error(
                name,
                f"the projection maps the input {x_shape} to {shortcut}, but the layer maps it "
                f"to {y_shape}; they are added, so they must have the same shape.",
            )
        if len(x_shape) == len(y_shape) and x_shape[:-1] == y_shape[:-1]:
            fix = f"e.g. residual(layer, projection=Dense({y_shape[-1]}))"
        else:
            fix = f"a layer that maps {x_shape} to {y_shape}, e.g. a strided 1x1 convolution"
        return shape_error(
            name,
            f"the layer maps the input {x_shape} to {y_shape}, so x + layer(x) is not defined "
            f"(funcnet does not broadcast). Give the shortcut a projection: {fix}.",
        )

    def init(key, input_shape):
        x_shape = check_input_shape(name, input_shape, min_rank=0)
        results = [
            init_child(segment, child, k, input_shape)
            for segment, child, k in zip(segments, children, split_key(key, len(children)))
        ]
        for segment, (shape, _, _) in zip(segments, results):
            if not is_shape(shape):
                raise shape_error(
                    segment, f"expected a layer with one output, got output shapes {shape!r}."
                )
        y_shape = shape_of(results[0][0])
        shortcut = shape_of(results[-1][0]) if len(children) == 2 else x_shape
        merged = [_merge_dim(a, b) for a, b in zip(y_shape, shortcut)]
        if len(y_shape) != len(shortcut) or any(m is False for m in merged):
            raise mismatch(x_shape, y_shape, shortcut)
        return tuple(merged), tuple(r[1] for r in results), tuple(r[2] for r in results)

    def apply(params, state, x, *, key=None, train=False):
        check_children_tree(name, len(children), params, state)
        keys = split_key(key, len(children))
        y, body_state = apply_child(
            segments[0], children[0], params[0], state[0], x, key=keys[0], train=train
        )
        new_state = [body_state]
        shortcut = x
        if len(children) == 2:
            shortcut, proj_state = apply_child(
                segments[1], children[1], params[1], state[1], x, key=keys[1], train=train
            )
            new_state.append(proj_state)
        if jnp.shape(y) != jnp.shape(shortcut):
            raise mismatch(jnp.shape(x), jnp.shape(y), jnp.shape(shortcut))
        return y + shortcut, tuple(new_state)

    return Layer(init, apply, name)


def repeat(layer: Any, n: int, *, name: str = "repeat") -> Layer:
    """``n`` copies of ``layer`` in a chain, run with ``jax.lax.scan``.

    The copies' params (and state) are stacked along a new leading axis of
    size ``n``, and the chain is one ``lax.scan`` over them, so the compiled
    program, and its compile time, do not grow with ``n``. The result equals
    ``serial`` of ``n`` copies with the same params. The layer must map its
    input to an output of the same shape and dtype.

    Args:
        layer: the block to repeat (a layer or function); its output shape
            must equal its input shape.
        n: the number of copies, ``>= 1``.
        name: the name used in error paths and summaries.

    Returns:
        A layer whose params and state are ``layer``'s with a leading axis of
        size ``n``; copy ``i`` uses ``jax.tree.map(lambda a: a[i], params)``.

    Example:
        >>> import jax, funcnet as fn
        >>> deep = fn.repeat(fn.Dense(8, "relu"), 6)
        >>> out_shape, params, state = deep.init(jax.random.key(0), (None, 8))
        >>> out_shape, jax.tree.map(jax.numpy.shape, params)
        ((None, 8), {'b': (6, 8), 'w': (6, 8, 8)})
    """
    child = as_layer(layer)
    _check_count(name, n)
    segment = f"{name}[0:{n}]"

    def init_stacked(key, input_shape):
        shapes = []

        def init_one(k):
            shape, params, state = child.init(k, input_shape)
            shapes.append(shape)
            return params, state

        # Rows recorded inside would describe one copy; the stack's own row
        # (from init_child below) counts all n.
        with record_layers():
            params, state = jax.vmap(init_one)(jax.random.split(key, n))
        return shapes[0], params, state

    stacked = Layer(init_stacked, child.apply, child.name)

    def init(key, input_shape):
        output_shape, params, state = init_child(segment, stacked, key, input_shape)
        if _plain(output_shape) != _plain(input_shape):
            raise shape_error(
                name,
                f"the layer maps its input {_plain(input_shape)} to {_plain(output_shape)}, but "
                "repeat feeds each copy's output to the next copy, so they must be equal. "
                "Use serial(...) to chain layers that change the shape.",
            )
        return output_shape, params, state

    def check_stacked(params, state):
        for what, tree in (("params", params), ("state", state)):
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
                if jnp.ndim(leaf) < 1 or jnp.shape(leaf)[0] != n:
                    raise shape_error(
                        name,
                        f"expected {what} stacked along a leading axis of size {n} (one slice per "
                        f"copy), got {what}{jax.tree_util.keystr(path)} of shape {jnp.shape(leaf)}. "
                        "Pass the params and state returned by this model's own init.",
                    )

    def check_carry(x, y):
        x_shapes, y_shapes = jax.tree.map(jnp.shape, x), jax.tree.map(jnp.shape, y)
        if jax.tree.structure(x) != jax.tree.structure(y) or x_shapes != y_shapes:
            raise shape_error(
                name,
                f"the layer maps an input of shape {x_shapes} to {y_shapes}, but repeat needs "
                "them equal. Use serial(...) to chain layers that change the shape.",
            )
        x_dtypes, y_dtypes = jax.tree.map(jnp.result_type, x), jax.tree.map(jnp.result_type, y)
        if x_dtypes != y_dtypes:
            raise type_error(
                name,
                f"the layer turns inputs of dtype {x_dtypes} into {y_dtypes}, but repeat needs "
                "the same dtype in and out. Leave the layer's dtype=None, or cast the input.",
            )

    def apply(params, state, x, *, key=None, train=False):
        check_stacked(params, state)
        keys = None if key is None else jax.random.split(key, n)

        def step(carry, per_copy):
            p, s, k = per_copy
            y, s = apply_child(segment, child, p, s, carry, key=k, train=train)
            check_carry(carry, y)
            return y, s

        return jax.lax.scan(step, x, (params, state, keys), length=n)

    return Layer(init, apply, name)
