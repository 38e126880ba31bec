"""The command line: ``python -m bench [--quick] [--only ...] [--frameworks ...] [--device D] ...``.

Runs the chosen workloads on the chosen frameworks (hand-written JAX is
always included: it is the reference of every ratio), on the chosen device
(``--device cpu|gpu|tpu``, default JAX's default backend), writes
``<out>/latest.json`` and ``<out>/latest.md`` and prints the Markdown table.
Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import platform
import sys
import time
from collections.abc import Sequence
from typing import Any

DEFAULT_OUT = pathlib.Path(__file__).resolve().parent / "results"
ROOT = pathlib.Path(__file__).resolve().parent.parent
DEVICES = ("cpu", "gpu", "tpu")


def select_device(requested: str | None) -> Any:
    """The JAX device to run on, made JAX's default; SystemExit with the reason if absent."""
    import jax

    name = requested or jax.default_backend()
    try:
        device = jax.devices(name)[0]
    except RuntimeError as error:
        present = sorted({d.platform for d in jax.devices()})
        raise SystemExit(
            f"bench: --device {name}: JAX finds no {name} device on this machine "
            f"(it has: {', '.join(present)}; JAX says: {error}). Install the JAX build for "
            f"the accelerator (e.g. pip install -U 'jax[cuda12]' or 'jax[tpu]'), or run "
            f"with --device {present[0]}."
        ) from None
    jax.config.update("jax_default_device", device)
    return device


def _commit() -> dict[str, Any]:
    """The git commit measured, and whether funcnet/ or bench/ differ from it."""
    import subprocess

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    changed = git("status", "--porcelain", "--", "funcnet", "bench")
    return {"commit": git("rev-parse", "--short", "HEAD") or None, "dirty": bool(changed)}


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from bench.frameworks import FRAMEWORKS
    from bench.workloads import WORKLOADS

    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="funcnet's benchmarks against hand-written JAX and other frameworks.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes and few repeats: a smoke run"
    )
    parser.add_argument(
        "--only",
        metavar="WORKLOADS",
        help=f"comma-separated workloads to run (default all: {','.join(WORKLOADS)})",
    )
    parser.add_argument(
        "--frameworks",
        metavar="NAMES",
        help=f"comma-separated frameworks (default all installed: {','.join(FRAMEWORKS)}); "
        "jax, the reference, is always added",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        metavar="N",
        help="samples per figure, the median reported (default 5, or 1 with --quick)",
    )
    parser.add_argument(
        "--out",
        type=pathlib.Path,
        default=DEFAULT_OUT,
        metavar="DIR",
        help="where latest.json and latest.md go (default bench/results)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        metavar="SECONDS",
        help="a variant stops taking repeats after this long (default 90, or 20 with --quick)",
    )
    parser.add_argument(
        "--device",
        choices=DEVICES,
        help="where every framework runs (default: JAX's default backend); "
        "fails if JAX has no such device",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    names = [w.strip() for w in (args.only or "").split(",") if w.strip()] or list(WORKLOADS)
    unknown = [w for w in names if w not in WORKLOADS]
    if unknown:
        parser.error(
            f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}"
        )
    args.workloads = [w for w in WORKLOADS if w in names]
    return args


def _load() -> list[float] | None:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def _meta(
    args: argparse.Namespace, argv: Sequence[str], versions: dict[str, str], load: Any
) -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench", *argv]),
        **_commit(),
        "device": args.device_name,
        "quick": args.quick,
        "repeats": args.repeats,
        "budget_seconds": args.budget,
        "workloads": args.workloads,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_at_start": load,
        "versions": versions,
        "dtype": "float32",
        "notes": "medians over repeats; in-process JAX persistent compilation cache disabled",
    }


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 5

    # Before any package loads OpenMP (see bench/frameworks/torch_fw.py).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import jax

    # Compile figures must be cold: a persistent cache (if the environment
    # configures one) would serve repeated compiles from disk.
    jax.config.update("jax_enable_compilation_cache", False)
    device = select_device(args.device)
    args.device = device.platform
    args.device_name = f"{device.platform}: {device.device_kind}"

    from bench import frameworks as registry
    from bench.report import markdown
    from bench.runner import Context
    from bench.workloads import WORKLOADS

    started, load_at_start = time.perf_counter(), _load()
    names = registry.resolve(args.frameworks)
    loaded: dict[str, Any] = {}
    versions: dict[str, str] = {}
    for name in names:
        module = registry.load(name)
        configure = getattr(module, "configure", None)
        if configure is not None:  # a framework that places its own work (PyTorch)
            module = configure(args.device) or module
        loaded[name] = module
        versions[name] = module if isinstance(module, str) else module.version()
        if not args.quiet:
            print(f"bench: {name}: {versions[name]}", file=sys.stderr, flush=True)

    if args.budget is None:
        args.budget = 20.0 if args.quick else 90.0
    ctx = Context(
        quick=args.quick,
        repeats=args.repeats,
        frameworks=loaded,
        verbose=not args.quiet,
        budget=args.budget,
    )
    durations: dict[str, float] = {}
    for workload in args.workloads:
        ctx.log(f"bench: {workload}")
        start = time.perf_counter()
        WORKLOADS[workload].run(ctx)
        durations[workload] = round(time.perf_counter() - start, 1)
        ctx.log(f"bench: {workload} took {durations[workload]} s")
    ctx.results.compute_ratios({w: WORKLOADS[w].reference for w in args.workloads})

    meta = _meta(args, argv, versions, load_at_start)
    meta["seconds"] = round(time.perf_counter() - started, 1)
    meta["seconds_per_workload"] = durations
    meta["load_average_at_end"] = _load()
    described = [(w, WORKLOADS[w].TITLE, WORKLOADS[w].REFERENCE_TEXT) for w in args.workloads]
    table = markdown(ctx.results, described, names)
    header = (
        f"Benchmark run {meta['date']}: `{meta['command']}` at commit {meta['commit']}"
        f"{' (with local changes)' if meta['dirty'] else ''}, on {meta['device']}, "
        f"{meta['cpus']} CPUs, "
        f"load average (1, 5, 15 min) {meta['load_average_at_start']} at start and "
        f"{meta['load_average_at_end']} at the end, {meta['seconds']} s.\n"
        "Each cell: median (ratio to the workload's reference, hand-written JAX unless the "
        "table says otherwise). "
        "Versions: " + "; ".join(f"{k}: {v}" for k, v in versions.items()) + ".\n\n"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(ctx.results.to_json(meta) + "\n", encoding="utf-8")
    (args.out / "latest.md").write_text(header + table, encoding="utf-8")
    print(header + table)
    return 0
