"""Several processes (hosts) training one model: the entry point and data feeding.

Every process runs the same script. :func:`initialize` joins them into one JAX
runtime with ``jax.distributed.initialize`` (arguments, then environment
variables, then JAX's cluster detection; checked before joining and
cross-checked after); afterwards a mesh over ``jax.devices()`` spans the
hosts and ``funcnet.fit(..., mesh=...)`` trains across all of them.
:func:`process_share` takes this process's rows of a global batch, and
:func:`print_main` prints on process 0 only. How to launch it, and why it
works this way: ``docs/data-parallel.md``.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from funcnet._src.parallel.sharding import layout

ADDRESS_VARS = ("FUNCNET_COORDINATOR", "JAX_COORDINATOR_ADDRESS")
COUNT_VARS = ("FUNCNET_NUM_PROCESSES", "JAX_NUM_PROCESSES")
ID_VARS = ("FUNCNET_PROCESS_ID", "JAX_PROCESS_ID")


class ProcessInfo(NamedTuple):
    """Where this process stands after :func:`initialize`."""

    process_id: int
    num_processes: int
    local_devices: int
    global_devices: int


def _from_env(names: Sequence[str]) -> tuple[str | None, str | None]:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value, name
    return None, None


def _as_int(value: Any, what: str, source: str | None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, str)):
        raise TypeError(f"initialize: {what} must be an integer, got {value!r}.")
    try:
        return int(value)
    except ValueError:
        where = f" (from the environment variable {source})" if source else ""
        raise ValueError(f"initialize: {what} must be an integer, got {value!r}{where}.") from None


def _check_address(address: Any, source: str | None) -> str:
    where = f" (from {source})" if source else ""
    if not isinstance(address, str):
        raise TypeError(f"initialize: coordinator_address must be a string, got {address!r}.")
    match = re.fullmatch(r"(\[[^\]]+\]|[^:\s]+):(\d+)", address.strip())
    if match is None or not 0 < int(match.group(2)) < 65536:
        raise ValueError(
            f"initialize: coordinator_address must be 'host:port' with a port in 1..65535, "
            f"got {address!r}{where}. It is the address of process 0, which every process "
            "can reach, e.g. '10.0.0.1:1234' (or '127.0.0.1:1234' on one machine)."
        )
    return address.strip()


def resolve_arguments(
    coordinator_address: str | None = None,
    num_processes: int | str | None = None,
    process_id: int | str | None = None,
) -> tuple[str | None, int | None, int | None]:
    """The coordinator address, process count and id from the arguments or the environment.

    Values still None are left for JAX's cluster detection (SLURM, Open MPI, TPU).

    Example:
        >>> resolve_arguments("127.0.0.1:1234", 2, "1")
        ('127.0.0.1:1234', 2, 1)
    """
    address_source = count_source = id_source = None
    if coordinator_address is None:
        coordinator_address, address_source = _from_env(ADDRESS_VARS)
    if num_processes is None:
        num_processes, count_source = _from_env(COUNT_VARS)
    if process_id is None:
        process_id, id_source = _from_env(ID_VARS)
    if coordinator_address is not None:
        coordinator_address = _check_address(coordinator_address, address_source)
    count = None if num_processes is None else _as_int(num_processes, "num_processes", count_source)
    index = None if process_id is None else _as_int(process_id, "process_id", id_source)
    if count is not None and count < 1:
        raise ValueError(f"initialize: num_processes must be at least 1, got {count}.")
    if index is not None and index < 0:
        raise ValueError(f"initialize: process_id must be >= 0, got {index}.")
    if count is not None and index is not None and index >= count:
        raise ValueError(
            f"initialize: process_id {index} is out of range for num_processes={count}; ids "
            f"run from 0 to {count - 1}, one per process, process 0 being the coordinator."
        )
    return coordinator_address, count, index


_SLURM_VARS = (
    "SLURM_JOB_ID",
    "SLURM_STEP_NODELIST",
    "SLURM_NTASKS",
    "SLURM_PROCID",
    "SLURM_LOCALID",
)
_VISIBLE_VARS = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES")


def _tasks_on_node(environ: Any) -> int | None:
    """Tasks of this job step on this node, from SLURM's variables (None: not said)."""
    for name in ("SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE"):
        # "8(x4)" or "2(x3),1": counts per node, in node order (SLURM_NODEID indexes it).
        value = environ.get(name)
        if not value:
            continue
        counts: list[int] = []
        for part in value.split(","):
            match = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part.strip())
            if match is None:
                counts = []
                break
            counts += [int(match.group(1))] * int(match.group(2) or 1)
        node = environ.get("SLURM_NODEID", "0")
        if counts and node.isdigit() and int(node) < len(counts):
            return counts[int(node)]
    value = environ.get("SLURM_NTASKS_PER_NODE", "")
    return int(value) if value.isdigit() else None


