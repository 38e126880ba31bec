"""The layer protocol, shapes, errors and adapters: the bottom of funcnet.

Every layer in funcnet is a :class:`Layer`, a named pair of pure functions::

    init(key, input_shape) -> (output_shape, params, state)
    apply(params, state, x, *, key=None, train=False) -> (y, new_state)

* ``init`` works from shapes alone. ``input_shape`` is a tuple whose batch
  dimension may be ``None``, or a :class:`jax.ShapeDtypeStruct` where the
  dtype matters (integer ids for an embedding). A layer with several inputs
  takes a tuple of shapes; one with several outputs reports a tuple of shapes.
* ``params`` are the trainable leaves, in named dicts (``{"w": ..., "b": ...}``);
  combinators keep their children's params in tuples, in order.
* ``state`` holds what the optimizer does not train (running statistics,
  counters). Stateless layers use ``{}`` and hand it back unchanged.
* ``key`` is needed only by stochastic layers when ``train=True``.
* ``train=False`` is the default, so inference is deterministic.

Errors raised while building or running a model are :class:`LayerError`\\ s.
Each carries the path of the failing layer inside the model
(``serial[2].Dense``), so the message says where, what was expected, what
arrived, and the likely fix.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple, NoReturn, Protocol, overload

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

Shape = tuple[int | None, ...]
"""A shape whose batch (or any) dimension may be ``None``."""

InputShape = Any
"""A :data:`Shape`, a :class:`jax.ShapeDtypeStruct`, or a tuple of these."""

Params = Any
State = Any


class InitFn(Protocol):
    def __call__(self, key: jax.Array, input_shape: InputShape) -> tuple[Any, Params, State]:
        """Returns ``(output_shape, params, state)`` for inputs of ``input_shape``."""
        ...


class ApplyFn(Protocol):
    def __call__(
        self,
        params: Params,
        state: State,
        x: Any,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[Any, State]:
        """Returns ``(y, new_state)``."""
        ...


class Layer(NamedTuple):
    """A layer: pure ``init`` and ``apply`` functions and a display name.

    Example:
        >>> import jax, funcnet as fn
        >>> net = fn.Dense(3)
        >>> out_shape, params, state = net.init(jax.random.key(0), (None, 2))
        >>> out_shape
        (None, 3)
        >>> y, state = net.apply(params, state, jax.numpy.ones((5, 2)))
        >>> y.shape
        (5, 3)
    """

    init: InitFn
    apply: ApplyFn
    name: str = "Layer"


# --------------------------------------------------------------------------
# Errors that name the layer


class LayerError(Exception):
    """A layer rejected its input. ``path`` says where it sits in the model."""

    def __init__(self, message: str, path: Sequence[str] = ()):
        self.message = message
        self.path = tuple(path)
        where = ".".join(self.path)
        super().__init__(f"{where}: {message}" if where else message)

    def within(self, segment: str) -> LayerError:
        """The same error, seen from the parent whose path segment is ``segment``."""
        return type(self)(self.message, (segment, *self.path))


class LayerValueError(LayerError, ValueError):
    """A layer got a value of the wrong shape or content."""


class LayerTypeError(LayerError, TypeError):
    """A layer got a value of the wrong type or dtype."""


def shape_error(layer: str, message: str) -> LayerValueError:
    """Builds the error a layer named ``layer`` raises for a bad shape."""
    return LayerValueError(message, (layer,))


def type_error(layer: str, message: str) -> LayerTypeError:
    """Builds the error a layer named ``layer`` raises for a bad dtype or type."""
    return LayerTypeError(message, (layer,))


def _raise_within(segment: str, child: Layer, error: Exception) -> NoReturn:
    """Raises ``error``, which escaped ``child``, again with ``segment`` added to its path.

    A foreign error (a bug in a user's function, a JAX error) becomes a
    :class:`LayerError` chained to it (``raise ... from error``), so the
    traceback still reaches the line that failed. A :class:`LayerError` seen
    again by an outer combinator keeps the cause found at the bottom, so
    however deep the model, the traceback holds one link: the original error,
    then the error with the full path. funcnet's own checks have no cause, and
    show only the message.
    """
    if isinstance(error, LayerError):
        raise error.within(segment) from error.__cause__
    detail = f"{type(error).__name__}: {error}"
    path = (segment, child.name)
    if isinstance(error, TypeError):
        raise LayerTypeError(detail, path) from error
    raise LayerValueError(detail, path) from error


# --------------------------------------------------------------------------
# Shapes


def is_shape(spec: Any) -> bool:
    """True for one shape (a tuple of ints and ``None``, or a ShapeDtypeStruct)."""
    if isinstance(spec, jax.ShapeDtypeStruct):
        return True
    return isinstance(spec, (tuple, list)) and all(
        d is None or isinstance(d, (int, np.integer)) for d in spec
    )


def shape_of(spec: InputShape) -> Shape:
    """The plain tuple shape of one input spec."""
    if isinstance(spec, jax.ShapeDtypeStruct):
        return tuple(spec.shape)
    return tuple(None if d is None else int(d) for d in spec)


def dtype_of(spec: InputShape, default: Any = jnp.float32) -> Any:
    """The dtype of one input spec: its own if it is a ShapeDtypeStruct."""
    if isinstance(spec, jax.ShapeDtypeStruct):
        return spec.dtype
    return default


def check_input_shape(layer: str, input_shape: InputShape, *, min_rank: int = 1) -> Shape:
    """Validates one input shape given to ``init`` and returns it as a tuple."""
    if not is_shape(input_shape):
        raise shape_error(
            layer,
            f"expected one input shape such as (None, 3), got {input_shape!r}. "
            "A layer with one input takes one shape; tuples of shapes are for "
            "layers with several inputs.",
        )
    shape = shape_of(input_shape)
    if len(shape) < min_rank:
        raise shape_error(
            layer,
            f"expected an input of rank >= {min_rank} (batch dimension included), "
            f"got shape {shape}. Add the batch dimension, e.g. (None, {', '.join(map(str, shape)) or 'features'}).",
        )
    return shape


def check_float(layer: str, x: ArrayLike) -> jax.Array:
    """Returns ``x`` as an array, raising if it is not floating point."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise type_error(
            layer,
            f"expected floating-point input, got dtype {x.dtype} (shape {x.shape}). "
            "Convert it first, e.g. x.astype(jnp.float32).",
        )
    return x


