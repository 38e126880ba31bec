"""Data parallelism: a device mesh, and where arrays go on it.

funcnet implements no collective of its own. It places arrays on a
``jax.sharding.Mesh`` and states their layouts inside the compiled step with
``jax.lax.with_sharding_constraint``; XLA partitions the program and inserts
the all-reduces. This module holds that placement: meshes, batch splitting,
replicated or FSDP-sharded train states, and per-process placement. The
rules and why are in ``docs/data-parallel.md``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec, Sharding

from funcnet._src.core import is_key

ParamRule = Callable[[Any, Any, Mesh, str], "PartitionSpec | None"]
"""``rule(path, leaf, mesh, data_axis) -> PartitionSpec | None`` (None: replicated)."""


def make_mesh(devices: Sequence[Any] | None = None, data_axis: str = "data") -> Mesh:
    """A 1-D mesh over ``devices`` (default: every device of every process).

    Args:
        devices: the devices, e.g. ``jax.devices()[:4]``.
        data_axis: the name of the mesh's one axis.

    Returns:
        A ``jax.sharding.Mesh`` of shape ``{data_axis: len(devices)}``.

    Example:
        >>> import jax
        >>> make_mesh(jax.devices()[:1]).shape
        OrderedDict([('data', 1)])
    """
    if not isinstance(data_axis, str) or not data_axis:
        raise ValueError(f"make_mesh: data_axis must be a non-empty string, got {data_axis!r}.")
    if devices is None:
        devices = jax.devices()
    if isinstance(devices, (str, bytes)) or not isinstance(devices, Sequence):
        raise TypeError(
            f"make_mesh: devices must be a list of devices (e.g. jax.devices()), got "
            f"{type(devices).__name__}."
        )
    devices = list(devices)
    if not devices:
        raise ValueError("make_mesh: the list of devices is empty; pass e.g. jax.devices().")
    bad = [d for d in devices if not isinstance(d, jax.Device)]
    if bad:
        raise TypeError(
            f"make_mesh: devices must be jax devices (from jax.devices()), got {bad[0]!r}."
        )
    if len({d.id for d in devices}) != len(devices):
        raise ValueError("make_mesh: a device appears twice in the list; give each once.")
    return Mesh(np.array(devices), (data_axis,))


@dataclasses.dataclass(frozen=True)
class FSDP:
    """Shards leaves of at least ``min_size`` elements along their largest
    axis divisible by the size of mesh axis ``axis`` (None: the data axis).
    Build it with :func:`fsdp`."""

    min_size: int = 2**16
    axis: str | None = None

    def __call__(self, path: Any, leaf: Any, mesh: Mesh, data_axis: str = "data") -> PartitionSpec:
        axis = self.axis or data_axis
        shape = tuple(np.shape(leaf))
        parts = int(mesh.shape[axis])
        if parts == 1 or int(np.prod(shape, dtype=np.int64)) < self.min_size:
            return PartitionSpec()
        fits = [i for i, size in enumerate(shape) if size % parts == 0]
        if not fits:
            return PartitionSpec()
        dim = max(fits, key=lambda i: (shape[i], -i))
        return PartitionSpec(*([None] * dim), axis)


def fsdp(min_size: int = 2**16, axis: str | None = None) -> FSDP:
    """The FSDP rule: shard large train-state leaves over the mesh, replicate the rest.

    Args:
        min_size: leaves with fewer elements stay replicated (sharding tiny
            biases costs more in communication than it saves in memory).
        axis: the mesh axis to shard over; None is the data axis.

    Returns:
        A rule for ``param_sharding=`` of :func:`funcnet.fit` and
        :func:`funcnet.make_train_step`.

    Example:
        >>> from jax.sharding import AbstractMesh
        >>> rule = fsdp(min_size=100)
        >>> mesh = AbstractMesh((4,), ("data",))
        >>> rule((), np.zeros((6, 64)), mesh), rule((), np.zeros((8,)), mesh)
        (P(None, 'data'), P())
    """
    if not isinstance(min_size, (int, np.integer)) or isinstance(min_size, bool) or min_size < 1:
        raise ValueError(f"fsdp: min_size must be a positive integer, got {min_size!r}.")
    return FSDP(int(min_size), axis)


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where a data-parallel run puts its arrays: built by :func:`layout`."""

    mesh: Mesh
    data_axis: str = "data"
    rule: Any = None

    @property
    def size(self) -> int:
        """Devices along the data axis: each batch is split into this many shards."""
        return int(self.mesh.shape[self.data_axis])

    @property
    def batch_sharding(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec(self.data_axis))

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    def state_shardings(self, tree: Any) -> Any:
        """One ``NamedSharding`` per leaf of ``tree`` (a train state)."""
        if self.rule is None:
            return jax.tree.map(lambda _: self.replicated, tree)

        def one(path: Any, leaf: Any) -> NamedSharding:
            if is_key(leaf):
                return self.replicated
            spec = self.rule(path, leaf, self.mesh, self.data_axis)
            return NamedSharding(self.mesh, spec if spec is not None else PartitionSpec())

        return jax.tree_util.tree_map_with_path(one, tree)

    def check_batch(self, where: str, batch: Any) -> None:
        """Raises if the (global) batch cannot be split evenly over the data axis."""
        for leaf in jax.tree.leaves(batch):
            rows = int(np.shape(leaf)[0])
            if rows % self.size:
                raise ValueError(
                    f"{where}: a batch of {rows} examples cannot be split evenly over the "
                    f"{self.size} devices of mesh axis {self.data_axis!r}. The rule: with a mesh, "
                    f"the global batch size is a multiple of the number of devices on the data "
                    f"axis. Use a batch_size of {_multiples(rows, self.size)}."
                )

    def fit_batch_size(self, requested: int | None, resolved: int, n: int) -> int:
        """``fit``'s batch size on this mesh: a multiple of the data axis' size.

        ``requested`` None takes ``resolved`` (``min(32, n)``) rounded down.
        """
        d = self.size
        if requested is None:
            if resolved < d:
                raise ValueError(
                    f"fit: the dataset has {n} examples, fewer than the {d} devices of mesh "
                    f"axis {self.data_axis!r}; every device needs at least one example per "
                    "batch. Use fewer devices or more data."
                )
            return resolved - resolved % d
        if resolved % d:
            raise ValueError(
                f"fit: batch_size {resolved} cannot be split evenly over the {d} devices of "
                f"mesh axis {self.data_axis!r}. The rule: with a mesh, batch_size is a multiple "
                f"of the number of devices on the data axis (each gets batch_size / {d} "
                f"examples; the last partial batch of an epoch is trimmed to a multiple of {d}). "
                f"Use batch_size={_multiples(resolved, d).replace(' or ', ' or batch_size=')}."
            )
        return resolved

    def try_place_batch(self, batch: Any) -> Any:
        """A stream's ``(x, y)`` placed ahead of use when it can be; otherwise as it
        was, for the training loop to report with the batch's epoch and index."""
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            return batch
        parts = self.local_parts()
        try:
            if all(int(np.shape(a)[0]) % parts == 0 for a in jax.tree.leaves(batch)):
                return self.place_batch("fit", tuple(batch))
        except (IndexError, TypeError, ValueError):
            pass
        return batch

    def constrain_batch(self, where: str, batch: Any) -> Any:
        """Inside a compiled step: the batch, split over the data axis."""
        self.check_batch(where, batch)
        return jax.lax.with_sharding_constraint(batch, self.batch_sharding)

    def constrain_state(self, tree: Any) -> Any:
        """Inside a compiled step: the train state, in its layout."""
        return jax.lax.with_sharding_constraint(tree, self.state_shardings(tree))

    def place_state(self, tree: Any) -> Any:
        """The train state placed in its layout (device to device, no host copy)."""
        return put(tree, self.state_shardings(tree))

    def place_data(self, data: Any) -> Any:
        """An in-memory dataset, its examples split over the data axis.

        Each device along the data axis holds ``ceil(n / d)`` examples (the
        last shard padded with zero rows, which no batch ever reads), so the
        memory per device falls as devices are added. Every process passes
        the whole dataset and builds only its own devices' shards; no
        collective, no data between hosts. :meth:`take_rows` reads batches
        from it.
        """
        sharding = self.batch_sharding
        return jax.tree.map(lambda a: _put_rows(a, sharding, self.size), data)

    def take_rows(self, data: Any, rows: jax.Array) -> Any:
        """Inside a compiled program: rows ``rows`` of data placed by :meth:`place_data`.

        Args:
            data: a pytree of arrays ``[n_padded, ...]`` split over the data axis.
            rows: int32 ``[b]``, the same on every device (``b`` a multiple of
                the data axis' size), indices below the dataset's size.

        Returns:
            The batch, each leaf ``[b, ...]``, split over the data axis.

        Each device picks the rows of the batch that its shard holds (zeros
        for the others) and a reduce-scatter over the data axis sums these
        contributions, handing each device its ``b / d`` rows. Exactly one
        device holds a row, so the sum is exact. This moves one batch per
        step between devices (about ``(d - 1) / d`` of it per device) and
        never the dataset; XLA's own partitioning of the same gather
        all-reduces the whole batch to every device (twice the traffic).
        """
        axis = self.data_axis
        if self.size == 1:  # one shard holds every row: a plain gather
            return jax.tree.map(lambda a: a[rows], data)

        def local(shards: Any, rows: jax.Array) -> Any:
            held = jax.tree.leaves(shards)[0].shape[0]
            start = jax.lax.axis_index(axis) * held
            local_rows = rows - start
            mine = (local_rows >= 0) & (local_rows < held)
            local_rows = jnp.clip(local_rows, 0, held - 1)

            def one(shard: jax.Array) -> jax.Array:
                picked = jnp.take(shard, local_rows, axis=0)
                mask = mine.reshape(mine.shape + (1,) * (picked.ndim - 1))
                if picked.dtype == jnp.bool_:  # a sum over booleans is an "or"
                    picked = (mask & picked).astype(jnp.uint8)
                    summed = jax.lax.psum_scatter(picked, axis, scatter_dimension=0, tiled=True)
                    return summed.astype(jnp.bool_)
                picked = jnp.where(mask, picked, jnp.zeros((), picked.dtype))
                return jax.lax.psum_scatter(picked, axis, scatter_dimension=0, tiled=True)

            return jax.tree.map(one, shards)

        split = PartitionSpec(axis)
        return jax.shard_map(
            local, mesh=self.mesh, in_specs=(split, PartitionSpec()), out_specs=split
        )(data, rows)

    def local_parts(self) -> int:
        """Shards of the data axis held by this process's devices."""
        return len(self.local_rows(self.size))

    def local_rows(self, n: int) -> list[tuple[int, int]]:
        """The ``(start, stop)`` rows of an ``n``-row batch this process's devices hold."""
        index = self.batch_sharding.addressable_devices_indices_map((n,))
        spans = set()
        for where in index.values():
            rows = where[0] if where else slice(None)
            spans.add((rows.start or 0, n if rows.stop is None else rows.stop))
        return sorted(spans)

    def place_batch(self, where: str, batch: Any) -> Any:
        """This process's rows of a global batch, made into the global batch.

        With one process these are all the rows. Built with
        ``jax.make_array_from_process_local_data``: no data crosses hosts.
        """
        parts = self.local_parts()
        for leaf in jax.tree.leaves(batch):
            rows = int(np.shape(leaf)[0])
            if rows % parts:
                on = "this process's" if jax.process_count() > 1 else "the"
                raise ValueError(
                    f"{where}: a batch of {rows} examples cannot be split evenly over {on} "
                    f"{parts} devices of mesh axis {self.data_axis!r}. Give batches whose size "
                    f"is a multiple of {parts} ({_multiples(rows, parts)}), dropping or padding "
                    "a smaller last batch."
                )
        sharding = self.batch_sharding
        return jax.tree.map(lambda a: jax.make_array_from_process_local_data(sharding, a), batch)

    def is_placed(self, batch: Any) -> bool:
        sharding = self.batch_sharding
        return all(getattr(a, "sharding", None) == sharding for a in jax.tree.leaves(batch))


