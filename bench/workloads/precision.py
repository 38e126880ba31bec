"""precision: train-step time in float32 and in mixed bfloat16 (``mixed_precision=``).

The 4-block Transformer-like stack of ``bench/precision_accumulate.py``
(width 128, 4 heads, 16 sequences of 64 tokens) trained with Adam through
``fn.make_train_step``, with ``mixed_precision=None`` and
``"mixed_bfloat16"``: each warmed up (compile excluded), then timed in
interleaved rounds of 10 steps; one sample per round. On the CPU bfloat16 is
slower (no bfloat16 matrix units: XLA converts around each product); on a
GPU or TPU (``--device``) it is where mixed precision pays. ``--quick``:
2 blocks of width 32, rounds of 3 steps.
"""

from __future__ import annotations

import time
from typing import Any

from bench.runner import Context
from bench.workloads._funcnet_only import funcnet_only

NAME = "precision"
TITLE = "train step of 4 Transformer-like blocks (width 128, 16 x 64 tokens, Adam), float32 and mixed bfloat16"
REFERENCE_TEXT = "funcnet in float32 (`funcnet float32`)"
VARIANTS = {None: "float32", "mixed_bfloat16": "mixed_bfloat16"}


def reference(record: Any) -> tuple[str, str]:
    return "funcnet", "float32"


def run(ctx: Context) -> None:
    with funcnet_only(ctx, NAME, "a funcnet setting against its default") as ok:
        if not ok:
            return
        import jax

        from bench.precision_accumulate import _setup, sizes_for

        sizes, steps, _ = sizes_for(ctx.quick)
        runs = {}
        for precision in VARIANTS:
            ts, step, batch = _setup(sizes, mixed_precision=precision)
            ts, loss = step(ts, batch)  # compile and warm up
            jax.block_until_ready(loss)
            runs[precision] = (ts, step, batch)
        samples: dict[Any, list[float]] = {p: [] for p in VARIANTS}
        started = time.perf_counter()
        for _ in range(ctx.repeats):
            for precision, (ts, step, batch) in runs.items():
                start = time.perf_counter()
                for _ in range(steps):
                    ts, loss = step(ts, batch)
                jax.block_until_ready(loss)
                samples[precision].append((time.perf_counter() - start) / steps * 1e3)
                runs[precision] = (ts, step, batch)
            if time.perf_counter() - started > ctx.budget:
                break
        note = ctx.budget_note(len(samples[None]))
        for precision, name in VARIANTS.items():
            ctx.record(NAME, "funcnet", name, "per step", samples[precision], "ms", note=note)
