"""Meshes, layouts and their errors; the 4-device cases run in a subprocess.

The equality of 4-device and 1-device training lives in
``tests/parallel_cases.py`` (with the smoke test of examples/data_parallel.py):
it needs ``XLA_FLAGS`` set before JAX starts, so
:func:`test_four_devices_train_like_one` runs it in a fresh interpreter.
"""

import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest
from jax.sharding import AbstractMesh, Mesh, PartitionSpec

import funcnet as fn
from funcnet._src.parallel.sharding import layout

ROOT = pathlib.Path(__file__).resolve().parent.parent
X = np.random.default_rng(0).normal(size=(12, 3)).astype(np.float32)
Y = X[:, :1] * 2 - 1
ONE = jax.devices()[:1]


def run_four_device_cases(marks):
    """Runs tests/parallel_cases.py (the tests selected by ``-m marks``) on 4 CPU devices."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["FUNCNET_COMPILATION_CACHE"] = "0"
    # One process: no xdist workers (the suite's addopts), each compiling again.
    options = ["-q", "-p", "no:cacheprovider", "-o", "addopts=", "-m", marks]
    command = [sys.executable, "-m", "pytest", "tests/parallel_cases.py", *options]
    try:
        done = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240
        )
    except subprocess.TimeoutExpired as error:  # subprocess.run has killed it
        pytest.fail(f"the 4-device cases took over 240 s:\n{error.stdout}")
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout, done.stdout[-2000:]


def test_four_devices_train_like_one():
    run_four_device_cases("not slow")


@pytest.mark.slow
def test_four_devices_in_further_configurations():
    # fsdp, batch norm, two-axis meshes, streams, trimming, checkpoints, the example.
    run_four_device_cases("slow")


def test_make_mesh_from_devices():
    mesh = fn.make_mesh(ONE)
    assert mesh.axis_names == ("data",) and mesh.devices.tolist() == ONE
    assert fn.make_mesh(ONE, "batch").axis_names == ("batch",)
    assert fn.make_mesh().devices.size == jax.device_count()


@pytest.mark.parametrize(
    "devices, error, message",
    [
        ([], ValueError, r"make_mesh: the list of devices is empty; pass e.g. jax.devices\(\)\."),
        (
            "cpu",
            TypeError,
            r"make_mesh: devices must be a list of devices \(e.g. jax.devices\(\)\), got str\.",
        ),
        (
            [0, 1],
            TypeError,
            r"make_mesh: devices must be jax devices \(from jax.devices\(\)\), got 0\.",
        ),
        (ONE * 2, ValueError, r"make_mesh: a device appears twice in the list; give each once\."),
    ],
)
def test_make_mesh_rejects_bad_device_lists(devices, error, message):
    with pytest.raises(error, match=message):
        fn.make_mesh(devices)


def test_make_mesh_rejects_an_empty_axis_name():
    with pytest.raises(
        ValueError, match=r"make_mesh: data_axis must be a non-empty string, got ''\."
    ):
        fn.make_mesh(ONE, "")


def test_a_mesh_without_the_data_axis_is_an_error_naming_its_axes():
    mesh = Mesh(np.array(ONE), ("batch",))
    with pytest.raises(
        ValueError,
        match=r"fit: the mesh has no axis named 'data' \(its axes: 'batch'\)\. Pass data_axis= one of them",
    ):
        fn.fit(fn.Dense(1), X, Y, loss="mse", optimizer=optax.sgd(0.1), mesh=mesh, verbose=0)
    with pytest.raises(ValueError, match=r"make_train_step: the mesh has no axis named 'rows'"):
        fn.make_train_step(fn.Dense(1), "mse", optax.sgd(0.1), mesh=mesh, data_axis="rows")


def test_bad_mesh_and_sharding_arguments_are_errors():
    with pytest.raises(
        TypeError,
        match=r"fit: mesh must be a jax.sharding.Mesh or a list of devices; devices must be jax devices",
    ):
        layout(["gpu:0"])
    with pytest.raises(
        ValueError, match=r"fit: param_sharding must be None \(replicated\), 'fsdp', or a rule"
    ):
        layout(ONE, param_sharding="zero3")
    with pytest.raises(
        ValueError, match=r"fit: param_sharding='fsdp' needs a mesh; pass mesh=jax.devices\(\)\."
    ):
        layout(None, param_sharding="fsdp")
    with pytest.raises(
        ValueError, match=r"fit: fsdp\(axis='model'\) names an axis the mesh does not have"
    ):
        layout(ONE, param_sharding=fn.fsdp(axis="model"))
    with pytest.raises(ValueError, match=r"fit: data_axis must be a non-empty string, got 3\."):
        layout(ONE, data_axis=3)
    with pytest.raises(ValueError, match=r"fsdp: min_size must be a positive integer, got 0\."):
        fn.fsdp(min_size=0)


def test_fsdp_shards_the_largest_divisible_axis_of_large_leaves():
    rule, mesh = fn.fsdp(min_size=64), AbstractMesh((4,), ("data",))

    def spec(shape):
        return rule((), np.zeros(shape), mesh)

    assert spec((6, 64)) == PartitionSpec(None, "data")  # the largest axis that divides
    assert spec((64, 64)) == PartitionSpec("data")  # ties: the leading axis
    assert spec((16, 3)) == PartitionSpec()  # 48 elements: below min_size
    assert spec((5, 7, 9)) == PartitionSpec()  # no axis divides by 4
    assert spec((3, 8, 4)) == PartitionSpec(None, "data")
    assert rule((), np.zeros((64, 8)), AbstractMesh((1,), ("data",))) == PartitionSpec()
    other = fn.fsdp(min_size=1, axis="model")
    two_axes = AbstractMesh((2, 3), ("data", "model"))
    assert other((), np.zeros((4, 6)), two_axes) == PartitionSpec(None, "model")


def test_a_custom_rule_gets_each_leafs_path():
    seen = []

    def rule(path, leaf, mesh, data_axis):
        seen.append(jax.tree_util.keystr(path))
        return None

    ts = fn.init_train_state(fn.Dense(2), optax.sgd(0.1), (None, 3), key=0)
    placed = fn.place_train_state(ts, ONE, param_sharding=rule)
    assert ".params['w']" in seen and ".key" not in seen  # PRNG keys stay replicated
    assert placed.params["w"].sharding.spec == PartitionSpec()


def test_one_device_mesh_trains_like_no_mesh():
    args = {"loss": "mse", "optimizer": optax.sgd(0.1), "epochs": 2, "batch_size": 5, "verbose": 0}
    plain, meshed = fn.fit(fn.Dense(1), X, Y, **args), fn.fit(fn.Dense(1), X, Y, mesh=ONE, **args)
    jax.tree.map(np.testing.assert_allclose, plain.params, meshed.params)
    assert plain.history.keys() == meshed.history.keys()
    for name, values in plain.history.items():
        np.testing.assert_allclose(values, meshed.history[name], rtol=1e-6)


def test_shard_batch_and_place_like_on_one_device():
    x = fn.shard_batch({"a": X}, ONE)["a"]
    assert x.sharding.spec == PartitionSpec("data") and np.array_equal(np.asarray(x), X)
    mesh = fn.make_mesh(ONE)
    placed = fn.place_like({"w": X}, {"w": x})
    assert placed["w"].sharding == x.sharding
    with pytest.raises(
        ValueError, match=r"place_like: the values and the shardings have different tree structures"
    ):
        fn.place_like({"w": X, "b": X}, {"w": x})
    assert fn.gather_for_save({"w": placed["w"]})["w"].tolist() == X.tolist()
    assert mesh.shape == {"data": 1}