def _multiples(near: int, k: int) -> str:
    low = max(k, near - near % k)
    return f"{low} or {low + k}" if low != near else str(low)


def layout(
    mesh: Mesh | Sequence[Any] | None,
    data_axis: str = "data",
    param_sharding: str | ParamRule | None = None,
    where: str = "fit",
) -> Layout | None:
    """Resolves the ``mesh=``, ``data_axis=`` and ``param_sharding=`` arguments.

    Returns None when ``mesh`` is None (one device, no sharding).
    """
    if mesh is None:
        if param_sharding is not None:
            raise ValueError(
                f"{where}: param_sharding={param_sharding!r} needs a mesh; pass mesh=jax.devices()."
            )
        return None
    if not isinstance(data_axis, str) or not data_axis:
        raise ValueError(f"{where}: data_axis must be a non-empty string, got {data_axis!r}.")
    if not isinstance(mesh, Mesh):
        try:
            mesh = make_mesh(mesh, data_axis)
        except (TypeError, ValueError) as error:
            message = str(error).removeprefix("make_mesh: ")
            raise type(error)(
                f"{where}: mesh must be a jax.sharding.Mesh or a list of devices; {message}"
            ) from None
    if data_axis not in mesh.axis_names:
        raise ValueError(
            f"{where}: the mesh has no axis named {data_axis!r} (its axes: "
            f"{', '.join(map(repr, mesh.axis_names))}). Pass data_axis= one of them, or build "
            f"the mesh with an axis named {data_axis!r}, e.g. "
            f"Mesh(np.array(jax.devices()), ({data_axis!r},))."
        )
    rule: Any
    if param_sharding is None or param_sharding == "replicated":
        rule = None
    elif param_sharding == "fsdp":
        rule = fsdp()
    elif callable(param_sharding):
        rule = param_sharding
        if isinstance(rule, FSDP) and rule.axis is not None and rule.axis not in mesh.axis_names:
            raise ValueError(
                f"{where}: fsdp(axis={rule.axis!r}) names an axis the mesh does not have "
                f"(its axes: {', '.join(map(repr, mesh.axis_names))})."
            )
    else:
        raise ValueError(
            f"{where}: param_sharding must be None (replicated), 'fsdp', or a rule "
            f"rule(path, leaf, mesh, data_axis) -> PartitionSpec, got {param_sharding!r}."
        )
    return Layout(mesh, data_axis, rule)


