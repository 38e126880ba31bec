"""Runs a test module as a script in a fresh process with forced CPU devices, reading its JSON.

JAX fixes its device count when it creates its CPU backend, so a test that
needs 4 devices runs its measurement in a subprocess with
``--xla_force_host_platform_device_count``; the script prints one JSON line
last, which the caller's assertions read.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_script_on_devices(script: str, count: int = 4) -> dict:
    """``python script`` on ``count`` forced CPU devices; its last stdout line as JSON."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={count}"
    ).strip()
    env.update(JAX_PLATFORMS="cpu", FUNCNET_COMPILATION_CACHE="0", PYTHONPATH=str(ROOT))
    command = [sys.executable, str(pathlib.Path(script).resolve())]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
