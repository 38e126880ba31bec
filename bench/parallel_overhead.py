"""What data parallelism costs: the sharded train step against the plain one.

    python bench/parallel_overhead.py            # all parts, a markdown table
    python bench/parallel_overhead.py --quick    # fewer steps

Parts:

1. One device: ``make_train_step(mesh=[device])`` against ``make_train_step()``.
   Same device, same work: the difference is what the sharding annotations
   cost (nothing, once compiled, if XLA removes them as it should).
2. Four forced CPU devices (a subprocess with
   ``XLA_FLAGS=--xla_force_host_platform_device_count=4``): the plain step on
   one device against the step sharded over four, same global batch. The
   "devices" share this machine's cores, so this measures the partitioning and
   all-reduce overhead, not a speed-up.
3. GPUs, when there are several: the sharded step over 1, 2, 4, ... GPUs with
   a fixed batch per GPU (weak scaling): ideal is a constant step time.

Each figure is the median of timed steps after warm-up (compilation excluded).
Results are recorded in docs/data-parallel.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def model_and_data(batch: int, width: int):
    import numpy as np
    import optax

    import funcnet as fn

    net = fn.serial(fn.Dense(width, "relu"), fn.Dense(width, "relu"), fn.Dense(10))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, 64)).astype(np.float32)
    y = rng.integers(0, 10, size=(batch,)).astype(np.int32)
    return net, optax.adam(1e-3), x, y


def time_step(net, opt, x, y, steps: int, mesh=None) -> float:
    """Median seconds per step of the jitted train step."""
    import jax

    import funcnet as fn

    ts = fn.init_train_state(net, opt, (None, x.shape[1]), key=0)
    step = fn.make_train_step(net, "sparse_categorical_crossentropy", opt, mesh=mesh)
    if mesh is not None:
        ts = fn.place_train_state(ts, mesh)
        batch = fn.shard_batch((x, y), mesh)
    else:
        batch = jax.device_put((x, y))
    for _ in range(3):  # compile and warm up
        ts, loss = step(ts, batch)
    loss.block_until_ready()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        ts, loss = step(ts, batch)
        loss.block_until_ready()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def part(name: str, steps: int) -> list[dict]:
    import jax

    rows = []
    if name in ("one", "four"):
        devices, label = (1, "1 device") if name == "one" else (4, "4 CPU devices")
        for batch, width in ((256, 256), (1024, 1024)):
            net, opt, x, y = model_and_data(batch, width)
            plain = time_step(net, opt, x, y, steps)
            sharded = time_step(net, opt, x, y, steps, mesh=jax.devices()[:devices])
            rows.append(dict(part=label, batch=batch, width=width, plain=plain, sharded=sharded))
    elif name == "gpus":
        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        per_device, width = 256, 1024
        n = 1
        while n <= len(gpus):
            net, opt, x, y = model_and_data(per_device * n, width)
            sharded = time_step(net, opt, x, y, steps, mesh=gpus[:n])
            rows.append(
                dict(
                    part=f"{n} GPU(s)",
                    batch=per_device * n,
                    width=width,
                    plain=None,
                    sharded=sharded,
                )
            )
            n *= 2
    return rows


def run_child(name: str, steps: int, env: dict) -> list[dict]:
    out = subprocess.run(
        [sys.executable, __file__, "--part", name, "--steps", str(steps)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    lines = [
        "| setting | global batch | width | plain step (ms) | sharded step (ms) | sharded / plain |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        plain = "" if r["plain"] is None else f"{r['plain'] * 1e3:.2f}"
        ratio = "" if r["plain"] is None else f"{r['sharded'] / r['plain']:.2f}"
        lines.append(
            f"| {r['part']} | {r['batch']} | {r['width']} | {plain} | "
            f"{r['sharded'] * 1e3:.2f} | {ratio} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="sharded vs plain train step")
    parser.add_argument("--part", choices=("one", "four", "gpus"), help="run one part (internal)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="10 timed steps")
    args = parser.parse_args()
    steps = 10 if args.quick else args.steps
    if args.part:
        print(json.dumps(part(args.part, steps)))
        return
    cpu = {"JAX_PLATFORMS": "cpu", "FUNCNET_COMPILATION_CACHE": "0"}
    rows = run_child("one", steps, cpu)
    rows += run_child(
        "four", steps, {**cpu, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    )
    try:
        import jax

        if sum(d.platform == "gpu" for d in jax.devices()) > 1:
            rows += run_child("gpus", steps, {"FUNCNET_COMPILATION_CACHE": "0"})
    except RuntimeError:
        pass
    print(table(rows))


if __name__ == "__main__":
    main()
