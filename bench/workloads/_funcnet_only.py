"""What the funcnet-only workloads (remat, precision, sampling) share: running only with funcnet.

They compare funcnet with itself (a setting against its default), so their
reference is a funcnet variant, and every other framework's row says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from bench.runner import Context


@contextmanager
def funcnet_only(ctx: Context, workload: str, what: str) -> Iterator[bool]:
    """Yields whether funcnet is loaded (and guards the measurement); notes the others."""
    for name, module in ctx.frameworks.items():
        if name == "funcnet":
            continue
        reason = module if isinstance(module, str) else f"not measured ({what}: funcnet only)"
        ctx.results.skip(workload, name, reason)
    module = ctx.frameworks.get("funcnet")
    if module is None or isinstance(module, str):
        if module is not None:
            ctx.results.skip(workload, "funcnet", module)
        yield False
        return
    with ctx.guard(workload, "funcnet", None):
        yield True
