"""In-memory data split over the devices of a mesh: less memory per device, same training.

The cases need 4 devices, so this file runs itself in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (set before JAX
starts, as ``tests/test_parallel.py`` does); the subprocess prints what it
measured as JSON and the tests below check it. One subprocess for all of
them: compiling dominates.
The subprocess compiles everything again, so its cases are marked slow; by
default ``tests/parallel_cases.py`` checks that 4 devices train like one and
that each holds a quarter of the training data.
"""

import json

import numpy as np
import pytest

from tests._forced_devices import run_script_on_devices

N, BATCH, EPOCHS = 46, 8, 2  # 46 rows: 4 shards of 12, the last padded with 2 zero rows


def data_bytes_per_device(n_rows):
    """Bytes of the live arrays of ``n_rows`` rows (the engine's x and y), per device."""
    import gc

    import jax

    gc.collect()  # arrays of earlier runs, if a reference cycle still holds them
    held = {}
    for array in jax.live_arrays():
        if array.ndim and array.shape[0] == n_rows:
            for shard in array.addressable_shards:
                held[shard.device.id] = held.get(shard.device.id, 0) + shard.data.nbytes
    return held


def cases():
    """Runs on 4 devices; returns the measurements as a dict."""
    import jax
    import jax.numpy as jnp
    import optax

    import funcnet as fn
    from funcnet._src.parallel.sharding import layout

    assert jax.device_count() == 4, jax.devices()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 3)).astype(np.float32)
    y = (np.tanh(x @ np.array([[1.0], [-2.0], [0.5]], np.float32)) + 0.3).astype(np.float32)
    net = fn.serial(fn.Dense(8, "tanh"), fn.Dense(1))
    args = {"loss": "mse", "optimizer": optax.adam(0.02), "epochs": EPOCHS, "batch_size": BATCH}
    out = {}

    # Bytes each device holds for the data, seen from inside a run (a callback).
    def measure(name):
        return lambda epoch, logs: out.setdefault(name, data_bytes_per_device(48))

    # Shuffled epochs on 4 devices against 1 device, same seed: the same batches.
    one = fn.fit(net, x, y, key=1, verbose=0, callbacks=[measure("bytes_1")], **args)
    four = fn.fit(
        net, x, y, key=1, verbose=0, mesh=jax.devices(), callbacks=[measure("bytes_4")], **args
    )
    chunks = fn.fit(net, x, y, key=1, verbose=0, mesh=jax.devices(), steps_per_execution=4, **args)
    out["params_gap"] = max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
        for other in (four, chunks)
        for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(other.params))
    )
    out["losses"] = [one.history["loss"], four.history["loss"], chunks.history["loss"]]

    # Rows read from padded shards: exact, for floats, integers and booleans.
    placement = layout(jax.devices())
    data = {"f": x[:N], "i": np.arange(N, dtype=np.int32), "b": np.arange(N) % 3 == 0}
    placed = placement.place_data(data)
    out["shards"] = sorted({s.data.shape[0] for s in placed["f"].addressable_shards})
    rows = np.array([45, 0, 13, 44, 12, 11, 36, 1], np.int32)
    take = jax.jit(placement.take_rows)
    got = take(placed, jnp.asarray(rows))
    out["rows_exact"] = all(np.array_equal(np.asarray(got[k]), data[k][rows]) for k in data)
    out["batch_spec"] = str(got["f"].sharding.spec)
    hlo = take.lower(placed, jnp.asarray(rows)).compile().as_text()
    out["collectives"] = sorted(
        op
        for op in ("reduce-scatter", "all-gather", "all-reduce", "all-to-all")
        if f" {op}(" in hlo
    )
    return out


@pytest.fixture(scope="module")
def measured():
    return run_script_on_devices(__file__, count=4)


@pytest.mark.slow
def test_four_devices_train_like_one_with_shuffling(measured):
    assert measured["params_gap"] < 1e-5
    one, four, chunks = measured["losses"]
    np.testing.assert_allclose(four, one, rtol=1e-5)
    np.testing.assert_allclose(chunks, one, rtol=1e-5)


@pytest.mark.slow
def test_each_device_holds_a_quarter_of_the_data(measured):
    per_example = (3 + 1) * 4  # x and y, float32
    assert measured["bytes_1"] == {"0": 48 * per_example}
    assert measured["bytes_4"] == {str(i): 12 * per_example for i in range(4)}


@pytest.mark.slow
def test_rows_come_exactly_from_padded_shards_with_one_reduce_scatter(measured):
    assert measured["shards"] == [12]
    assert measured["rows_exact"]
    assert measured["batch_spec"] == "P('data',)"
    # Each device sends its rows of the batch; nothing gathers the dataset.
    assert measured["collectives"] == ["reduce-scatter"]


if __name__ == "__main__":
    print(json.dumps(cases()))
