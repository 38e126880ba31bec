"""Host values of sharded arrays: gathered to save, placed back after loading.

:func:`gather_for_save` makes every leaf a host value of its global shape
(a collective when arrays are split across processes: every process calls
it, process 0 writes); :func:`place_like` puts loaded host values back in a
run's layout, each process building only its own pieces. See
``docs/data-parallel.md``, section "Checkpoints of sharded arrays".
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Sharding

from funcnet._src.core import is_key
from funcnet._src.parallel.sharding import put, put_global


def _host(a: Any) -> Any:
    if not isinstance(a, jax.Array):
        return np.asarray(a)
    if is_key(a):
        if a.is_fully_addressable:
            return a
        if a.is_fully_replicated:
            return a.addressable_data(0)
        data = _host(jax.random.key_data(a))  # gathered as integers, rewrapped locally
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(a))
    if a.is_fully_addressable:
        return np.asarray(a)
    if a.is_fully_replicated:
        return np.asarray(a.addressable_data(0))
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(a, tiled=True))


def gather_for_save(tree: Any) -> Any:
    """Every leaf of ``tree`` as a host value of its global shape, ready to save.

    Numeric leaves become numpy arrays; PRNG keys stay key arrays (on a local
    device). Arrays sharded over several processes are gathered with
    ``multihost_utils.process_allgather``, a collective: call this on every
    process, in the same order, then write from process 0 only.

    Example:
        >>> import jax.numpy as jnp
        >>> gather_for_save({"w": jnp.ones(2)})
        {'w': array([1., 1.], dtype=float32)}
    """
    return jax.tree.map(_host, tree)


def place_like(tree: Any, shardings: Any) -> Any:
    """Host values (e.g. a loaded checkpoint) placed with ``shardings``.

    Args:
        tree: the values, each of the global shape.
        shardings: a tree of ``Sharding`` matching ``tree`` (or a single one
            for every leaf), or a tree of placed arrays whose shardings to copy
            (e.g. a train state placed with :func:`place_train_state`).

    Each process builds only the pieces its own devices hold
    (``jax.make_array_from_callback``), so every process may pass the same
    values or just lazily-read arrays.

    Example:
        >>> import jax, numpy as np
        >>> from jax.sharding import NamedSharding, PartitionSpec
        >>> from funcnet import make_mesh
        >>> s = NamedSharding(make_mesh(jax.devices()[:1]), PartitionSpec())
        >>> place_like({"w": np.ones(2, np.float32)}, s)["w"].sharding == s
        True
    """
    if isinstance(shardings, Sharding):
        shardings = jax.tree.map(lambda _: shardings, tree)
    else:

        def sharding_of(leaf: Any) -> Sharding:
            if isinstance(leaf, Sharding):
                return leaf
            if not hasattr(leaf, "sharding"):
                raise TypeError(
                    "place_like: shardings must hold Sharding objects or placed jax arrays, "
                    f"got a {type(leaf).__name__} leaf."
                )
            return leaf.sharding

        shardings = jax.tree.map(sharding_of, shardings)
    tree_def: Any = jax.tree.structure(tree)
    sharding_def = jax.tree.structure(shardings)
    if tree_def != sharding_def:
        raise ValueError(
            f"place_like: the values and the shardings have different tree structures:\n"
            f"  values:    {tree_def}\n  shardings: {sharding_def}"
        )

    def one(value: Any, sharding: Sharding) -> Any:
        if is_key(value):
            return put(value, sharding)
        return put_global(value, sharding)

    return jax.tree.map(one, tree, shardings)
