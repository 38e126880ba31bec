"""Training data: validation of in-memory arrays, and streaming batches to the device.

In-memory data is a pytree of arrays with a leading example axis (``x`` may be
one array or a tuple of arrays for a model with several inputs; ``y`` likewise).
Data that does not fit in memory is an iterable of ``(x, y)`` batches, moved
to the device ahead of use by :func:`prefetch_to_device`.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


def _is_nested_numbers(node: Any) -> bool:
    """Whether ``node`` is a (nested) Python list of numbers: one array, not a list of inputs."""
    if not isinstance(node, list) or not node:
        return False
    return all(
        isinstance(item, (int, float, bool, np.number)) or _is_nested_numbers(item) for item in node
    )


def as_arrays(data: Any, where: str = "fit", name: str = "x", *, host: bool = False) -> Any:
    """``data`` with every leaf a ``jax.Array`` (with ``host``, a numpy array).

    A nested list of numbers is one array (``[[0, 1], [1, 0]]`` is ``[2, 2]``,
    as numpy and Keras read it); a tuple holds several arrays. Arrays of
    strings or objects that are not numbers are refused, naming ``name``.
    ``host=True`` leaves the values in host memory (a ``jax.Array`` given
    stays one): data to be split over a mesh's devices is never copied whole
    to one device first.

    Example:
        >>> as_arrays([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]).shape
        (3, 2)
    """

    def convert(leaf: Any) -> Any:
        if isinstance(leaf, jax.Array):
            return leaf
        array = given = np.asarray(leaf)
        if array.dtype.kind == "O":  # e.g. a pandas column of numbers
            try:
                array = np.asarray(array.tolist())
            except ValueError:  # ragged rows: reported below as an object array
                pass
        # Kind "V" is also ml_dtypes' bfloat16 and float8: numbers JAX takes.
        if array.dtype.kind in "OUS" or (
            array.dtype.kind == "V" and not jnp.issubdtype(array.dtype, jnp.number)
        ):
            what = {"U": "strings", "S": "strings", "V": "records"}.get(
                array.dtype.kind, "Python objects"
            )
            raise TypeError(
                f"{where}: {name} must hold numbers, got an array of dtype {given.dtype} "
                f"({what}). Encode it as numbers first (e.g. class indices with "
                "np.unique(values, return_inverse=True), or float(...) for numeric text)."
            )
        if host:  # the dtype jnp.asarray would give (float64 -> float32 without x64)
            return array.astype(jax.dtypes.canonicalize_dtype(array.dtype), copy=False)
        return jnp.asarray(array)

    return jax.tree.map(convert, data, is_leaf=_is_nested_numbers)


def num_examples(where: str, name: str, data: Any) -> int:
    """The size of the leading axis shared by every array in ``data``."""
    leaves = jax.tree.leaves(data)
    if not leaves:
        raise ValueError(f"{where}: {name} holds no arrays.")
    if any(np.ndim(leaf) == 0 for leaf in leaves):
        raise ValueError(
            f"{where}: every array in {name} needs a leading example axis; got a scalar."
        )
    sizes = {int(np.shape(leaf)[0]) for leaf in leaves}
    if len(sizes) > 1:
        raise ValueError(
            f"{where}: the arrays in {name} have different numbers of examples: {sorted(sizes)}."
        )
    return sizes.pop()


def check_pair(where: str, x: Any, y: Any) -> int:
    """Checks that ``x`` and ``y`` hold the same, non-zero number of examples."""
    n_x, n_y = num_examples(where, "x", x), num_examples(where, "y", y)
    if n_x != n_y:
        raise ValueError(
            f"{where}: x has {n_x} examples but y has {n_y}; they must match along the first axis."
        )
    if n_x == 0:
        raise ValueError(f"{where}: the dataset is empty (x has 0 examples).")
    return n_x


def check_batch_size(batch_size: int | None, n: int, where: str = "fit") -> int:
    """Resolves ``batch_size``: None is ``min(32, n)``; otherwise ``1 <= batch_size <= n``."""
    if batch_size is None:
        return min(32, n)
    if (
        not isinstance(batch_size, (int, np.integer))
        or isinstance(batch_size, bool)
        or batch_size <= 0
    ):
        raise ValueError(f"{where}: batch_size must be a positive integer, got {batch_size!r}.")
    if batch_size > n:
        raise ValueError(
            f"{where}: batch_size {batch_size} is larger than the dataset ({n} examples). "
            f"The rule: 1 <= batch_size <= number of examples. Use batch_size={n} for "
            "full-batch training, or batch_size=None for min(32, n)."
        )
    return int(batch_size)


def example_spec(data: Any, batch: int | None = None) -> Any:
    """The input spec of ``data``'s examples: each leaf's shape with its batch axis set to ``batch``.

    ``None`` (the default) gives the spec that ``net.init`` takes; an integer
    a concrete sample shape to trace the model with.

    Example:
        >>> import numpy as np
        >>> example_spec(np.zeros((50, 3), np.float32))
        ShapeDtypeStruct(shape=(None, 3), dtype=float32)
    """
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct((batch, *a.shape[1:]), a.dtype), data)


def take(data: Any, index: Any) -> Any:
    """Rows ``index`` (an index array or a slice) of every array in ``data``."""
    return jax.tree.map(lambda a: a[index], data)


def split_validation(x: Any, y: Any, fraction: float) -> tuple[Any, Any, Any, Any]:
    """Splits off the last ``fraction`` of the examples, before any shuffling (as Keras does)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fit: validation_split must be in (0, 1), got {fraction!r}.")
    n = num_examples("fit", "x", x)
    n_val = int(n * fraction)
    if n_val == 0 or n_val == n:
        raise ValueError(
            f"fit: validation_split={fraction} of {n} examples leaves "
            f"{n - n_val} for training and {n_val} for validation; both must be at least 1."
        )
    cut = n - n_val
    return (
        take(x, slice(0, cut)),
        take(y, slice(0, cut)),
        take(x, slice(cut, n)),
        take(y, slice(cut, n)),
    )


