"""The MNIST-sized CNN on XLA:CPU: native convolution versus im2col, loop versus scan.

Run ``python bench/cnn_backends.py`` (about 10 minutes on 2 cores; ``--quick``
for a smoke run, ``--ops`` for the per-layer table behind funcnet's "auto"
choice). Standalone: it imports only funcnet, JAX, optax, numpy and, when
installed, torch.

The model: conv3x3(32) relu, conv3x3(64) relu (both VALID), maxpool 2x2,
flatten, dense(128) relu, dense(10), on 28x28x1 inputs, batch 64, softmax
cross-entropy, SGD with momentum 0.9. One training step is forward, backward
and update. Variants:

- ``jax``: hand-written JAX, ``lax.conv_general_dilated`` + ``lax.reduce_window``
  (the reference of every ratio);
- ``funcnet-native``, ``funcnet-im2col``, ``funcnet-auto``: funcnet's Conv,
  MaxPool, Dense with the layers' ``impl`` argument set to each value;
- ``torch``: PyTorch eager, the same model (NCHW, as PyTorch wants).

Each JAX variant runs in two ways over the same 16 batches: ``loop`` (a
Python loop calling a jitted step 16 times) and ``scan`` (one jitted
``lax.scan`` over the 16 steps). Every (variant, way) runs in its own
subprocess with a timeout, so one pathological compile cannot hang the run;
compile time is measured separately from the steps. The machine is shared:
the variants are interleaved, repeated ``--rounds`` times, and the medians
reported with the load average; steps per CPU-second (process time) are shown
too, being less sensitive to other processes than wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

BATCH = 64
STEPS = 16  # steps per loop window and per scan call
BUDGET_S = 40.0  # timed seconds per subprocess, past the first window
SLOW_S = 30.0  # a job whose window took longer runs in the first round only
VARIANTS = ("jax", "funcnet-native", "funcnet-im2col", "funcnet-auto", "torch")


# --------------------------------------------------------------------------
# The workers (run in subprocesses)


def _data(seed: int = 0) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(STEPS, BATCH, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, size=(STEPS, BATCH)).astype(np.int32)
    return x, y


def _jax_model(variant: str) -> tuple[Any, Any]:
    """``(params, apply(params, x) -> logits)`` for a JAX variant."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    key = jax.random.key(0)
    if variant == "jax":
        glorot = jax.nn.initializers.glorot_uniform()
        k = jax.random.split(key, 4)
        params = {
            "c1": glorot(k[0], (3, 3, 1, 32)),
            "b1": jnp.zeros(32),
            "c2": glorot(k[1], (3, 3, 32, 64)),
            "b2": jnp.zeros(64),
            "d1": glorot(k[2], (12 * 12 * 64, 128)),
            "e1": jnp.zeros(128),
            "d2": glorot(k[3], (128, 10)),
            "e2": jnp.zeros(10),
        }
        dims = ("NHWC", "HWIO", "NHWC")

        def apply(p, x):
            x = lax.conv_general_dilated(x, p["c1"], (1, 1), "VALID", dimension_numbers=dims)
            x = jax.nn.relu(x + p["b1"][None, None, None, :])
            x = lax.conv_general_dilated(x, p["c2"], (1, 1), "VALID", dimension_numbers=dims)
            x = jax.nn.relu(x + p["b2"][None, None, None, :])
            x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
            x = x.reshape(x.shape[0], -1)
            x = jax.nn.relu(x @ p["d1"] + p["e1"][None, :])
            return x @ p["d2"] + p["e2"][None, :]

        return params, apply

    import funcnet as fn

    impl = variant.split("-", 1)[1]  # funcnet-native, funcnet-im2col, funcnet-auto
    net = fn.serial(
        fn.Conv(32, (3, 3), padding="VALID", impl=impl),
        fn.Relu(),
        fn.Conv(64, (3, 3), padding="VALID", impl=impl),
        fn.Relu(),
        fn.MaxPool((2, 2), impl=impl),
        fn.Flatten(),
        fn.Dense(128),
        fn.Relu(),
        fn.Dense(10),
    )
    _, params, state = net.init(key, (None, 28, 28, 1))

    def apply(p, x):
        return net.apply(p, state, x)[0]

    return params, apply


