"""Memory per device of in-memory training and validation data with a mesh: split, or replicated.

``fit(x, y, mesh=..., validation_data=...)`` splits the examples, and the
validation examples, over the mesh's data axis (``Layout.place_data``) and
gathers each batch with one reduce-scatter (``Layout.take_rows``). This
script measures, on 1 and 4 devices (forced CPU devices, each count in its
own process because ``XLA_FLAGS`` must be set before JAX starts):

- the bytes of the training data and of the validation data each device
  holds during ``fit`` (the shards of the live arrays with the data's rows,
  read from a callback);
- the time of an epoch, its validation included;

for both layouts: split (what ``fit`` does) and the former one, every device
holding the whole data set (patched in here for comparison only). Run from the repository's root::

    python bench/data_memory.py            # 65,536 (+16,392 validation) examples x 64 features
    python bench/data_memory.py --quick    # a smoke run

The numbers are in ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def measure(n: int, n_val: int, features: int, rounds: int) -> list[dict]:
    """In a process whose device count is already set: both layouts, alternated.

    Each round trains 3 epochs with each layout (``fit(train_state=...)``
    continuing its own run); an epoch's time runs from ``on_epoch_begin`` to
    ``on_epoch_end``, and the figure is the fastest epoch that is not the
    first of its ``fit`` call (other jobs on a shared machine only ever add
    time, and alternating the layouts exposes both to the same load).
    """
    import gc
    import time

    import jax
    import numpy as np
    import optax

    import funcnet as fn
    from funcnet._src.parallel import sharding

    split = sharding.Layout.place_data, sharding.Layout.take_rows

    def place_replicated(self, data):  # the layout before data was split: a copy per device
        return sharding.put(data, jax.tree.map(lambda _: self.replicated, data))

    def take_replicated(self, data, rows):
        return jax.tree.map(lambda a: a[rows], data)

    layouts = {"split": split, "replicated": (place_replicated, take_replicated)}
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, features)).astype(np.float32)
    y = x[:, :1] * 0.5
    x_val = rng.normal(size=(n_val, features)).astype(np.float32)
    y_val = x_val[:, :1] * 0.5
    devices = jax.devices()

    def padded(rows: int) -> int:
        return -(-rows // len(devices)) * len(devices)

    def held_per_device(rows: tuple[int, ...]) -> dict[int, int]:
        held: dict[int, int] = {}
        for array in jax.live_arrays():
            if array.ndim and array.shape[0] in rows:
                for shard in array.addressable_shards:
                    held[shard.device.id] = held.get(shard.device.id, 0) + shard.data.nbytes
        return held

    class Timer(fn.callbacks.Callback):
        def __init__(self):
            self.held: dict[int, int] = {}
            self.held_val: dict[int, int] = {}
            self.times: list[float] = []

        def on_train_begin(self):
            self.first = True

        def on_epoch_begin(self, epoch, logs):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs):
            if not self.first:  # a fit call's first epoch also looks its programs up
                self.times.append(time.perf_counter() - self.start)
            self.first = False
            if self.held:
                return
            gc.collect()
            self.held = held_per_device((n, padded(n)))
            self.held_val = held_per_device((n_val, padded(n_val)))

    # One model object per layout: funcnet keeps compiled programs per model.
    runs = {name: [fn.serial(fn.Dense(64, "relu"), fn.Dense(1)), None, Timer()] for name in layouts}
    for _ in range(rounds):
        for name, run in runs.items():
            sharding.Layout.place_data, sharding.Layout.take_rows = layouts[name]
            net, state, timer = run
            result = fn.fit(net, x, y, loss="mse", optimizer=optax.adam(1e-3), epochs=3,
                            batch_size=256, mesh=devices, train_state=state, callbacks=[timer],
                            validation_data=(x_val, y_val), verbose=0)  # fmt: skip
            run[1] = result.train_state
    return [
        {
            "devices": len(devices),
            "layout": name,
            "data_bytes": x.nbytes + y.nbytes,
            "bytes_per_device": max(timer.held.values()),
            "val_bytes": x_val.nbytes + y_val.nbytes,
            "val_bytes_per_device": max(timer.held_val.values()),
            "epoch_ms": float(np.min(timer.times) * 1e3),
        }
        for name, (_, _, timer) in runs.items()
    ]


def run(devices: int, n: int, n_val: int, features: int, rounds: int) -> list[dict]:
    env = dict(os.environ)
    flag = f"--xla_force_host_platform_device_count={devices}"
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + flag).strip()
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    args = json.dumps([n, n_val, features, rounds])
    done = subprocess.run(
        [sys.executable, __file__, "--child", args], env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        print(json.dumps(measure(*json.loads(options.child))))
        return
    # Validation rows: a quarter of the data, plus 8 so no array size is shared with training's.
    n, features, rounds = (1024, 8, 2) if options.quick else (65536, 64, 10)
    n_val = n // 4 + 8
    rows = [row for d in (1, 4) for row in run(d, n, n_val, features, rounds)]
    print(
        f"{n} examples (+{n_val} validation) x {features} features (+1 target), float32, "
        f"batch 256, {rounds} rounds\n"
    )
    print(
        "| devices | data layout | data set (MB) | data per device (MB) | validation set (MB) "
        "| validation per device (MB) | fastest epoch with validation (ms) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['devices']} | {row['layout']} | {row['data_bytes'] / 1e6:.2f} | "
            f"{row['bytes_per_device'] / 1e6:.2f} | {row['val_bytes'] / 1e6:.2f} | "
            f"{row['val_bytes_per_device'] / 1e6:.2f} | {row['epoch_ms']:.0f} |"
        )


if __name__ == "__main__":
    main()
