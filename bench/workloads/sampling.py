"""sampling: tokens per second of ``fn.generate`` with the key/value cache, and without one.

``bench/sampling.py``: greedy generation from a ``TransformerLM`` (width
128, 4 blocks, 4 heads, vocabulary 128), a prompt of 16 tokens and 240 new
ones, batch 1. "cached" is ``fn.generate`` on the ``decode=True`` twin (one
position per step over the cache); "uncached" recomputes the whole
``[batch, prompt + steps]`` buffer with the training model for every token
(one compiled ``lax.scan``, the unfilled tail hidden by the causal mask). Both
give the same tokens (checked); compilation is excluded. ``--quick``: width
16, 1 block, 12 new tokens.
"""

from __future__ import annotations

from typing import Any

from bench.runner import Context
from bench.workloads._funcnet_only import funcnet_only

NAME = "sampling"
TITLE = "greedy generation from a TransformerLM (width 128, 4 blocks, prompt 16, 240 new tokens)"
REFERENCE_TEXT = "funcnet without the cache (`funcnet uncached`)"


def reference(record: Any) -> tuple[str, str]:
    return "funcnet", "uncached"


def run(ctx: Context) -> None:
    with funcnet_only(ctx, NAME, "a funcnet setting against its default") as ok:
        if not ok:
            return
        from bench.sampling import measure

        for variant, samples in measure(quick=ctx.quick, repeats=ctx.repeats).items():
            ctx.record(NAME, "funcnet", variant, "tokens/s", samples, "tokens/s", "higher")
