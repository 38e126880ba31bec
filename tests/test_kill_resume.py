"""Resuming is exact, in a fresh process, and survives SIGKILL at any moment.

The runs are ``tests/kill_resume_worker.py`` (shuffling, dropout, batch
norm, Adam), started as subprocesses that never share memory with the test.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

import funcnet as fn
from tests.kill_resume_worker import NET, run

REPO = Path(__file__).resolve().parents[1]


def worker(directory: Path, *args: str) -> tuple[list[str], dict[str, str]]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    return [sys.executable, "-m", "tests.kill_resume_worker", str(directory), *args], env


def finish(directory: Path, *args: str) -> None:
    command, env = worker(directory, *args)
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.rstrip().endswith("done")


def like() -> fn.TrainState:
    return fn.init_train_state(NET, optax.adam(0.02), (None, 3), key=0)


def assert_bitwise_equal(a: fn.TrainState, b: fn.TrainState) -> None:
    def plain(leaf):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        return np.asarray(leaf)

    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(plain(u), plain(v), strict=True)


@pytest.mark.slow  # a whole process or a long run: CI's -m slow step
def test_five_epochs_then_five_more_in_a_fresh_process_equal_ten_in_one_run(tmp_path):
    reference = run(10)
    half = run(5, checkpoint=tmp_path / "run")
    assert len(half.history["loss"]) == 5
    finish(tmp_path / "run", "--epochs", "10", "--out", str(tmp_path / "final.safetensors"))
    resumed = fn.load(tmp_path / "final.safetensors", like=like())
    assert_bitwise_equal(resumed, reference.train_state)
    assert int(resumed.step) == 10 * 5  # 36 examples in batches of 8: 5 steps per epoch
    history = fn.checkpoint_info(tmp_path / "final.safetensors").history
    assert history == reference.history


def newest(directory: Path) -> Path | None:
    found = sorted(directory.glob("ckpt-*.safetensors"))
    return found[-1] if found else None


def kill_and_resume(tmp_path: Path, kills: int, epochs: int, seed: int) -> None:
    reference_dir = tmp_path / "reference"
    reference = run(epochs, checkpoint=fn.CheckpointManager(reference_dir, max_to_keep=None))
    rng = random.Random(seed)
    directory = tmp_path / "run"
    done = mid_save = 0
    for i in range(kills):
        command, env = worker(
            directory, "--epochs", str(epochs), "--slow-fsync", "0.05", "--epoch-sleep", "0.02"
        )
        process = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, text=True)
        watchdog = threading.Timer(60, process.kill)
        watchdog.start()
        try:
            moment = ("anywhere", "saving", "starting")[i % 3]
            if moment == "starting":
                time.sleep(rng.uniform(0.0, 2.0))
            else:
                for _ in range(rng.randint(1, max(1, epochs - done - 2))):
                    if not process.stdout.readline().startswith("epoch"):
                        break
                # "epoch n" is printed, then 0.02 s of sleep, then the save, whose
                # fsync before the rename takes 0.05 s.
                time.sleep(rng.uniform(0.03, 0.07) if moment == "saving" else rng.uniform(0, 0.15))
            process.send_signal(signal.SIGKILL)
        finally:
            process.kill()
            process.wait()
            process.stdout.close()
            watchdog.cancel()
        mid_save += bool(list(directory.glob("*.tmp")))
        latest = newest(directory)
        if latest is None:
            continue
        # The newest file on disk loads, and holds exactly the uninterrupted run's state.
        state = fn.load(latest, like=like())
        epoch = fn.checkpoint_info(latest).metadata["epoch"]
        assert epoch >= done
        done = epoch
        expected = reference_dir / latest.name
        assert_bitwise_equal(state, fn.load(expected, like=like()))
        assert fn.checkpoint_info(latest).history == fn.checkpoint_info(expected).history
    print(f"{kills} kills, {mid_save} in the middle of a save, the last at epoch {done}")
    finish(directory, "--epochs", str(epochs), "--out", str(tmp_path / "final.safetensors"))
    assert_bitwise_equal(
        fn.load(tmp_path / "final.safetensors", like=like()), reference.train_state
    )
    assert fn.checkpoint_info(tmp_path / "final.safetensors").history == reference.history
    assert not list(directory.glob("*.tmp"))  # the last run's manager cleaned up


@pytest.mark.slow  # a whole process or a long run: CI's -m slow step
def test_sigkill_at_random_moments_never_loses_the_run(tmp_path):
    kill_and_resume(tmp_path, kills=3, epochs=8, seed=0)


@pytest.mark.slow
def test_many_sigkills_never_lose_the_run(tmp_path):
    kill_and_resume(tmp_path, kills=15, epochs=24, seed=1)