def batch_signature(batch: Any) -> Any:
    """The tree structure, shapes and dtypes of a batch: what a compiled step depends on."""
    return jax.tree.structure(batch), tuple(
        (np.shape(a), np.dtype(getattr(a, "dtype", None) or np.result_type(a)))
        for a in jax.tree.leaves(batch)
    )


def describe_signature(signature: Any) -> str:
    return ", ".join(f"{shape} {dtype}" for shape, dtype in signature[1])


def prefetch_to_device(batches: Iterable[Any], size: int = 2) -> Iterator[Any]:
    """Yields ``batches`` moved to the device, keeping ``size`` transfers in flight.

    A background thread reads the source iterator (which may do slow host work:
    decoding, augmentation) while the device computes on earlier batches.

    Example:
        >>> import numpy as np
        >>> [b.shape for b in prefetch_to_device([np.zeros(2), np.ones(3)])]
        [(2,), (3,)]
    """
    if size < 1:
        return (jax.device_put(batch) for batch in batches)
    ready: queue.Queue = queue.Queue(maxsize=size)  # bounded: at most `size` batches ahead
    # Set when the consumer is done, to stop the thread (Queue.shutdown needs Python 3.13).
    closed = threading.Event()

    def produce() -> None:
        end: Any = _END
        try:
            for batch in batches:
                ready.put(jax.device_put(batch))  # waits while `size` batches are ahead
                if closed.is_set():
                    return
        except BaseException as error:
            end = _Failed(error)
        ready.put(end)

    thread = threading.Thread(target=produce, daemon=True, name="funcnet-prefetch")
    thread.start()

    def consume() -> Iterator[Any]:
        try:
            while (item := ready.get()) is not _END:
                if isinstance(item, _Failed):
                    raise item.error
                yield item
        finally:
            # Stopped early (or done): tell the thread, and make room for the
            # put it may be waiting in, so that it wakes up and returns.
            closed.set()
            while True:
                try:
                    ready.get_nowait()
                except queue.Empty:
                    break

    return consume()


_END = object()


class _Failed(NamedTuple):
    """What the prefetch thread queues when reading the source raised."""

    error: BaseException


def limit(iterator: Iterator[Any], steps: int | None) -> Iterator[Any]:
    """At most ``steps`` items of ``iterator`` (all of them when ``steps`` is None)."""
    return iterator if steps is None else itertools.islice(iterator, steps)
