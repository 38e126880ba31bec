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
import functools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple, NoReturn, Protocol, cast, overload

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


KeyLike = jax.Array | int
"""A PRNG key, or an integer seed ``s`` (read as ``jax.random.key(s)``)."""


class InitFn(Protocol):
    def __call__(self, key: KeyLike, input_shape: InputShape) -> tuple[Any, Params, State]:
        """Returns ``(output_shape, params, state)`` for inputs of ``input_shape``."""
        ...


class ApplyFn(Protocol):
    def __call__(
        self,
        params: Params,
        state: State,
        x: Any,
        *,
        key: KeyLike | None = None,
        train: bool = False,
    ) -> tuple[Any, State]:
        """Returns ``(y, new_state)``."""
        ...


class _LayerFields(NamedTuple):
    init: InitFn
    apply: ApplyFn
    name: str = "Layer"


class Layer(_LayerFields):
    """A layer: pure ``init`` and ``apply`` functions and a display name.

    Building a ``Layer`` wraps both functions in the argument checks every
    layer shares: a key may be an integer seed, and a forgotten ``state``, ``None`` params or
    params that do not fit the layer are named in a :class:`LayerError`. The
    checks run in Python, so under ``jit`` they cost nothing at run time.

    Example:
        >>> import jax, funcnet as fn
        >>> net = fn.Dense(3)
        >>> out_shape, params, state = net.init(jax.random.key(0), (None, 2))
        >>> out_shape
        (None, 3)
        >>> y, state = net.apply(params, state, jax.numpy.ones((5, 2)))
        >>> y.shape
        (5, 3)
        >>> net.init(0, (None, 2))[0]  # an integer seed is a key too
        (None, 3)
    """

    __slots__ = ()

    # The functions given receive a key already made a PRNG key (never a seed),
    # so they may be typed ``key: jax.Array``.
    def __new__(
        cls, init: Callable[..., Any], apply: Callable[..., Any], name: str = "Layer"
    ) -> Layer:
        return super().__new__(
            cls, checked_init(init, name), checked_apply(apply, name, init), name
        )

    @classmethod
    def _make(cls, iterable: Any) -> Layer:  # type: ignore[override]
        # NamedTuple's _make (and so _replace) would bypass __new__ and its checks.
        return cls(*iterable)


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
# Argument checks every layer shares: Layer's constructor wraps init and apply


