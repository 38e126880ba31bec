"""Several processes joined by ``jax.distributed`` on 127.0.0.1, with gloo on CPU.

The worker is ``tests/distributed_worker.py``; each of its processes has two
CPU devices, so the mesh spans four devices over two processes. Every test
bounds its time and kills the processes it started, whatever happens.
"""

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import funcnet as fn
from funcnet.distributed import resolve_arguments
from tests.distributed_worker import BATCH, EPOCHS, flat, problem

ROOT = pathlib.Path(__file__).resolve().parent.parent
WORKER = ROOT / "tests" / "distributed_worker.py"
TOL = {"rtol": 1e-5, "atol": 1e-6}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Starts one worker per entry of ``counts`` (its num_processes); always cleans up."""

    def __init__(self, mode, out_dir, counts=(2, 2)):
        self.port = free_port()
        self.procs, self.logs = [], []
        for pid, count in enumerate(counts):
            env = dict(os.environ)
            env.update(
                FUNCNET_COORDINATOR=f"127.0.0.1:{self.port}",
                FUNCNET_NUM_PROCESSES=str(count),
                FUNCNET_PROCESS_ID=str(pid),
                XLA_FLAGS="--xla_force_host_platform_device_count=2",
                JAX_PLATFORMS="cpu",
                FUNCNET_COMPILATION_CACHE="0",
                PYTHONPATH=str(ROOT),
            )
            log = open(out_dir / f"log{pid}.txt", "w+")  # files, not pipes: no pipe can fill up
            self.logs.append(log)
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, str(WORKER), mode, str(out_dir)],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, killed as one below
                )
            )

    def wait(self, timeout: float) -> list[tuple[int, str]]:
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pytest.fail(f"the processes took over {timeout} s:\n" + self.output())
        return [(proc.returncode, self.read(i)) for i, proc in enumerate(self.procs)]

    def read(self, i: int) -> str:
        self.logs[i].flush()
        self.logs[i].seek(0)
        return self.logs[i].read()

    def output(self) -> str:
        return "\n".join(f"--- process {i}:\n{self.read(i)[-3000:]}" for i in range(len(self.logs)))

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for log in self.logs:
            log.close()


@pytest.mark.slow  # a whole process or a long run: CI's -m slow step
def test_two_processes_train_like_one(tmp_path):
    workers = Processes("train", tmp_path)
    try:
        # The single-process reference, computed while the workers run.
        net, opt, x, y, batches = problem()
        common = {"loss": "mse", "optimizer": opt, "epochs": EPOCHS, "key": 3, "verbose": 0}
        reference = fn.fit(net, x, y, batch_size=BATCH, **common)
        stream_reference = fn.fit(net, batches, **common)
        results = workers.wait(timeout=150)
        assert [code for code, _ in results] == [0, 0], workers.output()
    finally:
        workers.close()
    want, want_stream = flat("", reference.params), flat("", stream_reference.params)
    for pid in (0, 1):
        got = np.load(tmp_path / f"p{pid}.npz")
        assert got["devices"].tolist() == [2, 4]
        for name, value in want.items():
            for run in ("arrays", "fsdp", "restored", "resumed"):
                np.testing.assert_allclose(got[run + name], value, **TOL, err_msg=run + name)
            for run in ("stream", "loop"):
                np.testing.assert_allclose(got[run + name], want_stream[name], **TOL)
        for name, value in flat("", reference.state).items():  # BatchNorm over the global batch
            np.testing.assert_allclose(got["arrays_state" + name], value, **TOL)
        np.testing.assert_allclose(got["arrays_loss"], reference.history["loss"], **TOL)
        np.testing.assert_allclose(got["stream_loss"], stream_reference.history["loss"], **TOL)
        np.testing.assert_allclose(got["resumed_loss"], reference.history["loss"], **TOL)
        assert got["spans_processes"] and got["same_layout"] and got["resumed_layout"]
        assert got["keys_gathered"]
        assert str(got["disagreement"]) == (
            f"fit: the processes resumed from different checkpoints in "
            f"'{tmp_path / f'own_checkpoints_{pid}'}' (process 0 at epoch 1, process 1 at epoch 0). "
            "Process 0 writes the checkpoints, so every process must read the same directory: "
            "put it on a filesystem that every host shares."
        )
        assert str(got["direct"]) == (
            "save: the array at [0]['b'] (shape (8,)) is split across 2 processes, and this "
            "process holds only its own pieces. Call gather_for_save(tree) on every process and "
            "save its result from process 0 (CheckpointManager.save and fit(checkpoint=...) do both)."
        )
    # Only process 0 wrote: one file per epoch in the shared directory, none in process 1's own.
    assert sorted(p.name for p in (tmp_path / "fit_checkpoints").iterdir()) == [
        f"ckpt-{e:08d}.safetensors" for e in range(1, EPOCHS + 1)
    ]
    assert list((tmp_path / "own_checkpoints_1").iterdir()) == []
    (_, out0), (_, out1) = results
    assert "main process: 2 processes" in out0 and "main process" not in out1
    assert f"epoch {EPOCHS}/{EPOCHS}" in out0 and "epoch " not in out1  # progress: process 0


def test_processes_that_disagree_on_their_number_all_get_the_same_error(tmp_path):
    workers = Processes("join", tmp_path, counts=(2, 3))
    try:
        results = workers.wait(timeout=90)
    finally:
        workers.close()
    message = (
        f"initialize: the processes disagree on their number: the coordinator at "
        f"127.0.0.1:{workers.port} expects 2 processes but process 1 has num_processes=3. "
        "Start every process with the same num_processes (2 here) and ids 0..1."
    )
    for code, output in results:
        assert code == 3 and message in output, workers.output()


def test_arguments_come_before_the_environment(monkeypatch):
    monkeypatch.setenv("FUNCNET_COORDINATOR", "10.0.0.1:1234")
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.9:9")
    monkeypatch.setenv("FUNCNET_NUM_PROCESSES", "4")
    monkeypatch.setenv("JAX_PROCESS_ID", "3")
    monkeypatch.delenv("FUNCNET_PROCESS_ID", raising=False)
    assert resolve_arguments() == ("10.0.0.1:1234", 4, 3)
    assert resolve_arguments("[::1]:80", 2, 1) == ("[::1]:80", 2, 1)
    for name in ("FUNCNET_COORDINATOR", "JAX_COORDINATOR_ADDRESS", "FUNCNET_NUM_PROCESSES"):
        monkeypatch.delenv(name)
    monkeypatch.delenv("JAX_NUM_PROCESSES", raising=False)
    assert resolve_arguments() == (None, None, 3)  # the rest is left to JAX's detection


@pytest.mark.parametrize(
    "args, env, error, message",
    [
        (
            ("localhost", 2, 0),
            {},
            ValueError,
            r"initialize: coordinator_address must be 'host:port' with a port in 1\.\.65535, "
            r"got 'localhost'\. It is the address of process 0",
        ),
        (
            (None, 2, 0),
            {"FUNCNET_COORDINATOR": "h:99999"},
            ValueError,
            r"got 'h:99999' \(from FUNCNET_COORDINATOR\)",
        ),
        (
            ("h:1", None, 0),
            {"FUNCNET_NUM_PROCESSES": "two"},
            ValueError,
            r"initialize: num_processes must be an integer, got 'two' \(from the environment "
            r"variable FUNCNET_NUM_PROCESSES\)\.",
        ),
        (
            ("h:1", 2, 2),
            {},
            ValueError,
            r"initialize: process_id 2 is out of range for num_processes=2; ids run from 0 to 1",
        ),
        (
            ("h:1", 0, None),
            {},
            ValueError,
            r"initialize: num_processes must be at least 1, got 0\.",
        ),
        (("h:1", 2, -1), {}, ValueError, r"initialize: process_id must be >= 0, got -1\."),
        (
            ("h:1", True, 0),
            {},
            TypeError,
            r"initialize: num_processes must be an integer, got True\.",
        ),
        (
            (8080, 2, 0),
            {},
            TypeError,
            r"initialize: coordinator_address must be a string, got 8080\.",
        ),
    ],
)
def test_bad_arguments_are_reported_before_joining(monkeypatch, args, env, error, message):
    for name in ("FUNCNET_COORDINATOR", "FUNCNET_NUM_PROCESSES", "FUNCNET_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: pytest.fail("joined"))
    with pytest.raises(error, match=message):
        fn.distributed.initialize(*args)


@pytest.mark.parametrize(
    "raised, message",
    [
        (
            ValueError("coordinator_address should be defined."),
            r"initialize: could not find where to join: coordinator_address=None, "
            r"num_processes=None, process_id=None\. Pass them, or set FUNCNET_COORDINATOR",
        ),
        (
            RuntimeError("jax.distributed.initialize() must be called before any JAX calls"),
            r"initialize: JAX was already used in this process .* Call "
            r"funcnet.distributed.initialize\(\) first thing in the script",
        ),
    ],
)
def test_failures_to_join_are_explained(monkeypatch, raised, message):
    for name in ("FUNCNET_COORDINATOR", "JAX_COORDINATOR_ADDRESS", "FUNCNET_NUM_PROCESSES",
                 "JAX_NUM_PROCESSES", "FUNCNET_PROCESS_ID", "JAX_PROCESS_ID"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)

    def fail(*args, **kwargs):
        raise raised

    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(jax.distributed, "initialize", fail)
    with pytest.raises(RuntimeError, match=message):
        fn.distributed.initialize()


def test_one_process_is_the_main_one_and_feeds_every_row(capsys):
    assert fn.distributed.is_main_process()
    fn.distributed.print_main("only once", 1)
    assert capsys.readouterr().out == "only once 1\n"
    batch = (np.arange(8), np.arange(8) * 2)
    share = fn.distributed.process_share(batch, jax.devices()[:1])
    assert [a.tolist() for a in share] == [list(range(8)), list(range(0, 16, 2))]
    with pytest.raises(ValueError, match=r"process_share: the batch holds no arrays\."):
        fn.distributed.process_share((), jax.devices()[:1])


# SLURM: which GPUs each task drives. Simulated variables, no cluster started.
SLURM = {
    "SLURM_JOB_ID": "4242",
    "SLURM_STEP_NODELIST": "gpu[01-04]",
    "SLURM_NTASKS": "4",
    "SLURM_PROCID": "2",
    "SLURM_LOCALID": "0",
    "SLURM_NODEID": "2",
}
ONE_TASK_PER_NODE = {**SLURM, "SLURM_STEP_TASKS_PER_NODE": "1(x4)"}


def slurm_env(monkeypatch, **variables):
    for name in ("JAX_LOCAL_DEVICE_IDS", "CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES",
                 "HIP_VISIBLE_DEVICES", "SLURM_GPUS_ON_NODE", "SLURM_NTASKS_PER_NODE",
                 "SLURM_TASKS_PER_NODE", "SLURM_STEP_TASKS_PER_NODE"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize(
    "variables, expected",
    [
        # One process per node, 8 GPUs: it drives all 8 (JAX alone would give [0]).
        ({**ONE_TASK_PER_NODE, "CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"}, list(range(8))),
        ({**SLURM, "SLURM_TASKS_PER_NODE": "1(x4)", "SLURM_GPUS_ON_NODE": "4"}, [0, 1, 2, 3]),
        ({**SLURM, "SLURM_NTASKS_PER_NODE": "1", "ROCR_VISIBLE_DEVICES": "0,1"}, [0, 1]),
        # One task per GPU, each seeing all of them: JAX's own [SLURM_LOCALID].
        (
            {
                **SLURM,
                "SLURM_LOCALID": "3",
                "SLURM_STEP_TASKS_PER_NODE": "4(x4)",
                "CUDA_VISIBLE_DEVICES": "0,1,2,3",
            },
            [3],
        ),
        # --gpus-per-task=1: the task sees only its GPU, as device 0.
        (
            {
                **SLURM,
                "SLURM_LOCALID": "3",
                "SLURM_STEP_TASKS_PER_NODE": "4(x4)",
                "CUDA_VISIBLE_DEVICES": "3",
            },
            [0],
        ),
        # Two tasks on an 8-GPU node: a block of 4 each; uneven task counts per node.
        (
            {
                **SLURM,
                "SLURM_LOCALID": "1",
                "SLURM_NODEID": "1",
                "SLURM_STEP_TASKS_PER_NODE": "1,2(x3)",
                "SLURM_GPUS_ON_NODE": "8",
            },
            [4, 5, 6, 7],
        ),
        # Left to JAX: no GPU, counts that do not divide, an explicit override, no SLURM.
        ({**ONE_TASK_PER_NODE, "CUDA_VISIBLE_DEVICES": "NoDevFiles"}, None),
        ({**SLURM, "SLURM_STEP_TASKS_PER_NODE": "3(x4)", "SLURM_GPUS_ON_NODE": "8"}, None),
        ({**ONE_TASK_PER_NODE, "SLURM_GPUS_ON_NODE": "8", "JAX_LOCAL_DEVICE_IDS": "0"}, None),
        ({"CUDA_VISIBLE_DEVICES": "0,1", "SLURM_NTASKS_PER_NODE": "1"}, None),
    ],
)
def test_slurm_tasks_drive_the_gpus_they_see(monkeypatch, variables, expected):
    slurm_env(monkeypatch, **variables)
    assert fn.distributed.slurm_local_device_ids() == expected
    assert fn.distributed.slurm_local_device_ids(variables) == expected  # a mapping given


def test_initialize_under_slurm_passes_every_gpu_of_a_one_task_node(monkeypatch):
    """What reaches ``jax.distributed.initialize``, and what JAX's own detection does with it."""
    from jax._src import clusters  # JAX's cluster detection, to compare with

    slurm_env(monkeypatch, **ONE_TASK_PER_NODE, SLURM_GPUS_ON_NODE="4")
    for name in ("FUNCNET_COORDINATOR", "JAX_COORDINATOR_ADDRESS", "FUNCNET_NUM_PROCESSES",
                 "JAX_NUM_PROCESSES", "FUNCNET_PROCESS_ID", "JAX_PROCESS_ID"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    seen = {}

    class StopError(Exception):
        pass

    def capture(address, count, index, *, local_device_ids, initialization_timeout):
        seen.update(local_device_ids=local_device_ids)
        raise StopError

    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(jax.distributed, "initialize", capture)
    with pytest.raises(StopError):
        fn.distributed.initialize()
    assert seen == {"local_device_ids": [0, 1, 2, 3]}
    with pytest.raises(StopError):
        fn.distributed.initialize(local_device_ids=[1])  # an explicit choice wins
    assert seen == {"local_device_ids": [1]}

    detect = clusters.ClusterEnv.auto_detect_unset_distributed_params
    # JAX alone restricts the node's one process to GPU 0 (SLURM_LOCALID) ...
    assert detect(None, None, None, None, None, 10) == ("gpu01:61586", 4, 2, [0])
    # ... and keeps the ids funcnet fills in, detecting the rest.
    assert detect(None, None, None, [0, 1, 2, 3], None, 10) == ("gpu01:61586", 4, 2, [0, 1, 2, 3])