def _put_rows(a: Any, sharding: NamedSharding, parts: int) -> jax.Array:
    """One array's rows split over ``parts`` devices, zero rows appended to divide evenly.

    Built with ``make_array_from_callback`` from the host value, so each
    process copies only its devices' rows (and no device ever holds the whole
    array, as ``jnp.pad`` on a device would).
    """
    if isinstance(a, jax.Array) and not a.is_fully_addressable:
        if a.shape[0] % parts == 0:
            return jax.device_put(a, sharding)
        from jax.experimental import multihost_utils  # every process places its data

        a = multihost_utils.process_allgather(a, tiled=True)
    host = np.asarray(a)
    n = host.shape[0]
    padded = -(-n // parts) * parts
    if padded == n:
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    def piece(index: Any) -> np.ndarray:
        rows, rest = index[0], tuple(index[1:])
        start, stop = rows.start or 0, padded if rows.stop is None else rows.stop
        columns = (slice(None), *rest)
        held = host[start : min(stop, n)][columns]
        missing = (stop - start) - held.shape[0]
        if not missing:
            return held
        return np.concatenate([held, np.zeros((missing, *held.shape[1:]), host.dtype)])

    return jax.make_array_from_callback((padded, *host.shape[1:]), sharding, piece)


def put(tree: Any, shardings: Any) -> Any:
    if jax.process_count() == 1:
        return jax.device_put(tree, shardings)
    return jax.tree.map(put_global, tree, shardings)


def put_global(a: Any, sharding: Sharding) -> Any:
    """One leaf onto devices of several processes, from this process's copy.

    ``make_array_from_callback`` copies to each local device its piece of the
    host value: no collective (``device_put`` would compare the value across
    processes first) and no cross-host traffic.
    """
    if isinstance(a, jax.Array) and not a.is_fully_addressable:
        return jax.device_put(a, sharding)
    if is_key(a):
        data = put_global(jax.random.key_data(a), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(a))
    host = np.asarray(a)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def place_train_state(
    train_state: Any,
    mesh: Mesh | Sequence[Any],
    *,
    data_axis: str = "data",
    param_sharding: str | ParamRule | None = None,
) -> Any:
    """``train_state`` placed on ``mesh``: replicated, or sharded by ``param_sharding``.

    Example:
        >>> import jax, optax, funcnet as fn
        >>> ts = fn.init_train_state(fn.Dense(2), optax.sgd(0.1), (None, 3), key=0)
        >>> ts = fn.place_train_state(ts, jax.devices()[:1])
        >>> ts.params["w"].sharding.spec
        P()
    """
    placement = layout(mesh, data_axis, param_sharding, "place_train_state")
    assert placement is not None
    return placement.place_state(train_state)


def shard_batch(batch: Any, mesh: Mesh | Sequence[Any], *, data_axis: str = "data") -> Any:
    """A global batch, split over the mesh's data axis, from this process's rows.

    With one process, ``batch`` is the whole batch. With several, it is this
    process's share (see :func:`funcnet.distributed.process_share`), and the
    result is one global array whose rows are every process's shares in order.

    Example:
        >>> import jax, numpy as np
        >>> x = shard_batch(np.zeros((4, 3)), jax.devices()[:1])
        >>> x.shape, x.sharding.spec
        ((4, 3), P('data',))
    """
    placement = layout(mesh, data_axis, None, "shard_batch")
    assert placement is not None
    return placement.place_batch("shard_batch", batch)
