"""The transformer workload's step loops, interleaved, in wall time and process CPU time.

    python -m bench.transformer_ab              # funcnet, hand-written JAX, PyTorch eager
    python -m bench.transformer_ab --rounds 9   # more rounds

On a shared machine wall-clock rates follow the load; the process CPU time
per step (``time.process_time``: all threads of this process) does much
less, so this prints both, as medians over interleaved rounds of 12 steps
on the same batches, with the load average. Same models and sizes as
``python -m bench --only transformer`` (bench/workloads/transformer.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()

    from bench import data
    from bench.frameworks import FRAMEWORKS, load
    from bench.workloads.transformer import FULL, task

    spec, batch = FULL["spec"], FULL["batch"]
    x, y = data.tokens(FULL["batches"] * batch, spec.length, spec.vocab)
    chosen = {
        "funcnet step loop": ("funcnet", "step loop"),
        "jax step loop": ("jax", "step loop"),
        "torch eager step loop": ("torch", "eager step loop"),
    }
    trainers, batches = {}, {}
    for label, (framework, variant) in chosen.items():
        module = load(framework) if framework in FRAMEWORKS else None
        if module is None or isinstance(module, str):
            print(f"{label}: {module}")
            continue
        model = module.VARIANTS[variant].make(task(spec), 0)
        batches[label] = [
            model.prepare(x[i * batch : (i + 1) * batch], y[i * batch : (i + 1) * batch])
            for i in range(FULL["batches"])
        ]
        model.step(*batches[label][0])
        model.sync()
        trainers[label] = model
    wall = {k: [] for k in trainers}
    cpu = {k: [] for k in trainers}
    load_start = os.getloadavg()
    for _ in range(args.rounds):
        for label, model in trainers.items():
            w0, c0 = time.perf_counter(), time.process_time()
            for i in range(args.steps):
                model.step(*batches[label][i % len(batches[label])])
            model.sync()
            wall[label].append((time.perf_counter() - w0) / args.steps)
            cpu[label].append((time.process_time() - c0) / args.steps)
    tokens = batch * spec.length
    print(
        f"load average {load_start} at start, {os.getloadavg()} at the end; {os.cpu_count()} CPUs"
    )
    print(
        "| step loop | wall ms/step | CPU ms/step | tokens/s (wall) | tokens per CPU-second | CPU vs jax |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    ref = statistics.median(cpu["jax step loop"])
    for label in trainers:
        w, c = statistics.median(wall[label]), statistics.median(cpu[label])
        print(
            f"| {label} | {w * 1e3:.1f} | {c * 1e3:.1f} | {tokens / w:,.0f} | {tokens / c:,.0f} | "
            f"{c / ref:.2f}x |"
        )


if __name__ == "__main__":
    main()