def _visible_gpus(environ: Any) -> int | None:
    """GPUs this process can see: CUDA_VISIBLE_DEVICES (or ROCm's), else SLURM_GPUS_ON_NODE."""
    for name in _VISIBLE_VARS:
        value = environ.get(name)
        if value is not None:
            # SLURM writes "NoDevFiles" when the step has no GPU.
            entries = [e for e in value.split(",") if e.strip() and e.strip() != "NoDevFiles"]
            return len(entries)
    value = environ.get("SLURM_GPUS_ON_NODE", "")
    return int(value) if value.isdigit() else None


def slurm_local_device_ids(environ: Any = None) -> list[int] | None:
    """The GPUs a SLURM task drives: JAX's choice corrected for tasks that drive several.

    JAX's SLURM detection gives every task the one device ``[SLURM_LOCALID]``
    of those it sees: right for one task per GPU when every task sees all of
    the node's GPUs, wrong otherwise. Here, with ``k`` GPUs visible to the
    task (``CUDA_VISIBLE_DEVICES``, ROCm's variables, else
    ``SLURM_GPUS_ON_NODE``) and ``t`` tasks on the node:

    - ``t == 1`` (one process per node): all ``k`` GPUs, ``[0, ..., k-1]``;
    - ``k == 1`` (the task bound to its own GPU, ``--gpus-per-task=1``): ``[0]``
      (JAX's ``[SLURM_LOCALID]`` names a GPU the task cannot see);
    - ``k`` a multiple of ``t``: the task's block of ``k / t`` GPUs (for
      ``k == t``, JAX's own choice).

    None (leave it to JAX) outside SLURM, when ``JAX_LOCAL_DEVICE_IDS`` is
    set, or when the counts are unknown or do not divide.

    Args:
        environ: the environment to read (default ``os.environ``).

    Example:
        >>> env = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "node[1-2]", "SLURM_NTASKS": "2",
        ...        "SLURM_PROCID": "1", "SLURM_LOCALID": "0", "SLURM_NODEID": "1",
        ...        "SLURM_STEP_TASKS_PER_NODE": "1(x2)", "CUDA_VISIBLE_DEVICES": "0,1,2,3"}
        >>> slurm_local_device_ids(env)
        [0, 1, 2, 3]
    """
    environ = os.environ if environ is None else environ
    if not all(name in environ for name in _SLURM_VARS) or environ.get("JAX_LOCAL_DEVICE_IDS"):
        return None
    gpus, tasks = _visible_gpus(environ), _tasks_on_node(environ)
    local_id = environ["SLURM_LOCALID"]
    if not gpus or not local_id.isdigit():
        return None
    if gpus == 1:
        return [0]
    if not tasks or gpus % tasks or int(local_id) >= tasks:
        return None
    per_task = gpus // tasks
    first = int(local_id) * per_task
    return list(range(first, first + per_task))


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: Sequence[int] | None = None,
    timeout: int = 300,
) -> ProcessInfo:
    """Joins this process to the others: ``jax.distributed.initialize``, checked.

    Call it first thing in the script, on every process, before any other JAX
    call. The arguments default to the environment (see the module doc) and,
    past that, to JAX's detection of SLURM, Open MPI and Cloud TPU.

    Args:
        coordinator_address: ``"host:port"`` of process 0, reachable by all.
        num_processes: how many processes take part.
        process_id: this process's id, from 0 to ``num_processes - 1``.
        local_device_ids: the local devices this process uses (e.g. one GPU
            per process); None: all of them, except under SLURM, where each
            task drives the GPUs :func:`slurm_local_device_ids` gives (all
            the GPUs it sees when it is the node's only task).
        timeout: seconds to wait for every process to join.

    Returns:
        A :class:`ProcessInfo` (id, count, local and global device counts).

    Raises:
        ValueError: malformed arguments, or processes that do not agree on
            their count (every process raises the same message).
        RuntimeError: JAX was used before this call, or the values could not
            be found.
    """
    address, count, index = resolve_arguments(coordinator_address, num_processes, process_id)
    if jax.distributed.is_initialized():
        return _check_joined(count, index, address)
    _use_gloo_on_cpu()
    if local_device_ids is None:
        local_device_ids = slurm_local_device_ids()
    try:
        jax.distributed.initialize(
            address,
            count,
            index,
            local_device_ids=local_device_ids,
            initialization_timeout=timeout,
        )
    except ValueError as error:
        if "should be defined" in str(error) or "must be defined" in str(error):
            raise RuntimeError(
                "initialize: could not find where to join: "
                f"coordinator_address={address!r}, num_processes={count!r}, "
                f"process_id={index!r}. Pass them, or set FUNCNET_COORDINATOR, "
                "FUNCNET_NUM_PROCESSES and FUNCNET_PROCESS_ID on every process (SLURM, "
                f"Open MPI and Cloud TPU are detected automatically). JAX said: {error}"
            ) from None
        raise
    except RuntimeError as error:
        if "before any JAX" in str(error) or "must be called before" in str(error):
            raise RuntimeError(
                "initialize: JAX was already used in this process (a computation ran or "
                "jax.devices() was called). Call funcnet.distributed.initialize() first "
                "thing in the script, before any JAX computation."
            ) from None
        raise
    return _check_joined(count, index, address)