def _worker_jax(variant: str, way: str, windows: int) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    import optax

    params, apply = _jax_model(variant)
    opt = optax.sgd(0.01, momentum=0.9)
    opt_state = opt.init(params)
    xs, ys = (jnp.asarray(a) for a in _data())

    def loss_fn(p, x, y):
        return optax.softmax_cross_entropy_with_integer_labels(apply(p, x), y).mean()

    def step(carry, batch):
        p, s = carry
        loss, g = jax.value_and_grad(loss_fn)(p, *batch)
        updates, s = opt.update(g, s, p)
        return (optax.apply_updates(p, updates), s), loss

    carry = (params, opt_state)
    if way == "loop":
        batches = [(xs[i], ys[i]) for i in range(STEPS)]
        lowered = jax.jit(step, donate_argnums=0).lower(carry, batches[0])
    else:
        scan = jax.jit(lambda c, b: jax.lax.scan(step, c, b), donate_argnums=0)
        lowered = scan.lower(carry, (xs, ys))
    t0 = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t0

    def run(carry):
        if way == "scan":
            return compiled(carry, (xs, ys))
        for batch in batches:
            carry, loss = compiled(carry, batch)
        return carry, loss

    carry = (params, opt_state)
    t0 = time.perf_counter()
    carry, loss = run(carry)  # the first call also compiles (loop/scan cache)
    jax.block_until_ready(loss)
    first_s = time.perf_counter() - t0
    wall, cpu = [], []
    usage = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    # At least one window; no more once BUDGET_S is spent (a slow case would
    # otherwise take many minutes).
    while len(wall) < windows and (not wall or time.perf_counter() - started < BUDGET_S):
        t0, c0 = time.perf_counter(), time.process_time()
        carry, loss = run(carry)
        jax.block_until_ready(loss)
        wall.append(STEPS / (time.perf_counter() - t0))
        cpu.append(STEPS / (time.process_time() - c0))
    after = resource.getrusage(resource.RUSAGE_SELF)
    steps = STEPS * len(wall)
    return {
        "compile_s": compile_s,
        "first_call_s": first_s,
        "wall": wall,
        "cpu": cpu,
        # A per-step loop allocates its temporaries on every call; fresh pages
        # fault (kernel time) where a scan reuses its buffers.
        "faults_per_step": (after.ru_minflt - usage.ru_minflt) / steps,
        "sys_ms_per_step": 1e3 * (after.ru_stime - usage.ru_stime) / steps,
        "loss": float(jnp.mean(loss)),
        "backend": jax.default_backend(),
        "impl": variant.split("-", 1)[1] if variant.startswith("funcnet-") else "",
    }


def _worker_torch(windows: int) -> dict[str, Any]:
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3),
        torch.nn.ReLU(),
        torch.nn.Conv2d(32, 64, 3),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(12 * 12 * 64, 128),
        torch.nn.ReLU(),
        torch.nn.Linear(128, 10),
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    lossf = torch.nn.CrossEntropyLoss()
    x_np, y_np = _data()
    xs = torch.from_numpy(x_np).permute(0, 1, 4, 2, 3).contiguous()
    ys = torch.from_numpy(y_np).long()

    def run():
        for i in range(STEPS):
            opt.zero_grad()
            loss = lossf(model(xs[i]), ys[i])
            loss.backward()
            opt.step()
        return loss

    t0 = time.perf_counter()
    run()
    first_s = time.perf_counter() - t0
    wall, cpu = [], []
    for _ in range(windows):
        t0, c0 = time.perf_counter(), time.process_time()
        loss = run()
        wall.append(STEPS / (time.perf_counter() - t0))
        cpu.append(STEPS / (time.process_time() - c0))
    return {
        "compile_s": 0.0,
        "first_call_s": first_s,
        "wall": wall,
        "cpu": cpu,
        "loss": float(loss),
        "backend": f"torch {torch.__version__}, {torch.get_num_threads()} threads",
    }


