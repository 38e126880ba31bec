"""depth: compile time of a width-256 ReLU MLP of depth 4, 16 and 64, serial versus repeat.

The network is ``depth`` layers Dense(256, relu) on 256 inputs, then
Dense(10), softmax cross-entropy, SGD, batch 32. "serial" writes the layers
one after another (the compiled program grows with the depth); "repeat"
stacks their params and runs them with one ``lax.scan`` (``fn.repeat`` in
funcnet, a hand-written scan in JAX), so the program should not grow. The
figure is the first call of a fresh jitted train step: tracing, compiling
and one step (for PyTorch, eager, just the first step). ``--quick``: depths
2 and 4, width 16.
"""

from __future__ import annotations

from typing import Any

from bench import data
from bench.runner import Context, clock, make
from bench.spec import Dense, Repeat, Task

NAME = "depth"
TITLE = "compile time (s) of a width-256 relu MLP of depth 4, 16, 64; serial vs repeat"
REFERENCE_TEXT = (
    "hand-written JAX with the same build (`jax step loop, serial`: a Python loop "
    "over the layers; `jax step loop, repeat`: a `lax.scan` over stacked params), same depth"
)


def task(depth: int, width: int, build: str) -> Task:
    if build == "serial":
        body: tuple[Any, ...] = (Dense(width, "relu"),) * depth
    else:
        body = (Repeat(Dense(width, "relu"), depth),)
    return Task((*body, Dense(10)), (width,), "softmax_ce", 0.01)


def reference(record: Any) -> tuple[str, str]:
    build = record.variant.rsplit(", ", 1)[-1]
    return "jax", f"step loop, {build}"


def run(ctx: Context) -> None:
    depths, width = ((2, 4), 16) if ctx.quick else ((4, 16, 64), 256)
    repeats = min(ctx.repeats, 3)
    x, y = data.classification(32, (width,), seed=ctx.seed)
    for framework, variant_name, variant in ctx.variants(NAME, kinds=("loop",)):
        for build in ("serial", "repeat"):
            label = f"{variant_name}, {build}"
            with ctx.guard(NAME, framework, label):
                for depth in depths:
                    samples = []
                    for _ in range(repeats):
                        model = make(variant, task(depth, width, build), ctx.seed)
                        batch = model.prepare(x, y)
                        model.sync()

                        def first(model=model, batch=batch) -> None:
                            model.step(*batch)
                            model.sync()

                        samples.append(clock(first))
                    ctx.record(NAME, framework, label, f"compile d={depth}", samples, "s")
