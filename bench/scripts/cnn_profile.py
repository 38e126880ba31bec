"""One training step of the bench's CNN: funcnet, hand-written JAX and PyTorch, interleaved.

Run ``python bench/scripts/cnn_profile.py`` from the repository root with
funcnet installed (``pip install -e '.[bench]'``; about 3 minutes on 2 quiet cores;
``--rounds 2`` for a shorter run, ``--hlo FILE`` to also write funcnet's
optimized step HLO, ``--profile`` for XLA's per-op time of funcnet's step,
``--conv-variants`` for the second convolution alone written several ways).

The model is the ``cnn`` workload's (bench/workloads/cnn.py): conv3x3(32)
relu, conv3x3(64) relu (VALID), maxpool 2x2, flatten, dense(128) relu,
dense(10) on 28x28x1 random-normal images, batch 64, softmax cross-entropy,
SGD 0.01 momentum 0.9. Variants, each timed over windows of ``--steps``
steps, one window of every variant per round, the order rotated each round:

- ``funcnet fit``: ``fn.fit`` (one compiled ``lax.scan`` over the epoch's
  batches, data on the device), one epoch of ``--steps`` batches per call,
  continuing from its trained state as the bench does;
- ``funcnet step``: ``fn.make_train_step`` (jitted, donating) in a Python loop;
- ``jax step``: hand-written ``lax.conv_general_dilated`` +
  ``lax.reduce_window``, a jitted donating step in a Python loop;
- ``torch``: PyTorch eager (NCHW), ``OMP_WAIT_POLICY=PASSIVE`` as the bench sets.

Reported per variant (medians over windows): steps/s by wall clock, CPU
seconds per step (``time.process_time``: all threads of this process, so
2.0 s per wall second means both cores busy), and the fraction of the
machine's peak float32 FLOP rate the step achieves, by wall clock and by
CPU time (the step's FLOPs per CPU-second over the matmul's FLOPs per
CPU-second: the figure least disturbed by other processes), the kernel
(system) CPU time and the minor page faults per step (``getrusage``). The step's FLOPs are
counted analytically: forward and backward (weight and input gradient) of
both convolutions and both dense layers, a multiply-add as 2 FLOPs; the
first convolution's input gradient is not needed (its input is the data)
and is not counted; elementwise work, pooling and the update are left out
(under 1%). The peak is the best rate of a 2048x2048x2048 float32 matrix
product, ``numpy`` (its BLAS) and jitted ``jnp.dot`` (XLA), measured in the
same run, all threads; it is what a good GEMM gets on this machine, not the
datasheet's figure.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP (bench/README.md)

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

import funcnet as fn

BATCH, SIZE, C1, C2, HIDDEN, CLASSES = 64, 28, 32, 64, 128, 10
LR, MOMENTUM = 0.01, 0.9


def step_flops() -> int:
    """Forward + backward FLOPs of one training step (a multiply-add is 2)."""
    o1, o2 = SIZE - 2, SIZE - 4
    conv1 = 2 * BATCH * o1 * o1 * C1 * 9 * 1  # forward; backward: weight gradient only
    conv2 = 2 * BATCH * o2 * o2 * C2 * 9 * C1  # forward; backward: weight and input gradients
    flat = (o2 // 2) ** 2 * C2
    dense1 = 2 * BATCH * flat * HIDDEN
    dense2 = 2 * BATCH * HIDDEN * CLASSES
    return 2 * conv1 + 3 * conv2 + 3 * dense1 + 3 * dense2


def peak_flops(reps: int = 5) -> dict[str, tuple[float, float]]:
    """Best ``(FLOP per wall second, FLOP per CPU second)`` of a 2048^3 float32 product.

    For numpy (its BLAS) and XLA (jitted ``jnp.dot``). The CPU-second rate
    (``time.process_time``, all threads) is the one that other processes on
    the machine disturb least.
    """
    n = 2048
    rng = np.random.default_rng(0)
    a, b = (rng.normal(size=(n, n)).astype(np.float32) for _ in range(2))
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    dot = jax.jit(jnp.dot)
    dot(ja, jb).block_until_ready()
    flops = 2 * n**3
    runs = {"numpy": lambda: a @ b, "xla": lambda: dot(ja, jb).block_until_ready()}
    out = {}
    for name, run in runs.items():
        wall, cpu = float("inf"), float("inf")
        for _ in range(reps):
            t0, c0 = time.perf_counter(), time.process_time()
            run()
            wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
        out[name] = (flops / wall, flops / cpu)
    return out


def data(steps: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(steps * BATCH, SIZE, SIZE, 1)).astype(np.float32)
    y = rng.integers(0, CLASSES, size=(steps * BATCH,)).astype(np.int32)
    return x, y


def funcnet_net(impl: str = "auto") -> fn.Layer:
    """The bench's funcnet model (bench/frameworks/funcnet_fw.py builds the same)."""
    return fn.serial(
        fn.Conv(C1, (3, 3), padding="VALID", impl=impl),
        fn.Relu(),
        fn.Conv(C2, (3, 3), padding="VALID", impl=impl),
        fn.Relu(),
        fn.MaxPool((2, 2), impl=impl),
        fn.Flatten(),
        fn.Dense(HIDDEN, activation="relu"),
        fn.Dense(CLASSES),
    )


