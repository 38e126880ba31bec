"""Mixed precision's step time and gradient accumulation's memory, on the CPU.

    python -m bench.precision_accumulate            # 4 Transformer-like blocks
    python -m bench.precision_accumulate --quick    # 2 small blocks, fewer steps

The model is ``bench/remat_memory.py``'s stack of Transformer-like blocks.

- Step time: the jitted train step (``fn.make_train_step``, Adam) with
  ``mixed_precision=None`` and ``"mixed_bfloat16"``, each warmed up (compile
  excluded) and then timed in interleaved rounds; the median per step.
- Memory: XLA's memory analysis of the compiled step (``temp_size_in_bytes``)
  for one batch with ``accumulate=1`` and ``accumulate=4``: the same update,
  one micro-batch's activations at a time. Deterministic, not a timing.

Recorded in bench/README.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench.remat_memory import block


def _setup(sizes: dict, **options):
    import jax
    import jax.numpy as jnp
    import optax

    import funcnet as fn

    net = fn.repeat(block(sizes["width"], sizes["heads"]), sizes["depth"])
    optimizer = optax.adam(1e-3)
    shape = (sizes["batch"], sizes["seq"], sizes["width"])
    precision = options.get("mixed_precision")
    ts = fn.init_train_state(net, optimizer, (None, *shape[1:]), key=0, mixed_precision=precision)
    step = fn.make_train_step(net, "mse", optimizer, **options)
    x = jax.random.normal(jax.random.key(1), shape, jnp.float32)
    return ts, step, (x, x)


def step_times(sizes: dict, steps: int, rounds: int) -> dict:
    """Median seconds per step for float32 and mixed bfloat16, in interleaved rounds."""
    import jax

    runs = {name: _setup(sizes, mixed_precision=name) for name in (None, "mixed_bfloat16")}
    for name, (ts, step, batch) in runs.items():  # compile and warm up
        ts, loss = step(ts, batch)
        jax.block_until_ready(loss)
        runs[name] = (ts, step, batch)
    samples: dict = {name: [] for name in runs}
    for _ in range(rounds):
        for name, (ts, step, batch) in runs.items():
            start = time.perf_counter()
            for _ in range(steps):
                ts, loss = step(ts, batch)
            jax.block_until_ready(loss)
            samples[name].append((time.perf_counter() - start) / steps)
            runs[name] = (ts, step, batch)
    return {name: statistics.median(values) for name, values in samples.items()}


def accumulate_memory(sizes: dict, k: int = 4) -> dict:
    """Compiled temp bytes of the step for the same batch with accumulate 1 and ``k``."""
    result = {}
    for accumulate in (1, k):
        ts, step, batch = _setup(sizes, accumulate=accumulate)
        stats = step.lower(ts, batch).compile().memory_analysis()
        result[accumulate] = stats.temp_size_in_bytes
    return result


def sizes_for(quick: bool) -> tuple[dict, int, int]:
    """``(model sizes, steps per round, rounds)`` of the full or the quick run."""
    if quick:
        return {"depth": 2, "width": 32, "heads": 2, "batch": 8, "seq": 16}, 3, 2
    return {"depth": 4, "width": 128, "heads": 4, "batch": 16, "seq": 64}, 10, 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small model, few steps")
    args = parser.parse_args()
    sizes, steps, rounds = sizes_for(args.quick)
    print(
        f"{sizes['depth']} blocks, width {sizes['width']}, {sizes['heads']} heads, "
        f"batch {sizes['batch']} x {sizes['seq']} tokens\n"
    )
    times = step_times(sizes, steps, rounds)
    base = times[None]
    print("| mixed_precision | ms per step | vs float32 |\n| --- | --- | --- |")
    for name, seconds in times.items():
        print(f"| {name!r} | {seconds * 1e3:.1f} | {seconds / base:.2f}x |")
    memory = accumulate_memory(sizes)
    print("\n| accumulate | temp (MiB) | vs accumulate=1 |\n| --- | --- | --- |")
    for k, size in memory.items():
        print(f"| {k} | {size / 2**20:.1f} | {size / memory[1]:.2f}x |")


if __name__ == "__main__":
    main()
