"""Data parallelism on 4 devices: the same results as on one device.

These tests need 4 devices. Each 4-device run compiles everything again, so
only the equality of 4-device and 1-device training (with validation,
callbacks and the data split over the devices) and the errors that compile
nothing run by default; the further configurations are marked slow.
``tests/test_parallel.py`` runs this file in a subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (set
before JAX starts, as it must be); on a machine with 4 GPUs or TPU cores run
it directly: ``python -m pytest tests/parallel_cases.py``.
"""

import functools
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, PartitionSpec

import funcnet as fn

if jax.device_count() < 4:
    pytest.skip("needs 4 devices (see tests/test_parallel.py)", allow_module_level=True)

DEVICES = jax.devices()[:4]
RNG = np.random.default_rng(0)
X = RNG.normal(size=(48, 3)).astype(np.float32)
Y = (np.tanh(X @ np.array([[1.0], [-2.0], [0.5]], np.float32)) + 0.3).astype(np.float32)
NET = fn.serial(fn.Dense(8, "tanh"), fn.Dense(1))
WIDE = fn.serial(fn.Dense(16, "tanh"), fn.Dense(1))
OPT = optax.adam(0.02)
TOL = {"rtol": 1e-5, "atol": 1e-6}


def train(**kwargs):
    args = {"loss": "mse", "optimizer": OPT, "epochs": 2, "batch_size": 8}
    args.update(key=1, verbose=0, **kwargs)
    x, y = args.pop("x", X), args.pop("y", Y)
    return fn.fit(args.pop("net", NET), x, y, **args)


def assert_same(a, b):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, **TOL), a, b)


def specs(tree):
    return jax.tree.map(lambda a: a.sharding.spec, tree)


# Compiling dominates these tests: runs shared by several tests are made once.
@functools.cache
def one_device():
    return train()


def data_bytes_per_device():
    """Bytes per device id of the live arrays with the training data's 48 rows."""
    import gc

    gc.collect()  # arrays of earlier runs, if a reference cycle still holds them
    held = {}
    for array in jax.live_arrays():
        if array.ndim and array.shape[0] == len(X):
            for shard in array.addressable_shards:
                held[shard.device.id] = held.get(shard.device.id, 0) + shard.data.nbytes
    return held


@functools.cache
def four_devices():
    epochs, held = [], {}

    def callback(epoch, logs):
        epochs.append(epoch)
        held.setdefault("bytes", data_bytes_per_device())

    result = train(mesh=DEVICES, validation_data=(X[:10], Y[:10]), callbacks=[callback])
    return result, epochs, held["bytes"]


@functools.cache
def fsdp_run():
    return train(net=WIDE, mesh=DEVICES, param_sharding=fn.fsdp(min_size=40))


def test_fit_on_four_devices_equals_one_device():
    one, (four, _, _) = one_device(), four_devices()
    assert_same(one.params, four.params)
    np.testing.assert_allclose(one.history["loss"], four.history["loss"], **TOL)
    w = four.params[0]["w"]
    assert len(w.sharding.device_set) == 4 and w.sharding.is_fully_replicated


def test_validation_data_and_callbacks_work_on_a_mesh():
    four, epochs, _ = four_devices()
    assert epochs == [0, 1]
    val = fn.evaluate(NET, four.params, four.state, X[:10], Y[:10], loss="mse")
    np.testing.assert_allclose(four.history["val_loss"][-1], val["loss"], **TOL)


def test_each_device_holds_a_quarter_of_the_training_data():
    # (tests/test_sharded_data.py measures this against one device, and more, as a slow test.)
    *_, held = four_devices()
    assert held == {i: 12 * (3 + 1) * 4 for i in range(4)}  # 12 rows of x and y, float32


@pytest.mark.slow
def test_the_step_is_data_parallel_xla_all_reduces_the_gradients():
    ts = fn.init_train_state(NET, optax.sgd(0.1), (None, 3), key=0)
    step = fn.make_train_step(NET, "mse", optax.sgd(0.1), mesh=DEVICES, donate=False)
    compiled = step.lower(ts, (X[:8], Y[:8])).compile()
    assert "all-reduce" in compiled.as_text()
    batch_in = compiled.input_shardings[0][1]
    assert [s.shard_shape(a.shape) for s, a in zip(batch_in, (X[:8], Y[:8]))] == [(2, 3), (2, 1)]