def loss_fn(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return fn.sparse_categorical_crossentropy(logits, labels, from_logits=True)


class FuncnetFit:
    """``fn.fit``: one epoch of all the batches per call, continuing from the trained state."""

    def __init__(self, x: np.ndarray, y: np.ndarray, impl: str):
        self.x, self.y, self.steps = x, y, len(x) // BATCH
        self.net, self.opt = funcnet_net(impl), optax.sgd(LR, momentum=MOMENTUM)
        self.result: Any = None
        self.window()  # compile

    def window(self) -> int:
        self.result = fn.fit(
            self.net,
            self.x,
            self.y,
            loss=loss_fn,
            optimizer=self.opt,
            epochs=1,
            batch_size=BATCH,
            key=0,
            verbose=0,
            train_state=None if self.result is None else self.result.train_state,
        )
        jax.block_until_ready(self.result.params)
        return self.steps


class FuncnetStep:
    """``fn.make_train_step`` called from a Python loop over batches on the device."""

    def __init__(self, x: np.ndarray, y: np.ndarray, impl: str):
        self.net, opt = funcnet_net(impl), optax.sgd(LR, momentum=MOMENTUM)
        self.ts = fn.init_train_state(self.net, opt, (None, SIZE, SIZE, 1), key=0)
        self.step = fn.make_train_step(self.net, loss_fn, opt)
        self.batches = [
            jax.device_put((x[i : i + BATCH], y[i : i + BATCH])) for i in range(0, len(x), BATCH)
        ]
        self.window()

    def window(self) -> int:
        for batch in self.batches:
            self.ts, _ = self.step(self.ts, batch)
        jax.block_until_ready(self.ts)
        return len(self.batches)


def jax_model() -> tuple[dict[str, jax.Array], Callable]:
    """Hand-written JAX: lax.conv_general_dilated and lax.reduce_window, NHWC/HWIO."""
    glorot = jax.nn.initializers.glorot_uniform()
    k = jax.random.split(jax.random.key(0), 4)
    flat = ((SIZE - 4) // 2) ** 2 * C2
    params = {
        "c1": glorot(k[0], (3, 3, 1, C1)),
        "b1": jnp.zeros(C1),
        "c2": glorot(k[1], (3, 3, C1, C2)),
        "b2": jnp.zeros(C2),
        "d1": glorot(k[2], (flat, HIDDEN)),
        "e1": jnp.zeros(HIDDEN),
        "d2": glorot(k[3], (HIDDEN, CLASSES)),
        "e2": jnp.zeros(CLASSES),
    }
    dims = ("NHWC", "HWIO", "NHWC")

    def apply(p: dict[str, jax.Array], x: jax.Array) -> jax.Array:
        x = lax.conv_general_dilated(x, p["c1"], (1, 1), "VALID", dimension_numbers=dims)
        x = jax.nn.relu(x + p["b1"])
        x = lax.conv_general_dilated(x, p["c2"], (1, 1), "VALID", dimension_numbers=dims)
        x = jax.nn.relu(x + p["b2"])
        x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        x = jax.nn.relu(x.reshape(x.shape[0], -1) @ p["d1"] + p["e1"])
        return x @ p["d2"] + p["e2"]

    return params, apply


class JaxStep:
    """The hand-written step, jitted with params and optimizer state donated."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.params, apply = jax_model()
        opt = optax.sgd(LR, momentum=MOMENTUM)
        self.opt_state = opt.init(self.params)

        def step(params, opt_state, x, y):
            loss, grads = jax.value_and_grad(lambda p: loss_fn(apply(p, x), y))(params)
            updates, opt_state = opt.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        self.step = jax.jit(step, donate_argnums=(0, 1))
        self.batches = [
            jax.device_put((x[i : i + BATCH], y[i : i + BATCH])) for i in range(0, len(x), BATCH)
        ]
        self.window()

    def window(self) -> int:
        for xb, yb in self.batches:
            self.params, self.opt_state, _ = self.step(self.params, self.opt_state, xb, yb)
        jax.block_until_ready(self.params)
        return len(self.batches)


class TorchEager:
    """PyTorch eager, the same model in NCHW (as bench/frameworks/torch_fw.py)."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        import torch
        from torch import nn

        torch.manual_seed(0)
        flat = ((SIZE - 4) // 2) ** 2 * C2
        self.model = nn.Sequential(
            nn.Conv2d(1, C1, 3),
            nn.ReLU(),
            nn.Conv2d(C1, C2, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(flat, HIDDEN),
            nn.ReLU(),
            nn.Linear(HIDDEN, CLASSES),
        )
        self.opt = torch.optim.SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM)
        self.loss = nn.CrossEntropyLoss()
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        yt = torch.from_numpy(y.astype(np.int64))
        self.batches = [(xt[i : i + BATCH], yt[i : i + BATCH]) for i in range(0, len(x), BATCH)]
        self.window()

    def window(self) -> int:
        for xb, yb in self.batches:
            self.opt.zero_grad(set_to_none=True)
            self.loss(self.model(xb), yb).backward()
            self.opt.step()
        return len(self.batches)


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load average: {:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg())


def thread_settings() -> str:
    """What decides each library's intra-op threads here."""
    parts = [f"os.cpu_count()={os.cpu_count()}", f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"]
    if torch_available():
        import torch

        parts.append(
            f"torch {torch.__version__}: {torch.get_num_threads()} threads, "
            f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}"
        )
    return "; ".join(parts)


def optimized_hlo(impl: str) -> str:
    """funcnet's make_train_step program after XLA's optimization passes."""
    net, opt = funcnet_net(impl), optax.sgd(LR, momentum=MOMENTUM)
    ts = fn.init_train_state(net, opt, (None, SIZE, SIZE, 1), key=0)
    step = fn.make_train_step(net, loss_fn, opt)
    x, y = data(1)
    return step.lower(ts, (x, y)).compile().as_text()


def xla_op_profile(impl: str, steps: int, top: int) -> str:
    """XLA's per-op device time of ``steps`` make_train_step calls (jax.profiler trace)."""
    import glob
    import gzip
    import json
    import tempfile
    from collections import defaultdict

    x, y = data(steps)
    stepper = FuncnetStep(x, y, impl)
    with tempfile.TemporaryDirectory() as logdir:
        jax.profiler.start_trace(logdir)
        stepper.window()
        jax.profiler.stop_trace()
        files = glob.glob(os.path.join(logdir, "**", "*.trace.json.gz"), recursive=True)
        if not files:
            return "(no trace written: is the profiler plugin installed?)"
        with gzip.open(files[0]) as f:
            events = json.load(f)["traceEvents"]
    total: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("ph") == "X" and "dur" in e and "hlo_op" in e.get("args", {}):
            total[e["name"]] += e["dur"] / 1e3 / steps
    if not total:
        # Older traces name ops without args; keep whatever thunk events there are.
        for e in events:
            if e.get("ph") == "X" and "dur" in e and e.get("pid") != 0:
                total[e["name"]] += e["dur"] / 1e3 / steps
    rows = sorted(total.items(), key=lambda kv: -kv[1])[:top]
    lines = ["| op | ms per step |", "|---|---|"]
    lines += [f"| {name} | {ms:.2f} |" for name, ms in rows]
    return "\n".join(lines)


def conv_variants(rounds: int) -> str:
    """CPU ms per training step of conv2 alone, written several ways (bench/README.md's table).

    The step: gradients wrt ``x``, ``w`` and ``b`` of
    ``sum(relu(conv(relu(x + b), w)) ** 2)`` over 64x26x26x32 -> 64, VALID
    3x3, as conv2 sees it in the CNN (its input the previous ReLU).
    """
    n, size, cin, features = BATCH, SIZE - 2, C1, C2
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(n, size, size, cin)), jnp.float32)
    w = jnp.asarray(0.1 * rng.normal(size=(3, 3, cin, features)), jnp.float32)
    b = jnp.zeros(cin)
    out = size - 2

    def taps(x: jax.Array) -> list[jax.Array]:
        return [x[:, i : i + out, j : j + out, :] for i in range(3) for j in range(3)]

    def product(p: jax.Array, w: jax.Array) -> jax.Array:
        return lax.dot_general(p, w, (((p.ndim - 1,), (0,)), ((), ())))

    def im2col(x: jax.Array, w: jax.Array) -> jax.Array:
        return product(jnp.concatenate(taps(x), -1), w.reshape(-1, features))

    def stack(x: jax.Array, w: jax.Array) -> jax.Array:
        p = jnp.stack(taps(x), -2)
        return lax.dot_general(p, w.reshape(9, cin, features), (((3, 4), (0, 1)), ((), ())))

    def tap_sum(x: jax.Array, w: jax.Array) -> jax.Array:
        return sum(product(s, w[t // 3, t % 3]) for t, s in enumerate(taps(x)))  # type: ignore[return-value]

    def rows(x: jax.Array, w: jax.Array) -> jax.Array:
        p = jnp.concatenate([x[:, :, j : j + out, :] for j in range(3)], -1)
        return sum(product(p[:, i : i + out], w[i].reshape(-1, features)) for i in range(3))  # type: ignore[return-value]

    def native(x: jax.Array, w: jax.Array) -> jax.Array:
        dims = ("NHWC", "HWIO", "NHWC")
        return lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=dims)

    def in_parts(parts: int) -> Callable:
        def f(x: jax.Array, w: jax.Array) -> jax.Array:
            k = x.shape[0] // parts
            return jnp.concatenate([im2col(x[i : i + k], w) for i in range(0, x.shape[0], k)])

        return f

    variants = {
        "im2col": im2col,
        "stack": stack,
        "tap sum": tap_sum,
        "rows": rows,
        "native": native,
        "8 batch parts": in_parts(8),
        "16 batch parts": in_parts(16),
    }
    steps = {}
    for name, f in variants.items():

        def loss(x: jax.Array, w: jax.Array, b: jax.Array, f: Callable = f) -> jax.Array:
            return jnp.sum(jax.nn.relu(f(jax.nn.relu(x + b), w)) ** 2)

        steps[name] = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
        jax.block_until_ready(steps[name](x, w, b))
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            c0 = time.process_time()
            for _ in range(3):
                jax.block_until_ready(step(x, w, b))
            cpu[name].append((time.process_time() - c0) / 3)
    lines = ["| conv2 written as | CPU ms per step (median) |", "|---|---|"]
    lines += [f"| {name} | {statistics.median(v) * 1e3:.0f} |" for name, v in cpu.items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=16, help="steps per timed window")
    parser.add_argument(
        "--variants",
        default="funcnet fit,funcnet step,jax step,torch",
        help="comma-separated subset of: funcnet fit, funcnet step, jax step, torch",
    )
    parser.add_argument("--impl", default="auto", help="funcnet's Conv/MaxPool impl=")
    parser.add_argument("--hlo", help="write funcnet's optimized step HLO to this file")
    parser.add_argument("--profile", action="store_true", help="XLA per-op time of funcnet's step")
    parser.add_argument(
        "--conv-variants", action="store_true", help="only: conv2 alone, written several ways"
    )
    args = parser.parse_args()
    if args.conv_variants:
        print(uptime())
        print(conv_variants(args.rounds))
        print(uptime())
        return

    print(uptime())
    print(thread_settings())
    flops = step_flops()
    peaks = peak_flops()
    peak = max(w for w, _ in peaks.values())
    peak_cpu = max(c for _, c in peaks.values())
    print(
        f"step: {flops / 1e9:.2f} GFLOP; peak (2048^3 float32 matmul, best of 5): "
        + ", ".join(
            f"{k} {w / 1e9:.0f} GFLOP per wall s, {c / 1e9:.0f} per CPU s"
            for k, (w, c) in peaks.items()
        )
    )
    if args.hlo:
        with open(args.hlo, "w") as f:
            f.write(optimized_hlo(args.impl))
        print(f"wrote {args.hlo}")
    if args.profile:
        print(xla_op_profile(args.impl, args.steps, top=25))

    x, y = data(args.steps)
    makers: dict[str, Callable[[], Any]] = {
        "funcnet fit": lambda: FuncnetFit(x, y, args.impl),
        "funcnet step": lambda: FuncnetStep(x, y, args.impl),
        "jax step": lambda: JaxStep(x, y),
        "torch": lambda: TorchEager(x, y),
    }
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    if "torch" in names and not torch_available():
        print("torch is not installed: pip install -e '.[bench]'")
        names.remove("torch")
    runners = {}
    for name in names:
        t0 = time.perf_counter()
        runners[name] = makers[name]()
        print(f"{name}: built and compiled in {time.perf_counter() - t0:.1f} s")
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    sys_s: dict[str, list[float]] = {n: [] for n in names}
    faults: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            u0 = resource.getrusage(resource.RUSAGE_SELF)
            t0, c0 = time.perf_counter(), time.process_time()
            steps = runners[name].window()
            wall[name].append((time.perf_counter() - t0) / steps)
            cpu[name].append((time.process_time() - c0) / steps)
            u1 = resource.getrusage(resource.RUSAGE_SELF)
            # Kernel time and fresh pages: what allocating large temporaries per call costs.
            sys_s[name].append((u1.ru_stime - u0.ru_stime) / steps)
            faults[name].append((u1.ru_minflt - u0.ru_minflt) / steps)
    print(uptime())
    print()
    print(
        "| variant | steps/s (wall) | best window | CPU per step | CPU / wall "
        "| fraction of peak (wall) | fraction of peak (CPU) | kernel CPU per step "
        "| page faults per step |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in names:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        print(
            f"| {name} | {1 / w:.1f} | {1 / min(wall[name]):.1f} | {c * 1e3:.0f} ms "
            f"| {c / w:.2f} | {flops / w / peak:.0%} | {flops / c / peak_cpu:.0%} "
            f"| {statistics.median(sys_s[name]) * 1e3:.0f} ms "
            f"| {statistics.median(faults[name]):,.0f} |"
        )


if __name__ == "__main__":
    main()
