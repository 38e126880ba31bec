"""Combinators: layers built from layers.

``serial``, ``parallel``, ``branches``, ``fanout``, the fan-ins, ``residual``,
``repeat`` and ``remat``. Each returns a :class:`~funcnet.Layer`; children may be layers
or plain functions ``f(x) -> y``. Params of a combinator are tuples with one
entry per child, errors raised by a child carry its path
(``serial[2].parallel[1].Dense``), and :func:`funcnet.summary` lists it. The
decisions behind the params layout, the shape checks and ``repeat``'s scan
are in ``docs/combinators.md``.

>>> import jax, funcnet as fn
>>> net = fn.serial(fn.Dense(4), fn.residual(fn.Dense(4)), fn.Dense(1))
>>> net.init(jax.random.key(0), (None, 3))[0]
(None, 1)
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from funcnet._src.core import (
    InputShape,
    Layer,
    LayerValueError,
    Params,
    State,
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


def _children(name: str, layers: Sequence[Any]) -> tuple[Layer, ...]:
    if not layers:
        raise ValueError(f"{name}: needs at least one layer, got none.")
    return tuple(as_layer(layer) for layer in layers)


def _check_count(name: str, n: Any) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"{name}: n must be an integer >= 1, got {n!r}.")
    return n


def _plain(spec: InputShape) -> Any:
    """A shape spec as plain tuples, for comparisons."""
    if is_shape(spec):
        return shape_of(spec)
    return tuple(_plain(s) for s in spec)


def _input_shapes(name: str, input_shape: InputShape, n: int | None, hint: str) -> tuple:
    """Checks that init got a tuple of (``n``, if given) input shapes."""
    if is_shape(input_shape) or not isinstance(input_shape, (tuple, list)):
        expected = f"a tuple of {n} input shapes" if n else "a tuple of input shapes"
        raise shape_error(name, f"expected {expected}, got one shape {input_shape!r}. {hint}")
    if n is not None and len(input_shape) != n:
        raise shape_error(
            name,
            f"expected {n} inputs (one per layer), got {len(input_shape)} input shapes "
            f"{tuple(input_shape)!r}. Give one input per layer, or change the layers.",
        )
    return tuple(input_shape)


def _inputs(name: str, x: Any, n: int | None, hint: str) -> tuple:
    """Checks that apply got a tuple of (``n``, if given) inputs."""
    if not isinstance(x, (tuple, list)):
        expected = f"a tuple of {n} inputs" if n else "a tuple of inputs"
        raise shape_error(
            name, f"expected {expected}, got one array of shape {jnp.shape(x)}. {hint}"
        )
    if n is not None and len(x) != n:
        raise shape_error(
            name, f"expected {n} inputs (one per layer), got {len(x)}. Give one input per layer."
        )
    return tuple(x)


_MULTI_HINT = "Put it after a layer with several outputs, such as parallel, branches or fanout."


def _merge_dim(a: int | None, b: int | None) -> int | bool | None:
    """The common dimension of ``a`` and ``b`` (``None`` matches anything), or False."""
    if a is None:
        return b
    if b is None or a == b:
        return a
    return False


# --------------------------------------------------------------------------
# Chains and branches


def serial(*layers: Any, name: str = "serial") -> Layer:
    """Chains layers: the output of each is the input of the next.

    Args:
        *layers: layers or plain functions ``f(x) -> y``, in order.
        name: the name used in error paths and summaries.

    Returns:
        A layer whose params and state are tuples with one entry per child.

    Example:
        >>> import jax, funcnet as fn
        >>> net = fn.serial(fn.Dense(4), jax.nn.tanh, fn.Dense(1))
        >>> out_shape, params, state = net.init(jax.random.key(0), (None, 2))
        >>> out_shape, len(params)
        ((None, 1), 3)
    """
    children = tuple(as_layer(layer) for layer in layers)
    segments = tuple(f"{name}[{i}]" for i in range(len(children)))

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Any, Params, State]:
        params, states = [], []
        shape = input_shape
        for segment, child, child_key in zip(segments, children, split_key(key, len(children))):
            shape, child_params, child_state = init_child(segment, child, child_key, shape)
            params.append(child_params)
            states.append(child_state)
        return shape, tuple(params), tuple(states)

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[Any, State]:
        check_children_tree(name, len(children), params, state)
        new_states = []
        keys = split_key(key, len(children))
        for segment, child, p, s, k in zip(segments, children, params, state, keys):
            x, s = apply_child(segment, child, p, s, x, key=k, train=train)
            new_states.append(s)
        return x, tuple(new_states)

    return Layer(init, apply, name)


def _side_by_side(name: str, children: tuple[Layer, ...], shared_input: bool) -> Layer:
    """Children applied next to each other, to one shared input or one input each."""
    n = len(children)
    segments = tuple(f"{name}[{i}]" for i in range(n))
    hint = f"Use branches(...) to give one input to every layer, or put fanout({n}) before {name}."

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Any, Params, State]:
        shapes = (input_shape,) * n if shared_input else _input_shapes(name, input_shape, n, hint)
        results = [
            init_child(segment, child, k, shape)
            for segment, child, k, shape in zip(segments, children, split_key(key, n), shapes)
        ]
        shapes_out, params, states = (tuple(r[i] for r in results) for i in range(3))
        return shapes_out, params, states

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[Any, State]:
        check_children_tree(name, n, params, state)
        xs = (x,) * n if shared_input else _inputs(name, x, n, hint)
        results = [
            apply_child(segment, child, p, s, xi, key=k, train=train)
            for segment, child, p, s, xi, k in zip(
                segments, children, params, state, xs, split_key(key, n)
            )
        ]
        return tuple(r[0] for r in results), tuple(r[1] for r in results)

    return Layer(init, apply, name)


def parallel(*layers: Any, name: str = "parallel") -> Layer:
    """Applies each layer to its own input: a tuple in, a tuple out (as stax.parallel).

    Args:
        *layers: layers or plain functions; the ``i``-th gets the ``i``-th input.
        name: the name used in error paths and summaries.

    Returns:
        A layer mapping a tuple of ``len(layers)`` inputs to the tuple of the
        layers' outputs; params and state are tuples, one entry per layer.

    Example:
        >>> import jax, funcnet as fn
        >>> net = fn.parallel(fn.Dense(4), fn.Dense(2))
        >>> net.init(jax.random.key(0), ((None, 3), (None, 5)))[0]
        ((None, 4), (None, 2))
    """
    return _side_by_side(name, _children(name, layers), shared_input=False)


def branches(*layers: Any, name: str = "branches") -> Layer:
    """Applies every layer to the same input: one input, a tuple of outputs.

    The same as ``serial(fanout(len(layers)), parallel(*layers))`` with shorter
    paths (``branches[1].Dense``). Use it for multi-head networks and
    inception-style blocks, followed by a fan-in or by one loss per head.

    Args:
        *layers: layers or plain functions, each given the whole input.
        name: the name used in error paths and summaries.

    Returns:
        A layer mapping ``x`` to ``(layers[0](x), layers[1](x), ...)``; params
        and state are tuples, one entry per layer.

    Example:
        >>> import jax, funcnet as fn
        >>> heads = fn.branches(fn.Dense(1), fn.Dense(3))
        >>> heads.init(jax.random.key(0), (None, 8))[0]
        ((None, 1), (None, 3))
    """
    return _side_by_side(name, _children(name, layers), shared_input=True)


def fanout(n: int, *, name: str = "fanout") -> Layer:
    """Copies one input into a tuple of ``n``, to feed :func:`parallel`.

    Args:
        n: the number of copies, ``>= 1``.
        name: the name used in error paths and summaries.

    Returns:
        A parameterless layer mapping ``x`` to ``(x,) * n``.

    Example:
        >>> import jax, funcnet as fn
        >>> fn.fanout(2).init(jax.random.key(0), (None, 3))[0]
        ((None, 3), (None, 3))
    """
    _check_count(name, n)

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Any, Params, State]:
        del key
        spec = tuple(input_shape) if isinstance(input_shape, list) else input_shape
        return (spec,) * n, {}, {}

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[Any, State]:
        del params, key, train
        return (x,) * n, state

    return Layer(init, apply, name)


# --------------------------------------------------------------------------
# Fan-in


def _check_dtypes(name: str, xs: tuple, what: str) -> None:
    dtypes = [jnp.result_type(x) for x in xs]
    if any(d != dtypes[0] for d in dtypes):
        raise type_error(
            name,
            f"cannot {what} inputs of different dtypes {', '.join(map(str, dtypes))}. "
            "Cast the branches to one dtype (e.g. give their layers the same dtype=).",
        )


def fan_in_sum(*, name: str = "fan_in_sum") -> Layer:
    """Sums a tuple of inputs elementwise; their shapes must be equal.

    There is no broadcasting: inputs of different shapes are an error that
    names them, since broadcasting between branches is almost always a bug.

    Args:
        name: the name used in error paths and summaries.

    Returns:
        A parameterless layer mapping ``(x1, x2, ...)``, each ``[batch, ...]``,
        to ``x1 + x2 + ...``.

    Example:
        >>> import jax.numpy as jnp, funcnet as fn
        >>> y, _ = fn.fan_in_sum().apply({}, {}, (jnp.ones((2, 3)), 2 * jnp.ones((2, 3))))
        >>> y.tolist()
        [[3.0, 3.0, 3.0], [3.0, 3.0, 3.0]]
    """

    def mismatch(a: tuple, b: tuple) -> LayerValueError:
        return shape_error(
            name,
            f"cannot sum inputs of different shapes {a} and {b} (funcnet does not broadcast). "
            "Make the branches produce the same shape, e.g. end each with the same Dense(units), "
            "or join them with fan_in_concat.",
        )

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Any, Params, State]:
        del key
        shapes = [
            check_input_shape(name, s, min_rank=0)
            for s in _input_shapes(name, input_shape, None, _MULTI_HINT)
        ]
        out = shapes[0]
        for shape in shapes[1:]:
            merged = [_merge_dim(a, b) for a, b in zip(out, shape)]
            if len(shape) != len(out) or any(m is False for m in merged):
                raise mismatch(shapes[0], shape)
            out = tuple(merged)
        return out, {}, {}

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[Any, State]:
        del params, key, train
        xs = tuple(jnp.asarray(a) for a in _inputs(name, x, None, _MULTI_HINT))
        for a in xs[1:]:
            if a.shape != xs[0].shape:
                raise mismatch(xs[0].shape, a.shape)
        _check_dtypes(name, xs, "sum")
        total = xs[0]
        for a in xs[1:]:
            total = total + a
        return total, state

    return Layer(init, apply, name)


def fan_in_concat(axis: int = -1, *, name: str = "fan_in_concat") -> Layer:
    """Concatenates a tuple of inputs along ``axis``; their other axes must be equal.

    Args:
        axis: the axis to join along (negative counts from the end; the batch
            axis is 0).
        name: the name used in error paths and summaries.

    Returns:
        A parameterless layer mapping ``(x1, x2, ...)`` to their concatenation,
        e.g. ``[batch, 3]`` and ``[batch, 5]`` to ``[batch, 8]``.

    Example:
        >>> import jax, funcnet as fn
        >>> fn.fan_in_concat().init(jax.random.key(0), ((None, 3), (None, 5)))[0]
        (None, 8)
    """
    if not isinstance(axis, int) or isinstance(axis, bool):
        raise TypeError(f"{name}: axis must be an integer, got {axis!r}.")

    def normalized(rank: int) -> int:
        if not -rank <= axis < rank:
            raise shape_error(
                name, f"axis {axis} is out of range for inputs of rank {rank} (batch included)."
            )
        return axis % rank

    def mismatch(a: tuple, b: tuple, ax: int) -> LayerValueError:
        return shape_error(
            name,
            f"cannot concatenate inputs of shapes {a} and {b} along axis {axis}: every other "
            f"axis must be equal (only axis {ax} may differ). Reshape or project the branches first.",
        )

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Any, Params, State]:
        del key
        shapes = [
            check_input_shape(name, s) for s in _input_shapes(name, input_shape, None, _MULTI_HINT)
        ]
        ax = normalized(len(shapes[0]))
        out: list[int | None] = list(shapes[0])
        for shape in shapes[1:]:
            if len(shape) != len(out):
                raise mismatch(shapes[0], shape, ax)
            for i, d in enumerate(shape):
                if i == ax:
                    known = out[i]
                    out[i] = None if known is None or d is None else known + d
                elif (merged := _merge_dim(out[i], d)) is False:
                    raise mismatch(shapes[0], shape, ax)
                else:
                    out[i] = merged
        return tuple(out), {}, {}

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[Any, State]:
        del params, key, train
        xs = tuple(jnp.asarray(a) for a in _inputs(name, x, None, _MULTI_HINT))
        ax = normalized(xs[0].ndim)
        for a in xs[1:]:
            if a.ndim != xs[0].ndim or any(
                d != e for i, (d, e) in enumerate(zip(a.shape, xs[0].shape)) if i != ax
            ):
                raise mismatch(xs[0].shape, a.shape, ax)
        _check_dtypes(name, xs, "concatenate")
        return jnp.concatenate(xs, axis=ax), state

    return Layer(init, apply, name)


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

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Any, Params, State]:
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

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[Any, State]:
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


def repeat(layer: Any, n: int, *, remat: Any = False, name: str = "repeat") -> Layer:
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
        remat: rematerialise each copy in the backward pass (as
            :func:`remat`): ``True`` keeps only each copy's input and
            recomputes the rest; a policy (a name from
            ``jax.checkpoint_policies`` such as ``"dots_saveable"``, or a
            policy function) keeps what it saves. ``False`` (the default)
            keeps every intermediate.
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
    saved = (
        None
        if remat is False or remat is True
        else checkpoint_policy(remat, name, "remat", "False, True")
    )

    def init_stacked(key: jax.Array, input_shape: InputShape) -> tuple[Any, Params, State]:
        shapes = []

        def init_one(k: jax.Array) -> tuple[Params, State]:
            shape, params, state = child.init(k, input_shape)
            shapes.append(shape)
            return params, state

        # Rows recorded inside would describe one copy; the stack's own row
        # (from init_child below) counts all n.
        with record_layers():
            params, state = jax.vmap(init_one)(jax.random.split(key, n))
        return shapes[0], params, state

    stacked = Layer(init_stacked, child.apply, child.name)

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Any, Params, State]:
        output_shape, params, state = init_child(segment, stacked, key, input_shape)
        if _plain(output_shape) != _plain(input_shape):
            raise shape_error(
                name,
                f"the layer maps its input {_plain(input_shape)} to {_plain(output_shape)}, but "
                "repeat feeds each copy's output to the next copy, so they must be equal. "
                "Use serial(...) to chain layers that change the shape.",
            )
        return output_shape, params, state

    def check_stacked(params: Params, state: State) -> None:
        for what, tree in (("params", params), ("state", state)):
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
                if jnp.ndim(leaf) < 1 or jnp.shape(leaf)[0] != n:
                    raise shape_error(
                        name,
                        f"expected {what} stacked along a leading axis of size {n} (one slice per "
                        f"copy), got {what}{jax.tree_util.keystr(path)} of shape {jnp.shape(leaf)}. "
                        "Pass the params and state returned by this model's own init.",
                    )

    def check_carry(x: Any, y: Any) -> None:
        x_shapes, y_shapes = jax.tree.map(jnp.shape, x), jax.tree.map(jnp.shape, y)
        x_tree: Any = jax.tree.structure(x)  # typed loosely: PyTreeDef has no __eq__ stub
        if x_tree != jax.tree.structure(y) or x_shapes != y_shapes:
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

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[Any, State]:
        check_stacked(params, state)
        keys = None if key is None else jax.random.split(key, n)

        def step(carry: Any, per_copy: tuple[Params, State, jax.Array | None]) -> tuple[Any, State]:
            p, s, k = per_copy
            y, s = apply_child(segment, child, p, s, carry, key=k, train=train)
            check_carry(carry, y)
            return y, s

        if remat is not False:
            # Inside a scan the loop already keeps XLA from merging the
            # recomputation with the forward pass: prevent_cse is not needed.
            step = jax.checkpoint(step, policy=saved, prevent_cse=False)
        return jax.lax.scan(step, x, (params, state, keys), length=n)

    return Layer(init, apply, name)


REMAT_POLICIES = (
    "nothing_saveable",
    "everything_saveable",
    "dots_saveable",
    "checkpoint_dots",
    "dots_with_no_batch_dims_saveable",
    "checkpoint_dots_with_no_batch_dims",
)
"""The ``jax.checkpoint_policies`` that :func:`remat` accepts by name (those that are policies, not factories)."""


def checkpoint_policy(
    policy: Any, where: str, argument: str = "policy", accepted: str = "None"
) -> Callable[..., bool] | None:
    """A ``jax.checkpoint`` policy from None, a name in :data:`REMAT_POLICIES` or a policy function.

    ``where``, ``argument`` and ``accepted`` (what else the argument takes)
    name the caller's argument in the error.
    """
    if policy is None:
        return None
    if isinstance(policy, str):
        if policy in REMAT_POLICIES:
            return getattr(jax.checkpoint_policies, policy)
        close = difflib.get_close_matches(policy, REMAT_POLICIES, n=1)
        factories = ", ".join(
            n
            for n in dir(jax.checkpoint_policies)
            if not n.startswith("_") and n not in REMAT_POLICIES
        )
        made = (
            f" {policy} makes a policy: call it, e.g. "
            f"jax.checkpoint_policies.{policy}('name'), and pass the result."
            if policy in factories.split(", ")
            else (f" Did you mean {close[0]!r}?" if close else "")
        )
        raise ValueError(
            f"{where}: {argument} must be {accepted}, one of "
            f"{', '.join(map(repr, REMAT_POLICIES))} or a policy function from "
            f"jax.checkpoint_policies, got {policy!r}.{made}"
        )
    if callable(policy) and not isinstance(policy, Layer):
        return policy
    raise TypeError(
        f"{where}: {argument} must be {accepted}, a name such as 'dots_saveable' or a function "
        f"from jax.checkpoint_policies, got {type(policy).__name__}: {policy!r:.80}."
    )


def remat(layer: Any, policy: Any = None, *, name: str = "remat") -> Layer:
    """``layer`` rematerialised: its intermediates recomputed in the backward pass (``jax.checkpoint``).

    The forward pass keeps only the layer's inputs (and what ``policy``
    saves); the backward pass runs the layer again to get the rest. Memory
    for activations falls, at the cost of a second forward pass through the
    layer; values and gradients are unchanged. Params and state are
    ``layer``'s own, so ``remat(layer)`` takes the params of ``layer``. For a
    deep stack, ``repeat(block, n, remat=True)`` rematerialises every copy.

    Args:
        layer: the layer (or function) to rematerialise, with input
            ``[batch, ...]`` as it takes.
        policy: what to save rather than recompute: None (nothing but the
            inputs), a name from :data:`REMAT_POLICIES` (e.g.
            ``"dots_saveable"``: keep matrix products, recompute the cheap
            elementwise work), or a policy function such as
            ``jax.checkpoint_policies.save_only_these_names("attention")``.
        name: the name used in error paths and summaries.

    Returns:
        A layer with ``layer``'s output shape, params and state.

    Example:
        >>> import jax, jax.numpy as jnp, funcnet as fn
        >>> block = fn.serial(fn.Dense(8, "tanh"), fn.Dense(8, "tanh"))
        >>> _, params, state = block.init(jax.random.key(0), (None, 8))
        >>> x = jnp.ones((2, 8))
        >>> loss = lambda net: lambda p: jnp.sum(net.apply(p, state, x)[0])
        >>> g = jax.grad(loss(block))(params)
        >>> g_remat = jax.grad(loss(fn.remat(block, "dots_saveable")))(params)
        >>> bool(jnp.allclose(g[0]["w"], g_remat[0]["w"]))
        True
    """
    child = as_layer(layer)
    saved = checkpoint_policy(policy, name)

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Any, Params, State]:
        return init_child(name, child, key, input_shape)

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[Any, State]:
        def run(params: Params, state: State, x: Any, key: jax.Array | None) -> tuple[Any, State]:
            return apply_child(name, child, params, state, x, key=key, train=train)

        return jax.checkpoint(run, policy=saved)(params, state, x, key)

    return Layer(init, apply, name)
