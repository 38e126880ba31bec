"""transformer: training throughput of a small decoder-only Transformer language model.

Vocabulary 256, width 128, 4 heads, 2 pre-norm blocks (causal self-attention,
exact-GELU feed-forward of width 512), learned positions, the embedding tied
to the output, sequences of 64 tokens, batch 16, softmax cross-entropy on
the next token, Adam 1e-3, float32 (:class:`bench.spec.TransformerLM`).
Uniform random token ids (the rate does not depend on the values).
Figures: steady tokens per second (batch x length per step) and compile
time. ``--quick``: vocabulary 32, width 16, 2 heads, 1 block, 8 tokens,
batch 4.
"""

from __future__ import annotations

from typing import Any

from bench import data
from bench.runner import Context
from bench.spec import Task, TransformerLM
from bench.workloads._throughput import run_throughput

NAME = "transformer"
TITLE = (
    "decoder-only Transformer LM (vocab 256, width 128, 4 heads, 2 blocks, 64 tokens, "
    "batch 16), Adam, float32"
)
REFERENCE_TEXT = "hand-written JAX, jitted step in a Python loop (`jax step loop`)"

FULL = {"spec": TransformerLM(256, 128, 2, 4, 64), "batch": 16, "batches": 4, "steps": 24}
QUICK = {"spec": TransformerLM(32, 16, 1, 2, 8), "batch": 4, "batches": 2, "steps": 4}


def task(spec: TransformerLM) -> Task:
    return Task((spec,), (spec.length,), "softmax_ce", 1e-3, optimizer="adam")


def reference(record: Any) -> tuple[str, str]:
    return "jax", "step loop"


def run(ctx: Context) -> None:
    sizes = QUICK if ctx.quick else FULL
    spec, batch = sizes["spec"], sizes["batch"]
    x, y = data.tokens(sizes["batches"] * batch, spec.length, spec.vocab, seed=ctx.seed)
    run_throughput(
        ctx,
        NAME,
        task(spec),
        x,
        y,
        batch_size=batch,
        steps=sizes["steps"],
        rate_metric=True,
        rate=("tokens/s", float(batch * spec.length)),
    )
