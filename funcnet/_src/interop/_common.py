"""What every "in" converter shares: example inputs, the train flag, flat named trees.

A converter turns another library's module into a funcnet :class:`Layer`. The
pieces here are the ones that do not depend on the library: a batch of one to
build the module on, the ``train`` flag spelled as the library spells it, key
splitting, and trees of library objects flattened into ``{name: array}`` dicts
that :func:`funcnet.save` can write and read back.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp

from funcnet._src.core import (
    InputShape,
    LayerTypeError,
    describe,
    dtype_of,
    is_shape,
    shape_of,
    type_error,
)

# Names a library uses for its train/eval switch, and whether True means "eval".
TRAIN_NAMES = ("train", "training", "is_training")
EVAL_NAMES = ("deterministic", "inference", "use_running_average", "eval")


def example_input(input_shape: InputShape) -> Any:
    """``input_shape`` as ShapeDtypeStructs, each ``None`` dimension set to 1 (a batch of one)."""
    if is_shape(input_shape):
        dims = tuple(1 if d is None else d for d in shape_of(input_shape))
        return jax.ShapeDtypeStruct(dims, dtype_of(input_shape))
    return type(input_shape)(example_input(spec) for spec in input_shape)


def zeros(spec: Any) -> Any:
    """Arrays of zeros for a tree of ShapeDtypeStructs (for libraries that build on data)."""
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), spec)


@contextlib.contextmanager
def foreign_code() -> Iterator[None]:
    """Runs another library's code with implicit rank promotion allowed.

    Library code broadcasts implicitly (``x @ w + b``); funcnet's own code does
    not, and projects may set ``jax_numpy_rank_promotion="raise"``.
    """
    with jax.numpy_rank_promotion("allow"):
        yield


def parameter_names(fn: Callable[..., Any]) -> list[str]:
    """The names of ``fn``'s parameters, or ``[]`` when Python cannot tell."""
    try:
        return list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return []


def find_train_arg(converter: str, fn: Callable[..., Any], train_arg: str | None) -> str | None:
    """The keyword that carries the train flag: ``train_arg`` itself, or found in ``fn``'s signature.

    ``train_arg="auto"`` looks for one of :data:`TRAIN_NAMES` or
    :data:`EVAL_NAMES`; ``None`` passes no flag.
    """
    if train_arg is None:
        return None
    names = parameter_names(fn)
    if train_arg == "auto":
        return next((n for n in (*TRAIN_NAMES, *EVAL_NAMES) if n in names), None)
    if not isinstance(train_arg, str):
        raise TypeError(
            f"{converter}: train_arg must be the name of the keyword that switches training "
            f"on or off (e.g. 'train' or 'deterministic'), 'auto' or None, got {train_arg!r}."
        )
    return train_arg


def train_kwargs(train_arg: str | None, train: bool) -> dict[str, bool]:
    """``{train_arg: flag}``, with the flag inverted for names that mean "eval"."""
    if train_arg is None:
        return {}
    return {train_arg: (not train) if train_arg in EVAL_NAMES else train}


def keys_for(key: jax.Array | None, names: tuple[str, ...]) -> dict[str, jax.Array]:
    """One key per name: ``key`` itself for a single name, independent keys for several."""
    if key is None:
        return {}
    if len(names) == 1:
        return {names[0]: key}
    return dict(zip(names, jax.random.split(key, len(names))))


def path_name(path: tuple[Any, ...], skip_attribute: str | None = None) -> str:
    """A leaf's path as a dotted name, ``layers.0.weight``: keys, indices, attributes.

    ``skip_attribute`` names a box to leave out (NNX's ``Variable.value``).
    """
    parts = []
    for entry in path:
        if isinstance(entry, jax.tree_util.GetAttrKey) and entry.name == skip_attribute:
            continue
        for field in ("key", "idx", "name"):
            if hasattr(entry, field):
                parts.append(str(getattr(entry, field)))
                break
        else:
            parts.append(str(entry))
    return ".".join(parts)


def named_leaves(tree: Any, skip_attribute: str | None = None) -> dict[str, Any]:
    """``{dotted path: leaf}`` for a pytree of library objects (see :func:`path_name`)."""
    return {
        path_name(path, skip_attribute): leaf
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    }


def from_named_leaves(
    template: Any, named: dict[str, Any], skip_attribute: str | None = None
) -> Any:
    """The tree ``template`` with its leaves taken from ``named`` (as :func:`named_leaves` made)."""
    paths, treedef = jax.tree_util.tree_flatten_with_path(template)
    leaves = [named[path_name(path, skip_attribute)] for path, _ in paths]
    return jax.tree.unflatten(treedef, leaves)


def no_key_error(name: str, what: str) -> LayerTypeError:
    """The error for a stochastic module asked to train without a key, with the corrected call."""
    return type_error(
        name,
        f"the wrapped {what} draws random numbers when train=True (dropout), but apply got "
        "no key. Pass one: y, state = net.apply(params, state, x, train=True, "
        "key=jax.random.key(0)) (fit passes keys itself).",
    )


# (module prefix of a base class, its converter, what to call it in a message)
_LIBRARIES = (
    ("flax.linen", "from_flax", "a Flax Linen module"),
    ("flax.nnx", "from_nnx", "a Flax NNX module"),
    ("equinox", "from_equinox", "an Equinox module"),
    ("haiku", "from_haiku", "a Haiku object"),
    ("keras", "from_keras_layer", "a Keras layer"),
)


def library_of(obj: Any) -> tuple[str, str] | None:
    """``(converter, description)`` for an object (or class) of a library funcnet converts."""
    classes = obj.__mro__ if isinstance(obj, type) else type(obj).__mro__
    for cls in classes:
        for prefix, converter, description in _LIBRARIES:
            if cls.__module__.startswith(prefix):
                return converter, description
    return None


def belongs_elsewhere(obj: Any, converter: str) -> bool:
    """Whether ``obj`` comes from a library that another converter than ``converter`` takes."""
    found = library_of(obj)
    return found is not None and found[0] != converter


def wrong_module(converter: str, argument: str, expected: str, obj: Any) -> TypeError:
    """The error for a converter given something it does not convert, with the right converter."""
    found = library_of(obj)
    if isinstance(obj, type):
        got = f"the class {obj.__name__}"
    elif found is not None:
        got = type(obj).__name__  # library reprs run over many lines
    else:
        got = describe(obj)
    message = f"{converter}: {argument} must be {expected}, got {got}."
    if found is not None and found[0] != converter:
        message = f"{message[:-1]}, {found[1]}: convert it with fn.{found[0]}(...)."
    elif isinstance(obj, type):
        message += f" Pass an instance such as {obj.__name__}(...), not the class."
    return TypeError(message)
