"""The workloads, in the order they run.

Each module defines ``NAME``, ``TITLE``, ``REFERENCE_TEXT`` (what its ratios
are taken against), ``reference(record) -> (framework, variant)`` and
``run(ctx)``, which measures every framework variant and adds records to
``ctx.results``.
"""

from __future__ import annotations

from types import ModuleType

from bench.workloads import (
    cnn,
    depth,
    ensemble,
    hello,
    mlp,
    overhead,
    playground,
    precision,
    remat,
    sampling,
    startup,
    transformer,
)

WORKLOADS: dict[str, ModuleType] = {
    module.NAME: module
    for module in (
        hello,
        playground,
        mlp,
        cnn,
        depth,
        overhead,
        ensemble,
        startup,
        transformer,
        remat,
        precision,
        sampling,
    )
}
