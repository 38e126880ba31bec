"""remat: XLA's memory of a 12-block Transformer train step with and without rematerialisation.

The stack of ``bench/remat_memory.py`` (pre-norm blocks of LayerNorm,
MultiHeadAttention and a GELU feed-forward, width 256, 4 heads, 16 sequences
of 128 tokens, float32) repeated with ``fn.repeat(block, 12, remat=...)``;
the train step (``fn.make_train_step``, SGD, MSE) is compiled, not run, and
``compiled.memory_analysis()`` read: "temp" is the scratch memory beyond
arguments and outputs, where the saved activations live. A property of the
compiled program: the same on every run of the same versions (one sample).
``--quick``: 4 blocks of width 32.
"""

from __future__ import annotations

from typing import Any

from bench.runner import Context
from bench.workloads._funcnet_only import funcnet_only

NAME = "remat"
TITLE = "temp memory of a 12-block Transformer train step (width 256, 16 x 128 tokens), fn.repeat(..., remat=...)"
REFERENCE_TEXT = "funcnet without rematerialisation (`funcnet remat=False`)"
MIB = 2.0**20


def reference(record: Any) -> tuple[str, str]:
    return "funcnet", "remat=False"


def run(ctx: Context) -> None:
    with funcnet_only(ctx, NAME, "a funcnet setting against its default") as ok:
        if not ok:
            return
        from bench.remat_memory import measure

        _, memory = measure(quick=ctx.quick)
        for remat, m in memory.items():
            variant = f"remat={remat!r}"
            ctx.record(NAME, "funcnet", variant, "temp", [m["temp"] / MIB], "MiB")
            ctx.record(NAME, "funcnet", variant, "arguments", [m["arguments"] / MIB], "MiB")
