"""fit's validation data on a mesh is split over the devices, as the training data is.

The cases need 4 devices, so this file runs itself in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (set before JAX
starts), as ``tests/test_sharded_data.py`` does; the subprocess prints what
it measured as JSON and the tests below check it.
The subprocess compiles everything again, so its cases are marked slow; by
default ``tests/parallel_cases.py`` checks that 4 devices train like one and
that each holds a quarter of the training data.
"""

import json

import numpy as np
import pytest

from tests._forced_devices import run_script_on_devices

# 22 validation rows: 4 shards of 6 (the last padded with 2 zero rows); with
# batches of 8, two batches split over the devices and a last one of 6 gathered.
N_VAL, BATCH = 22, 8
PER_EXAMPLE = (3 + 1) * 4  # x and y, float32


def held_per_device(rows):
    """Bytes of the live arrays with ``rows`` leading rows, per device id."""
    import gc

    import jax

    gc.collect()
    held = {}
    for array in jax.live_arrays():
        if array.ndim and array.shape[0] in rows:
            for shard in array.addressable_shards:
                held[shard.device.id] = held.get(shard.device.id, 0) + shard.data.nbytes
    return held


def cases():
    """Runs on 4 devices; returns the measurements as a dict."""
    import jax
    import optax

    import funcnet as fn

    assert jax.device_count() == 4, jax.devices()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 3)).astype(np.float32)
    y = (np.tanh(x @ np.array([[1.0], [-2.0], [0.5]], np.float32)) + 0.3).astype(np.float32)
    x_val = rng.normal(size=(N_VAL, 3)).astype(np.float32)
    y_val = np.tanh(x_val[:, :1]).astype(np.float32)
    net = fn.serial(fn.Dense(8, "tanh"), fn.Dense(1))
    out = {}

    def run(devices):
        name = f"bytes_{len(devices)}"
        measure = lambda epoch, logs: out.setdefault(name, held_per_device((N_VAL, 24)))  # noqa: E731
        return fn.fit(
            net, x, y, loss="mse", optimizer=optax.adam(0.02), epochs=2, batch_size=BATCH,
            metrics="mae", key=1, verbose=0, mesh=devices, validation_data=(x_val, y_val),
            callbacks=[measure],
        )  # fmt: skip

    one, four = run(jax.devices()[:1]), run(jax.devices())
    out["history_1"], out["history_4"] = one.history, four.history
    # The one-device evaluation of the final params, by evaluate (no mesh).
    args = dict(loss="mse", metrics="mae", batch_size=BATCH)
    out["evaluate_4"] = fn.evaluate(net, four.params, four.state, x_val, y_val, **args)
    # evaluate(mesh=...) splits the data too: params on the mesh (four) stay
    # there, params on one device (one) are replicated onto it.
    out["split_evaluate"] = [
        fn.evaluate(net, run.params, run.state, x_val, y_val, mesh=jax.devices(), **args)
        for run in (four, one)
    ]
    out["evaluate_1"] = fn.evaluate(net, one.params, one.state, x_val, y_val, **args)
    return out


@pytest.fixture(scope="module")
def measured():
    return run_script_on_devices(__file__, count=4)


@pytest.mark.slow
def test_each_device_holds_a_quarter_of_the_validation_data(measured):
    assert measured["bytes_1"] == {"0": N_VAL * PER_EXAMPLE}
    # Before: device 0 held all 22 rows and every evaluation copied them to the others.
    assert measured["bytes_4"] == {str(i): 6 * PER_EXAMPLE for i in range(4)}


@pytest.mark.slow
def test_validation_on_four_devices_equals_one_device_and_evaluate(measured):
    one, four = measured["history_1"], measured["history_4"]
    for name in ("val_loss", "val_mae", "loss"):
        np.testing.assert_allclose(four[name], one[name], rtol=1e-5)
    last = measured["evaluate_4"]
    np.testing.assert_allclose(four["val_loss"][-1], last["loss"], rtol=1e-5)
    np.testing.assert_allclose(four["val_mae"][-1], last["mae"], rtol=1e-5)


@pytest.mark.slow
def test_evaluate_on_a_mesh_equals_evaluate_on_one_device(measured):
    for split, alone in zip(
        measured["split_evaluate"], [measured["evaluate_4"], measured["evaluate_1"]]
    ):
        assert split.keys() == alone.keys() == {"loss", "mae"}
        for name in split:
            np.testing.assert_allclose(split[name], alone[name], rtol=1e-5)


def test_evaluate_names_a_bad_mesh():
    import jax

    import funcnet as fn

    net = fn.Dense(1)
    _, params, state = net.init(jax.random.key(0), (None, 3))
    x, y = np.zeros((8, 3), np.float32), np.zeros((8, 1), np.float32)
    with pytest.raises(
        TypeError,
        match=r"^evaluate: mesh must be a jax.sharding.Mesh or a list of devices; devices must "
        r"be jax devices \(from jax.devices\(\)\), got 0\.$",
    ):
        fn.evaluate(net, params, state, x, y, loss="mse", mesh=[0, 1])


if __name__ == "__main__":
    print(json.dumps(cases()))