@pytest.mark.slow
def test_make_train_step_on_four_devices_equals_one_device():
    plain = fn.make_train_step(NET, "mse", OPT)
    shard = fn.make_train_step(NET, "mse", OPT, mesh=DEVICES)
    a = fn.init_train_state(NET, OPT, (None, 3), key=0)
    b = fn.place_train_state(fn.init_train_state(NET, OPT, (None, 3), key=0), DEVICES)
    for i in range(0, 24, 8):
        a, loss_a = plain(a, (X[i : i + 8], Y[i : i + 8]))
        b, loss_b = shard(b, (X[i : i + 8], Y[i : i + 8]))
        np.testing.assert_allclose(loss_a, loss_b, **TOL)
    assert_same(a.params, b.params)
    assert b.params[0]["w"].sharding.is_fully_replicated


@pytest.mark.slow
def test_batchnorm_statistics_are_over_the_global_batch():
    # Each device's quarter of the batch has a different mean, so per-device
    # statistics would differ from the global ones.
    x = (X[:16] + np.repeat(np.arange(4.0, dtype=np.float32), 4)[:, None] * 3).astype(np.float32)
    net = fn.serial(fn.Dense(4), fn.BatchNorm(momentum=0.0), fn.Dense(1))
    opt = optax.sgd(0.1)
    one = fn.make_train_step(net, "mse", opt)(
        fn.init_train_state(net, opt, (None, 3), key=0), (x, Y[:16])
    )[0]
    four = fn.make_train_step(net, "mse", opt, mesh=DEVICES)(
        fn.init_train_state(net, opt, (None, 3), key=0), (x, Y[:16])
    )[0]
    assert_same(one.state, four.state)
    assert_same(one.params, four.params)
    _, params, _ = net.init(jax.random.split(jax.random.key(0))[0], (None, 3))
    hidden = x @ np.asarray(params[0]["w"]) + np.asarray(params[0]["b"])
    np.testing.assert_allclose(four.state[1]["mean"], hidden.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(four.state[1]["var"], hidden.var(0), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_a_two_axis_mesh_splits_the_batch_over_the_data_axis_only():
    mesh = Mesh(np.array(DEVICES).reshape(2, 2), ("data", "model"))
    assert_same(one_device().params, train(mesh=mesh).params)
    # data_axis picks the other axis: batches of 6 split in 2 over "model".
    ts = fn.init_train_state(NET, OPT, (None, 3), key=0)
    plain = fn.make_train_step(NET, "mse", OPT, donate=False)(ts, (X[:6], Y[:6]))
    step = fn.make_train_step(NET, "mse", OPT, mesh=mesh, data_axis="model", donate=False)
    assert_same(plain[0].params, step(ts, (X[:6], Y[:6]))[0].params)


@pytest.mark.slow
def test_fsdp_shards_large_leaves_and_their_optimizer_moments():
    sharded = fsdp_run()
    assert specs(sharded.params) == (
        {"b": PartitionSpec(), "w": PartitionSpec(None, "data")},
        {"b": PartitionSpec(), "w": PartitionSpec()},
    )
    mu = sharded.opt_state[0].mu
    assert specs(mu) == specs(sharded.params)
    assert_same(train(net=WIDE).params, sharded.params)
    ts = fn.init_train_state(WIDE, OPT, (None, 3), key=0)
    default = fn.place_train_state(ts, DEVICES, param_sharding="fsdp")  # min_size 65536
    assert all(s == PartitionSpec() for s in jax.tree.leaves(specs(default)))


@pytest.mark.slow
def test_a_stream_of_batches_is_split_over_the_devices():
    batches = [(X[i : i + 8], Y[i : i + 8]) for i in range(0, 48, 8)]
    one = fn.fit(NET, batches, loss="mse", optimizer=OPT, epochs=2, verbose=0)
    four = fn.fit(NET, batches, loss="mse", optimizer=OPT, epochs=2, verbose=0, mesh=DEVICES)
    assert_same(one.params, four.params)
    np.testing.assert_allclose(one.history["loss"], four.history["loss"], **TOL)


@pytest.mark.slow
def test_the_last_partial_batch_is_trimmed_to_a_multiple_of_the_devices():
    # 46 examples in batches of 8: five full batches and 6 left, trimmed to 4
    # (rows 40..43 without shuffling); on one device that is this stream:
    stream = [(X[i : i + 8], Y[i : i + 8]) for i in range(0, 40, 8)] + [(X[40:44], Y[40:44])]
    want = fn.fit(NET, stream, loss="mse", optimizer=OPT, epochs=2, verbose=0, key=1)
    got = train(mesh=DEVICES, x=X[:46], y=Y[:46], shuffle=False)
    assert_same(want.params, got.params)
    np.testing.assert_allclose(want.history["loss"], got.history["loss"], **TOL)
    # batch_size None: min(32, 30) rounded down to 28; the 2 left over sit out.
    assert train(mesh=DEVICES, batch_size=None, x=X[:30], y=Y[:30], epochs=1).train_state.step == 1


def test_a_batch_size_that_does_not_divide_says_how_to_fix_it():
    with pytest.raises(
        ValueError,
        match=r"batch_size 6 cannot be split evenly over the 4 devices of mesh axis 'data'\. The rule: .* Use batch_size=4 or batch_size=8\.",
    ):
        train(mesh=DEVICES, batch_size=6)
    with pytest.raises(ValueError, match=r"the dataset has 3 examples, fewer than the 4 devices"):
        train(mesh=DEVICES, batch_size=None, x=X[:3], y=Y[:3])


def test_the_train_step_rejects_a_batch_it_cannot_split():
    opt = optax.sgd(0.1)
    step = fn.make_train_step(NET, "mse", opt, mesh=DEVICES)
    ts = fn.init_train_state(NET, opt, (None, 3), key=0)
    with pytest.raises(
        ValueError,
        match=r"train step: a batch of 6 examples cannot be split evenly over the 4 devices of mesh axis 'data'.* Use a batch_size of 4 or 8\.",
    ):
        step(ts, (X[:6], Y[:6]))


@pytest.mark.slow
def test_a_stream_batch_that_does_not_divide_names_the_batch():
    batches = [(X[:8], Y[:8]), (X[8:14], Y[8:14])]
    with pytest.raises(
        ValueError,
        match=r"fit: batch 2 of epoch 1: a batch of 6 examples cannot be split evenly over the 4 devices of mesh axis 'data'\. Give batches whose size is a multiple of 4 \(4 or 8\)",
    ):
        fn.fit(NET, batches, loss="mse", optimizer=optax.sgd(0.1), verbose=0, mesh=DEVICES)
    with pytest.raises(ValueError, match=r"shard_batch: a batch of 6 examples cannot be split"):
        fn.shard_batch(X[:6], DEVICES)


@pytest.mark.slow
def test_sharded_checkpoints_gather_save_load_and_place_back(tmp_path):
    result = fsdp_run()
    host = fn.gather_for_save(result.train_state)
    assert isinstance(host.params[0]["w"], np.ndarray) and host.params[0]["w"].shape == (3, 16)
    path = fn.save(tmp_path / "run.safetensors", host)
    placed = fn.place_like(fn.load(path, like=host), result.train_state)
    assert specs(placed.params) == specs(result.params)
    assert_same(placed.params, result.params)
    assert_same(placed.opt_state, result.opt_state)
    assert int(placed.step) == 12 and jax.random.key_data(placed.key).shape == (2,)


@pytest.mark.slow
def test_fit_checkpoints_an_fsdp_run_and_resumes_it_in_its_layout(tmp_path):
    fsdp = {"net": WIDE, "mesh": DEVICES, "param_sharding": fn.fsdp(min_size=40)}
    train(**fsdp, epochs=1, checkpoint=tmp_path)
    resumed = train(**fsdp, checkpoint=tmp_path, resume=True)  # epochs=2: one more
    whole = fsdp_run()
    assert specs(resumed.params) == specs(whole.params)
    assert specs(resumed.opt_state) == specs(whole.opt_state)
    assert_same(resumed.params, whole.params)
    assert resumed.history["loss"] == pytest.approx(whole.history["loss"], rel=1e-5)


def test_process_share_is_the_whole_batch_with_one_process():
    rows = fn.distributed.process_rows(8, DEVICES)
    assert rows == slice(0, 8)
    with pytest.raises(ValueError, match=r"process_rows: a batch of 6 examples cannot be split"):
        fn.distributed.process_rows(6, DEVICES)


@pytest.mark.slow
def test_the_example_trains_on_four_devices():
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
    import data_parallel

    report = data_parallel.main(epochs=2, examples=256, batch_size=30)
    assert report["devices"] == 4 and report["loss"][1] < report["loss"][0]


def test_gather_for_save_keeps_numpy_and_keys():
    key = jax.device_put(jax.random.key(1), fn.make_mesh(DEVICES).devices[0])
    out = fn.gather_for_save({"k": key, "x": jnp.arange(3)})
    assert isinstance(out["x"], np.ndarray)
    assert jax.dtypes.issubdtype(out["k"].dtype, jax.dtypes.prng_key)
