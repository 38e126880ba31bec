"""Several processes (hosts) training one model through ``jax.distributed``.

Call :func:`initialize` first thing in the script on every process; then
``fit(..., mesh=...)`` spans every device of every process. See
docs/data-parallel.md.
"""

from funcnet._src.parallel.distributed import ProcessInfo as ProcessInfo
from funcnet._src.parallel.distributed import initialize as initialize
from funcnet._src.parallel.distributed import is_main_process as is_main_process
from funcnet._src.parallel.distributed import print_main as print_main
from funcnet._src.parallel.distributed import process_rows as process_rows
from funcnet._src.parallel.distributed import process_share as process_share
from funcnet._src.parallel.distributed import resolve_arguments as resolve_arguments
from funcnet._src.parallel.distributed import slurm_local_device_ids as slurm_local_device_ids

__all__ = [
    "ProcessInfo",
    "initialize",
    "is_main_process",
    "print_main",
    "process_rows",
    "process_share",
    "resolve_arguments",
    "slurm_local_device_ids",
]