def _use_gloo_on_cpu() -> None:
    if getattr(jax.config, "jax_cpu_collectives_implementation", None) in (None, "", "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")


def _check_joined(count: int | None, index: int | None, address: str | None) -> ProcessInfo:
    """Every process checks that all were started with the coordinator's count."""
    from jax.experimental import multihost_utils

    actual_count, actual_index = jax.process_count(), jax.process_index()
    requested = np.array([count if count is not None else -1, actual_index], np.int32)
    # A collective, so every process learns every other's count before any raises.
    table = np.asarray(multihost_utils.process_allgather(requested)).reshape(-1, 2)
    wrong = [(int(i), int(c)) for c, i in table if c not in (-1, actual_count)]
    if wrong:
        listed = ", ".join(f"process {i} has num_processes={c}" for i, c in wrong)
        raise ValueError(
            f"initialize: the processes disagree on their number: the coordinator at "
            f"{address or 'the detected address'} expects {actual_count} processes but "
            f"{listed}. Start every process with the same num_processes "
            f"({actual_count} here) and ids 0..{actual_count - 1}."
        )
    if index is not None and index != actual_index:
        raise ValueError(
            f"initialize: this process asked for process_id={index} but JAX was initialized "
            f"as process {actual_index}; jax.distributed was initialized earlier with other "
            "values."
        )
    return ProcessInfo(actual_index, actual_count, jax.local_device_count(), jax.device_count())


def is_main_process() -> bool:
    """Whether this is process 0: the one that logs, writes checkpoints and reports."""
    return jax.process_index() == 0


def print_main(*args: Any, **kwargs: Any) -> None:
    """``print`` on process 0 only (flushed), so a run logs once, not once per host.

    Example:
        >>> print_main("epoch", 1)
        epoch 1
    """
    if is_main_process():
        kwargs.setdefault("flush", True)
        kwargs.setdefault("file", sys.stdout)
        print(*args, **kwargs)


def process_rows(
    global_batch_size: int,
    mesh: Any,
    *,
    data_axis: str = "data",
) -> slice:
    """The rows of a global batch that this process feeds (its devices' shards).

    Example:
        >>> import jax
        >>> process_rows(8, jax.devices()[:1])
        slice(0, 8, None)
    """
    placement = layout(mesh, data_axis, None, "process_rows")
    assert placement is not None
    placement.check_batch("process_rows", np.zeros((global_batch_size, 0)))
    spans = placement.local_rows(global_batch_size)
    start, stop = spans[0][0], spans[-1][1]
    if sum(b - a for a, b in spans) != stop - start:
        raise ValueError(
            "process_rows: this process's devices hold rows that are not contiguous in the "
            "batch; order the mesh's devices by process (jax.devices() does)."
        )
    return slice(start, stop)


def process_share(batch: Any, mesh: Any, *, data_axis: str = "data") -> Any:
    """This process's rows of a global batch (every array's leading axis).

    Every process may load the same global batch and keep its share; giving
    the shares to :func:`funcnet.shard_batch` rebuilds the global batch on the
    mesh without moving data between hosts.

    Example:
        >>> import jax, numpy as np
        >>> process_share(np.arange(4), jax.devices()[:1])
        array([0, 1, 2, 3])
    """
    leaves = jax.tree.leaves(batch)
    if not leaves:
        raise ValueError("process_share: the batch holds no arrays.")
    rows = process_rows(int(np.shape(leaves[0])[0]), mesh, data_axis=data_axis)
    return jax.tree.map(lambda a: a[rows], batch)