def describe(value: Any) -> str:
    """``value`` for a message: its type and a short repr."""
    if isinstance(value, Layer):
        return f"the layer {value.name}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def key_from(value: Any) -> jax.Array | None:
    """``value`` as a PRNG key, or None if it is neither a key nor an integer seed.

    The one rule for every place funcnet takes a key: a typed key
    (``jax.random.key``) and raw ``uint32`` key data (``jax.random.PRNGKey``)
    pass through (one key: not a batch of keys); an integer seed ``s``, Python or a traced integer scalar
    (so this works under ``jit``), becomes ``jax.random.key(s)``. Callers
    raise their own error on None, in their own voice (a layer's or an
    argument's).

    Example:
        >>> import jax
        >>> bool((jax.random.key_data(key_from(3)) == jax.random.key_data(jax.random.key(3))).all())
        True
        >>> key_from("3") is None
        True
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return jax.random.key(int(value))
    dtype, shape = getattr(value, "dtype", None), getattr(value, "shape", None)
    if dtype is None or shape is None:
        return None
    # One key, not a batch of them: a layer or a run draws from a single key.
    if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) and len(shape) == 0:
        return value
    if dtype == np.uint32 and len(shape) == 1:
        return value
    if len(shape) == 0 and jnp.issubdtype(dtype, jnp.integer):
        return jax.random.key(value)
    return None


def as_key(layer: str, argument: str, key: Any) -> jax.Array:
    """``key`` as a PRNG key (see :func:`key_from`), or a layer error naming ``argument``."""
    normalised = key_from(key)
    if normalised is None:
        raise type_error(
            layer,
            f"{argument} must be a PRNG key such as jax.random.key(0), or an integer seed, "
            f"got {describe(key)}. Pass jax.random.key(seed), or the integer seed itself.",
        )
    return normalised


def _check_sizes(layer: str, input_shape: Any) -> None:
    """Raises if a dimension of a shape given to ``init`` is not ``None`` or a size."""
    if hasattr(input_shape, "shape") and not isinstance(input_shape, jax.ShapeDtypeStruct):
        raise type_error(
            layer,
            f"init takes the input's shape, got an array of shape {tuple(input_shape.shape)}. "
            "Pass x.shape (with None for the batch if it varies, e.g. (None, *x.shape[1:])), "
            "or jax.ShapeDtypeStruct(x.shape, x.dtype) when the dtype matters.",
        )
    if not isinstance(input_shape, (tuple, list)):
        return  # a ShapeDtypeStruct, or something the layer itself rejects
    if any(isinstance(d, (tuple, list, jax.ShapeDtypeStruct)) for d in input_shape):
        for spec in input_shape:  # a tuple of shapes, one per input
            _check_sizes(layer, spec)
        return
    for axis, size in enumerate(input_shape):
        if size is None or (isinstance(size, (int, np.integer)) and size >= 0):
            continue
        if isinstance(size, (int, np.integer)):
            raise shape_error(
                layer,
                f"dimension {axis} of the input shape {tuple(input_shape)} is {size}, "
                "a negative size. Sizes are non-negative integers, or None where unknown "
                "(the batch).",
            )
        raise type_error(
            layer,
            f"dimension {axis} of the input shape {tuple(input_shape)} is {describe(size)}, "
            "not an integer. Sizes are integers, or None where unknown (the batch): "
            "e.g. (None, 3); convert computed sizes with int(...).",
        )


def _bind(layer: str, call: str, args: tuple, kwargs: dict, fix: str) -> list[Any]:
    """The values of ``call``'s arguments, by position or keyword (``kwargs`` keeps the rest).

    ``call`` is ``"init(key, input_shape)"`` or ``"apply(params, state, x)"``.
    """
    names = call[call.index("(") + 1 : -1].split(", ")
    values = list(args)
    for name in names[len(values) :]:
        if name not in kwargs:
            break
        values.append(kwargs.pop(name))
    if len(values) == len(names) and not any(name in kwargs for name in names):
        return values
    given = f"got {len(values)} argument{'s' * (len(values) != 1)}"
    if len(values) > len(names):
        raise type_error(layer, f"expected {call}, {given}. {fix}")
    if call.startswith("apply") and len(values) == 2:
        missing = "was state left out?"  # net.apply(params, x): the usual slip
    elif call.startswith("init") and len(values) == 1 and is_shape(values[0]):
        missing = "was the key left out?"
    else:
        absent = names[len(values) :]
        missing = f"{' and '.join(absent)} {'are' if len(absent) > 1 else 'is'} missing."
    raise type_error(layer, f"expected {call}, {given}: {missing} {fix}")


_INIT_FIX = (
    "Call net.init(key, input_shape), e.g. net.init(jax.random.key(0), (None, 3)) "
    "(an integer seed is a key too: net.init(0, (None, 3))); a layer with several "
    "inputs takes one tuple of shapes."
)
_APPLY_FIX = (
    "Call y, state = net.apply(params, state, x) with the params and state that init "
    "returned ({} for a layer without state); key and train are keywords: "
    "net.apply(params, state, x, key=key, train=True)."
)

_NEW_PARAMS = "_, params, state = net.init(key, input_shape)."
_NEW_STATE = "y, state = net.apply(params, state, x), then pass the new state to the next call."


def checked_init(init: Callable[..., Any], name: str) -> InitFn:
    """``init`` behind the checks every layer shares: the arguments, the key, the sizes.

    A wrapper does no work after tracing (``init`` is traced once under
    ``jit``), and an ``init`` already checked is returned as it is.
    """
    if getattr(init, "_funcnet_checked", None) == name:
        return cast(InitFn, init)
    init = getattr(init, "_funcnet_unchecked", init)  # renamed: check under the new name

    @functools.wraps(init)
    def init_checked(*args: Any, **kwargs: Any) -> tuple[Any, Params, State]:
        key, input_shape = _bind(name, "init(key, input_shape)", args, kwargs, _INIT_FIX)
        key = as_key(name, "init's key", key)
        _check_sizes(name, input_shape)
        return init(key, input_shape, **kwargs)

    init_checked._funcnet_checked = name  # type: ignore[attr-defined]
    init_checked._funcnet_unchecked = init  # type: ignore[attr-defined]
    return init_checked


def checked_apply(apply: Callable[..., Any], name: str, init: Callable[..., Any]) -> ApplyFn:
    """``apply`` behind the checks every layer shares, and a diagnosis of its failures.

    Up front (cheap, in Python): the three arguments, ``None`` params or
    state, the key. When ``apply`` fails with an error that is not already a
    :class:`LayerError`, the params and state are compared with what
    ``init`` makes for ``x``'s shape (by ``jax.eval_shape``); a difference
    becomes a :class:`LayerValueError` naming the leaf, chained to the failure.
    """
    if getattr(apply, "_funcnet_checked", None) == name:
        return cast(ApplyFn, apply)
    apply = getattr(apply, "_funcnet_unchecked", apply)  # renamed: check under the new name

    @functools.wraps(apply)
    def apply_checked(*args: Any, **kwargs: Any) -> tuple[Any, State]:
        params, state, x = _bind(name, "apply(params, state, x)", args, kwargs, _APPLY_FIX)
        for what, tree, fix in (("params", params, _NEW_PARAMS), ("state", state, _NEW_STATE)):
            if tree is None:
                raise type_error(
                    name,
                    f"{what} is None; pass the {what} that init returned "
                    f"({{}} for a layer without {what}): {fix}",
                )
        if kwargs.get("key") is not None:
            kwargs["key"] = as_key(name, "apply's key", kwargs["key"])
        try:
            return apply(params, state, x, **kwargs)
        except LayerError:
            raise
        except Exception as error:
            problem = _mismatch(init, params, state, x)
            if problem is None:
                raise
            raise LayerValueError(problem, (name,)) from error

    apply_checked._funcnet_checked = name  # type: ignore[attr-defined]
    apply_checked._funcnet_unchecked = apply  # type: ignore[attr-defined]
    return apply_checked


def _leaf_shape(leaf: Any) -> Any:
    if leaf is None:
        return None
    if hasattr(leaf, "shape") or isinstance(leaf, (int, float, complex)):
        return tuple(np.shape(leaf))
    return type(leaf).__name__


def _short(tree: Any) -> str:
    text = str(jax.tree.map(_leaf_shape, tree, is_leaf=lambda a: a is None))
    return text if len(text) <= 160 else text[:157] + "..."


def _first_difference(what: str, got: Any, expected: Any) -> str | None:
    """The first way the tree ``got`` differs from ``expected`` (ShapeDtypeStructs), or None."""
    if isinstance(expected, dict) != isinstance(got, dict):
        container = "a dict" if isinstance(expected, dict) else "not a dict"
        return f"{what} should be {container}, got {type(got).__name__}"
    got_leaves = {
        jax.tree_util.keystr(path): leaf
        for path, leaf in jax.tree_util.tree_leaves_with_path(got, is_leaf=lambda a: a is None)
    }
    want_leaves = {
        jax.tree_util.keystr(path): tuple(leaf.shape)
        for path, leaf in jax.tree_util.tree_leaves_with_path(expected)
    }
    for path, shape in want_leaves.items():
        if path not in got_leaves:
            return f"{what}{path} (shape {shape}) is missing"
        if _leaf_shape(got_leaves[path]) != shape:
            return f"{what}{path} should have shape {shape}, got {_leaf_shape(got_leaves[path])}"
    extra = [path for path in got_leaves if path not in want_leaves]
    if extra:
        return f"{what}{extra[0]} is not one of the {what} this layer makes"
    return None


def _mismatch(init: Callable[..., Any], params: Params, state: State, x: Any) -> str | None:
    """How ``params``/``state`` differ from what ``init`` makes for ``x``'s shape, or None."""
    try:
        spec = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a)), x)
        want = jax.eval_shape(lambda key: init(key, spec)[1:], jax.random.key(0))
    except Exception:
        return None  # x does not fit either: the original error says more
    x_shapes = jax.tree.map(lambda a: tuple(np.shape(a)), x)
    for what, got, expected in (("params", params, want[0]), ("state", state, want[1])):
        problem = _first_difference(what, got, expected)
        if problem:
            return (
                f"{problem}: for an input of shape {x_shapes}, init makes {what} "
                f"{_short(expected)}, got {_short(got)}. Pass the {what} that this layer's own "
                f"init returned (those of another layer, or of another input shape, do not fit)."
            )
    return None


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
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(map(callable, pair))):
        raise TypeError(
            f"from_stax: pair must be a stax layer, the pair (init_fun, apply_fun) that "
            f"stax.Dense(4) and the like return, got {describe(pair)}. A funcnet layer "
            "needs no conversion; a plain function x -> y becomes a layer with Lambda(fn)."
        )
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
    init_params: Callable[[jax.Array, Shape], Params] | None,
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
    # init_params may be None for a layer that is only applied (to params made elsewhere).
    for argument, value, form in (
        ("apply_fn", apply_fn, "apply_fn(params, x) -> y"),
        ("init_params", init_params, "init_params(key, input_shape) -> params"),
    ):
        if (value is not None or argument == "apply_fn") and (
            not callable(value) or isinstance(value, Layer)
        ):
            raise TypeError(
                f"custom_layer: {argument} must be a function {form}, got {describe(value)}. "
                "Pass custom_layer(apply_fn, init_params, name=...); a funcnet Layer needs "
                "no wrapping."
            )

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Any, Params, State]:
        if init_params is None:
            raise type_error(
                name,
                "this custom_layer was built without init_params, so it has no init. "
                "Pass init_params(key, input_shape) -> params to custom_layer.",
            )
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