# --------------------------------------------------------------------------
# The driver


def _run_one(variant: str, way: str, windows: int, timeout: float) -> dict[str, Any]:
    env = dict(os.environ)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", variant, way, str(windows)]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s", "load": load}
    if out.returncode != 0:
        return {
            "error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed",
            "load": load,
        }
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["load"] = load
    result["subprocess_s"] = time.perf_counter() - t0
    return result


def _torch_available() -> bool:
    try:
        out = subprocess.run(
            [sys.executable, "-c", "import torch"], capture_output=True, timeout=120
        )
    except subprocess.TimeoutExpired:
        return False
    return out.returncode == 0


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main_training(args: argparse.Namespace) -> dict[str, Any]:
    variants = [v for v in VARIANTS if v != "torch" or _torch_available()]
    jobs = [(v, w) for v in variants for w in (("loop",) if v == "torch" else ("loop", "scan"))]
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {job: [] for job in jobs}
    uptime_before = _uptime()
    for r in range(args.rounds):
        # Rotate the order each round so no variant always follows the same one.
        order = jobs[r % len(jobs) :] + jobs[: r % len(jobs)]
        for variant, way in order:
            done = runs[(variant, way)]
            if done and all("error" in x or STEPS / min(x["wall"]) > SLOW_S for x in done):
                continue  # too slow (or failing) to repeat
            res = _run_one(variant, way, args.windows, args.timeout)
            runs[(variant, way)].append(res)
            status = res.get("error") or (
                f"{_median(res['wall']):6.2f} steps/s wall, {_median(res['cpu']):6.2f} per CPU-s,"
                f" compile {res['compile_s']:.1f} s"
            )
            print(
                f"  round {r + 1} {variant:15s} {way:4s} load {res['load']:4.1f}: {status}",
                flush=True,
            )
    summary = {}
    for (variant, way), results in runs.items():
        ok = [x for x in results if "error" not in x]
        summary[f"{variant}/{way}"] = {
            "wall": _median([v for x in ok for v in x["wall"]]),
            "wall_best": max([v for x in ok for v in x["wall"]], default=float("nan")),
            "cpu": _median([v for x in ok for v in x["cpu"]]),
            "compile_s": _median([x["compile_s"] for x in ok]),
            "errors": [x["error"] for x in results if "error" in x],
            "load": _median([x["load"] for x in results]),
            "loss": [x.get("loss") for x in ok][:1],
            "runs": len(ok),
            "faults": _median([x["faults_per_step"] for x in ok if "faults_per_step" in x]),
            "sys_ms": _median([x["sys_ms_per_step"] for x in ok if "sys_ms_per_step" in x]),
        }
    return {"uptime_before": uptime_before, "uptime_after": _uptime(), "summary": summary}


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load average: {:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg())


