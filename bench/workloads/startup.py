"""startup: the whole-process time of ``python examples/hello.py``, first and second run.

Each script runs twice against a fresh, empty persistent compilation cache
in a temporary folder: the first run compiles and fills the cache, the
second reads it. ``examples/hello.py`` turns the cache on itself
(``fn.enable_compilation_cache()``); the run only points it at the temporary folder
(``FUNCNET_COMPILATION_CACHE_DIR``). The hand-written JAX script
(``bench/scripts/hello_jax.py``) gets JAX's own cache switched on the way a
user would (``JAX_COMPILATION_CACHE_DIR``, and
``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0`` so that programs this small
are cached at all). The PyTorch eager script (``bench/scripts/hello_torch.py``)
has no cache: its two runs are alike. The clock covers the whole process:
interpreter start, imports, training 500 epochs, printing. One unmeasured
run of each script first warms the operating system's file cache (skipped
with ``--quick``).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench.runner import Context

NAME = "startup"
TITLE = "whole-process time of the hello example (python examples/hello.py), first and second run"
REFERENCE_TEXT = "the same script hand-written in JAX + optax (`jax script`)"

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPTS = {
    "funcnet": ROOT / "examples" / "hello.py",
    "jax": ROOT / "bench" / "scripts" / "hello_jax.py",
    "torch": ROOT / "bench" / "scripts" / "hello_torch.py",
}


def reference(record: Any) -> tuple[str, str]:
    return "jax", "script"


def _environment(framework: str, cache_dir: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("JAX_COMPILATION_CACHE", "JAX_PERSISTENT_CACHE", "FUNCNET_COMPILATION")
        )
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as in bench/frameworks/torch_fw.py
    if framework == "funcnet":
        env["FUNCNET_COMPILATION_CACHE_DIR"] = cache_dir
    elif framework == "jax":
        env["JAX_COMPILATION_CACHE_DIR"] = cache_dir
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    return env


def _run(script: pathlib.Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(script)], env=env, cwd=ROOT, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0 or "prediction for x = 10" not in done.stdout:
        raise RuntimeError(f"{script.name} failed: {done.stderr.strip()[-300:]}")
    return seconds


def run(ctx: Context) -> None:
    repeats = min(ctx.repeats, 3)
    for framework, script in SCRIPTS.items():
        if framework not in ctx.frameworks:
            continue
        if isinstance(ctx.frameworks[framework], str):
            ctx.results.skip(NAME, framework, str(ctx.frameworks[framework]))
            continue
        with ctx.guard(NAME, framework, "script"):
            if not ctx.quick:
                with tempfile.TemporaryDirectory() as cache:
                    _run(script, _environment(framework, cache))
            firsts, seconds, entries = [], [], 0
            for _ in range(repeats):
                with tempfile.TemporaryDirectory() as cache:
                    env = _environment(framework, cache)
                    firsts.append(_run(script, env))
                    entries = sum(len(files) for _, _, files in os.walk(cache))
                    seconds.append(_run(script, env))
            note = (
                "no compilation cache: both runs alike"
                if framework == "torch"
                else f"{entries} entries in the compilation cache after the first run"
            )
            ctx.record(NAME, framework, "script", "first run", firsts, "s", note=note)
            ctx.record(NAME, framework, "script", "second run", seconds, "s")