def is_key(leaf: Any) -> bool:
    """Whether ``leaf`` is a typed PRNG key array (``jax.random.key``)."""
    dtype = getattr(leaf, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def expand_to(a: jax.Array, ndim: int) -> jax.Array:
    """``a`` with leading unit axes added up to rank ``ndim``, for explicit broadcasting.

    funcnet never relies on implicit rank promotion, so models also run under
    ``jax_numpy_rank_promotion="raise"``.
    """
    return a.reshape((1,) * (ndim - a.ndim) + a.shape)


def _concrete(spec: InputShape, batch: int) -> Any:
    """A ShapeDtypeStruct pytree with every ``None`` dimension set to ``batch``."""
    if is_shape(spec):
        dims = tuple(batch if d is None else d for d in shape_of(spec))
        return jax.ShapeDtypeStruct(dims, dtype_of(spec))
    return type(spec)(_concrete(s, batch) for s in spec)


def _abstract(a: Any, b: Any) -> Any:
    """Merges two evaluated shapes: dimensions that differ are the batch (``None``)."""
    if isinstance(a, jax.ShapeDtypeStruct):
        return tuple(da if da == db else None for da, db in zip(a.shape, b.shape))
    if isinstance(a, dict):
        return {k: _abstract(a[k], b[k]) for k in a}
    return type(a)(_abstract(x, y) for x, y in zip(a, b))


def infer_output_shape(fn: Callable[[Any], Any], input_shape: InputShape) -> Any:
    """The output shape of ``fn`` for inputs of ``input_shape``, by ``jax.eval_shape``.

    ``None`` dimensions are evaluated at two sizes; output dimensions that
    follow them are reported as ``None``.
    """
    if not _has_none(input_shape):
        out = jax.eval_shape(fn, _concrete(input_shape, 1))
        return jax.tree.map(lambda s: tuple(s.shape), out)
    return _abstract(
        jax.eval_shape(fn, _concrete(input_shape, 2)),
        jax.eval_shape(fn, _concrete(input_shape, 3)),
    )


def _has_none(spec: InputShape) -> bool:
    if is_shape(spec):
        return None in shape_of(spec)
    return any(_has_none(s) for s in spec)


# --------------------------------------------------------------------------
# Children of combinators: error paths and model summaries


class SummaryRow(NamedTuple):
    """One row of :func:`funcnet.summary`: where a layer sits, its output, its size."""

    path: str
    depth: int
    output_shape: Any
    param_count: int


class _Recorder:
    def __init__(self) -> None:
        self.rows: list[SummaryRow] = []
        self.segments: list[str] = []


_RECORDER: contextvars.ContextVar[_Recorder | None] = contextvars.ContextVar(
    "funcnet_summary_recorder", default=None
)


@contextlib.contextmanager
def record_layers() -> Iterator[list[SummaryRow]]:
    """Collects a :class:`SummaryRow` for every child initialised inside the block."""
    recorder = _Recorder()
    token = _RECORDER.set(recorder)
    try:
        yield recorder.rows
    finally:
        _RECORDER.reset(token)


def param_count(params: Params) -> int:
    """The number of scalars in a params pytree."""
    return sum(int(math.prod(np.shape(leaf))) for leaf in jax.tree.leaves(params))


def init_child(
    segment: str, child: Layer, key: jax.Array, input_shape: InputShape
) -> tuple[Any, Params, State]:
    """Initialises a combinator's child, naming it ``segment`` in errors.

    Combinators call this instead of ``child.init`` so that errors carry the
    child's path and :func:`funcnet.summary` can list it.
    """
    recorder = _RECORDER.get()
    if recorder is not None:
        recorder.segments.append(segment)
        row_index = len(recorder.rows)
    try:
        output_shape, params, state = child.init(key, input_shape)
    except Exception as error:
        _raise_within(segment, child, error)
    finally:
        if recorder is not None:
            recorder.segments.pop()
    if recorder is not None:
        path = ".".join([*recorder.segments, segment, child.name])
        row = SummaryRow(path, len(recorder.segments), output_shape, param_count(params))
        recorder.rows.insert(row_index, row)
    return output_shape, params, state


def apply_child(
    segment: str,
    child: Layer,
    params: Params,
    state: State,
    x: Any,
    *,
    key: jax.Array | None,
    train: bool,
) -> tuple[Any, State]:
    """Applies a combinator's child, naming it ``segment`` in errors."""
    try:
        return child.apply(params, state, x, key=key, train=train)
    except Exception as error:
        _raise_within(segment, child, error)


def check_children_tree(name: str, n_children: int, params: Params, state: State) -> None:
    """Raises unless ``params`` and ``state`` are tuples with one entry per child."""
    for what, tree in (("params", params), ("state", state)):
        if not isinstance(tree, (tuple, list)) or len(tree) != n_children:
            got = f"{len(tree)} entries" if isinstance(tree, (tuple, list)) else type(tree).__name__
            raise LayerValueError(
                f"expected {what} as a tuple of {n_children} entries (one per child), got {got}. "
                f"Pass the {what} returned by this model's own init.",
                (name,),
            )


@overload
def split_key(key: jax.Array, n: int) -> list[jax.Array]: ...
@overload
def split_key(key: jax.Array | None, n: int) -> list[jax.Array | None]: ...
def split_key(key: jax.Array | None, n: int) -> list[jax.Array] | list[jax.Array | None]:
    """``n`` independent keys from ``key`` (or ``n`` Nones when there is no key)."""
    if key is None:
        no_keys: list[jax.Array | None] = [None] * n
        return no_keys
    return list(jax.random.split(key, n))


# --------------------------------------------------------------------------
# Adapters


def Lambda(fn: Callable[[Any], Any], name: str | None = None) -> Layer:
    """A parameterless layer from a plain function ``fn(x) -> y``.

    Combinators apply this conversion themselves, so ``serial(Dense(4),
    jax.nn.tanh)`` works. The output shape is inferred with ``jax.eval_shape``.

    Example:
        >>> import jax, funcnet as fn
        >>> double = fn.Lambda(lambda x: 2 * x, name="double")
        >>> double.init(jax.random.key(0), (None, 3))[0]
        (None, 3)
    """
    layer_name = name or getattr(fn, "__name__", None) or "Lambda"
    if layer_name == "<lambda>":
        layer_name = "Lambda"

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Any, Params, State]:
        del key
        return infer_output_shape(fn, input_shape), {}, {}

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[Any, State]:
        del params, key, train
        return fn(x), state

    return Layer(init, apply, layer_name)