def report(result: dict[str, Any]) -> str:
    s = result["summary"]
    ref = s.get("jax/loop", {}).get("wall", float("nan"))
    ref_cpu = s.get("jax/loop", {}).get("cpu", float("nan"))
    torch = s.get("torch/loop", {}).get("wall", float("nan"))
    torch_cpu = s.get("torch/loop", {}).get("cpu", float("nan"))
    lines = [
        f"before: {result['uptime_before']}",
        f"after:  {result['uptime_after']}",
        "",
        "| variant | way | steps/s (wall, median) | best window | steps per CPU-s | vs jax loop (wall / CPU) "
        "| vs torch (wall / CPU) | compile (s) | runs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, v in s.items():
        variant, way = key.split("/")
        if v["errors"] and v["wall"] != v["wall"]:
            lines.append(f"| {variant} | {way} | {'; '.join(v['errors'])} | | | | | | |")
            continue
        lines.append(
            f"| {variant} | {way} | {v['wall']:.2f} | {v['wall_best']:.2f} | {v['cpu']:.2f} "
            f"| {v['wall'] / ref:.2f}x / {v['cpu'] / ref_cpu:.2f}x "
            f"| {v['wall'] / torch:.2f}x / {v['cpu'] / torch_cpu:.2f}x | {v['compile_s']:.1f} | {v['runs']} |"
        )
    lines.append("")
    lines.append(
        "scan over 16 steps versus a loop of 16 jitted steps (wall steps/s ratio, compile times):"
    )
    for variant in VARIANTS:
        loop, scan = s.get(f"{variant}/loop"), s.get(f"{variant}/scan")
        if loop and scan:
            lines.append(
                f"  {variant:15s} scan/loop = {scan['wall'] / loop['wall']:.2f}x wall, "
                f"{scan['cpu'] / loop['cpu']:.2f}x per CPU-s; compile {scan['compile_s']:.1f} s (scan) "
                f"vs {loop['compile_s']:.1f} s (one step); page faults per step {scan['faults']:.0f} "
                f"vs {loop['faults']:.0f}, kernel time {scan['sys_ms']:.1f} vs {loop['sys_ms']:.1f} ms/step"
                + (f"; errors {scan['errors']}" if scan["errors"] else "")
            )
    return "\n".join(lines)


# --------------------------------------------------------------------------
# --ops: one layer at a time, native versus rewrite (the "auto" table)


def _time(f: Any, *args: Any, reps: int) -> tuple[float, float]:
    import jax

    jax.block_until_ready(f(*args))
    wall, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(f(*args))
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return 1e3 * _median(wall), 1e3 * _median(cpu)


def _conv_cases(impl: str) -> list[tuple[str, Any, tuple[int, ...]]]:
    import funcnet as fn

    return [
        (
            "Conv 2d 26x26x32->64 k3 (this CNN)",
            fn.Conv(64, (3, 3), padding="VALID", impl=impl),
            (64, 26, 26, 32),
        ),
        (
            "Conv 2d 28x28x1->32 k3 (this CNN)",
            fn.Conv(32, (3, 3), padding="VALID", impl=impl),
            (64, 28, 28, 1),
        ),
        ("Conv 2d 32x32x64->64 k3 same", fn.Conv(64, (3, 3), impl=impl), (32, 32, 32, 64)),
        ("Conv 2d 16x16x128->128 k3 same", fn.Conv(128, (3, 3), impl=impl), (32, 16, 16, 128)),
        ("Conv 2d 32x32x32->64 k3 s2", fn.Conv(64, (3, 3), 2, impl=impl), (32, 32, 32, 32)),
        ("Conv 2d 28x28x16->32 k5", fn.Conv(32, (5, 5), impl=impl), (32, 28, 28, 16)),
        ("Conv 2d 16x16x64->128 k1", fn.Conv(128, (1, 1), impl=impl), (32, 16, 16, 64)),
        ("Conv 1d L128x64->64 k5", fn.Conv(64, 5, impl=impl), (32, 128, 64)),
        ("Conv 3d 12^3x16->32 k3", fn.Conv(32, (3, 3, 3), impl=impl), (8, 12, 12, 12, 16)),
        (
            "Conv 2d depthwise 32x32x64 k3",
            fn.Conv(64, (3, 3), feature_group_count=64, impl=impl),
            (32, 32, 32, 64),
        ),
        (
            "Conv 2d groups=4 32x32x64->64 k3",
            fn.Conv(64, (3, 3), feature_group_count=4, impl=impl),
            (32, 32, 32, 64),
        ),
        (
            "ConvTranspose 2d 16x16x64->32 k3 s2",
            fn.ConvTranspose(32, (3, 3), 2, impl=impl),
            (32, 16, 16, 64),
        ),
    ]


def _pool_cases(impl: str) -> list[tuple[str, Any, tuple[int, ...]]]:
    import funcnet as fn

    return [
        ("MaxPool 2x2 valid 24x24x64 (this CNN)", fn.MaxPool((2, 2), impl=impl), (64, 24, 24, 64)),
        ("MaxPool 3x3/2 same 32x32x64", fn.MaxPool((3, 3), 2, "SAME", impl=impl), (32, 32, 32, 64)),
        ("MaxPool 3x3/1 same 16x16x64", fn.MaxPool((3, 3), 1, "SAME", impl=impl), (32, 16, 16, 64)),
        ("AvgPool 2x2 valid 24x24x64", fn.AvgPool((2, 2), impl=impl), (64, 24, 24, 64)),
        ("MaxPool 1d 2 256x64", fn.MaxPool(2, impl=impl), (32, 256, 64)),
        ("MaxPool 3d 2x2x2 16^3x32", fn.MaxPool((2, 2, 2), impl=impl), (8, 16, 16, 16, 32)),
        ("MaxPool 7x7/1 same 16x16x32", fn.MaxPool((7, 7), 1, "SAME", impl=impl), (16, 16, 16, 32)),
    ]


SCAN_LENGTH = 2


def _layer_step(layer: Any, state: Any) -> tuple[Any, Any]:
    """A gradient step of one layer, and the same as a ``lax.scan`` body."""
    import jax
    import jax.numpy as jnp

    def loss(p, x):
        return jnp.sum(layer.apply(p, state, x)[0] ** 2)

    grad = jax.grad(loss, argnums=(0, 1))

    def body(carry, _):
        p, x = carry
        gp, gx = grad(p, x)
        p = jax.tree.map(lambda a, g: a - 1e-4 * g, p, gp)
        return (p, x - 1e-4 * gx), None

    return grad, body


def main_ops(reps: int) -> str:
    import jax

    lines = [
        f"{_uptime()}",
        "",
        "ms per training step of one layer (loss = sum(y ** 2); gradient wrt params and input),",
        "median wall / CPU ms; 'scan' runs the step inside lax.scan (per iteration).",
        "",
        "| layer | native | rewrite | rewrite speed-up (wall / CPU) | native in scan | rewrite in scan |",
        "|---|---|---|---|---|---|",
    ]
    # The same layers built with each implementation (the layers' impl argument).
    layers = {impl: _conv_cases(impl) + _pool_cases(impl) for impl in ("native", "im2col")}
    for (name, native, shape), (_, rewrite, _) in zip(layers["native"], layers["im2col"]):
        x = jax.random.normal(jax.random.key(1), shape)
        _, params, state = native.init(jax.random.key(0), shape)

        times = {}
        for impl, layer in (("native", native), ("im2col", rewrite)):
            grad, body = _layer_step(layer, state)
            step = jax.jit(grad)
            scan = jax.jit(lambda p, x, body=body: jax.lax.scan(body, (p, x), None, SCAN_LENGTH)[0])
            times[impl] = _time(step, params, x, reps=reps)
            sw, sc = _time(scan, params, x, reps=1)
            times[impl + "-scan"] = (sw / SCAN_LENGTH, sc / SCAN_LENGTH)
        cell = {key: f"{w:.1f} / {c_:.1f}" for key, (w, c_) in times.items()}
        speedup = (
            f"{times['native'][0] / times['im2col'][0]:.2f}x / "
            f"{times['native'][1] / times['im2col'][1]:.2f}x"
        )
        lines.append(
            f"| {name} | {cell['native']} | {cell['im2col']} | {speedup} "
            f"| {cell['native-scan']} | {cell['im2col-scan']} |"
        )
        print(lines[-1], flush=True)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--windows", type=int, default=4, help="timed 16-step windows per run")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per subprocess")
    parser.add_argument("--quick", action="store_true", help="1 round, 1 window")
    parser.add_argument("--ops", action="store_true", help="per-layer native vs rewrite table")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        variant, way, windows = args.worker
        if variant == "torch":
            result = _worker_torch(int(windows))
        else:
            result = _worker_jax(variant, way, int(windows))
        print(json.dumps(result))
        return
    if args.ops:
        print(main_ops(reps=3 if args.quick else 7))
        return
    if args.quick:
        args.rounds, args.windows = 1, 1
    result = main_training(args)
    text = report(result)
    print()
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