def as_layer(obj: Any) -> Layer:
    """Converts what a combinator was given into a :class:`Layer`.

    Layers pass through and plain callables become :func:`Lambda` layers.
    Anything else is rejected with the fix.
    """
    if isinstance(obj, Layer):
        return obj
    if isinstance(obj, tuple) and len(obj) == 2 and all(callable(f) for f in obj):
        raise TypeError(
            "got a pair of functions, which looks like a stax (init_fun, apply_fun) "
            "layer. Convert it with funcnet.from_stax(pair)."
        )
    if callable(obj):
        return Lambda(obj)
    raise TypeError(
        f"expected a funcnet Layer or a function x -> y, got {type(obj).__name__}: {obj!r}. "
        "Layer constructors are calls: write Relu(), not Relu."
    )


def from_stax(pair: tuple[Callable, Callable], name: str = "stax") -> Layer:
    """A funcnet layer from a stax ``(init_fun, apply_fun)`` pair.

    The stax layer's params are kept as stax builds them; its ``rng`` is fed
    from funcnet's ``key``, and stax's ``mode`` from ``train``.

    Example:
        >>> import jax, funcnet as fn
        >>> from jax.example_libraries import stax
        >>> net = fn.serial(fn.from_stax(stax.Dense(4)), fn.Relu())
        >>> net.init(jax.random.key(0), (None, 3))[0]
        (None, 4)
    """
    init_fun, apply_fun = pair

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Any, Params, State]:
        output_shape, params = init_fun(
            key, shape_of(input_shape) if is_shape(input_shape) else input_shape
        )
        return tuple(output_shape), params, {}

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[Any, State]:
        kwargs: dict[str, Any] = {"mode": "train" if train else "test"}
        if key is not None:
            kwargs["rng"] = key
        # stax code broadcasts implicitly (``x @ W + b``); allow it here so stax
        # layers also run in projects that set jax_numpy_rank_promotion="raise".
        with jax.numpy_rank_promotion("allow"):
            return apply_fun(params, x, **kwargs), state

    return Layer(init, apply, name)


def custom_layer(
    apply_fn: Callable[[Params, Any], Any],
    init_params: Callable[[jax.Array, Shape], Params],
    name: str = "custom",
) -> Layer:
    """A layer from ``apply_fn(params, x) -> y`` and ``init_params(key, input_shape)``.

    The output shape is inferred with ``jax.eval_shape``, so only the
    parameters need to be described.

    Example:
        >>> import jax, jax.numpy as jnp, funcnet as fn
        >>> scale = fn.custom_layer(
        ...     lambda p, x: x * p["s"][None, :],
        ...     lambda key, shape: {"s": jnp.ones(shape[-1:])},
        ...     name="Scale",
        ... )
        >>> out, params, state = scale.init(jax.random.key(0), (None, 3))
        >>> out, params["s"].shape
        ((None, 3), (3,))
    """

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Any, Params, State]:
        params = init_params(key, shape_of(input_shape) if is_shape(input_shape) else input_shape)
        output_shape = infer_output_shape(lambda x: apply_fn(params, x), input_shape)
        return output_shape, params, {}

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[Any, State]:
        del key, train
        return apply_fn(params, x), state

    return Layer(init, apply, name)
