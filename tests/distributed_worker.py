"""One process of the multi-process tests (tests/test_distributed.py starts two).

Run as ``python tests/distributed_worker.py MODE OUT_DIR`` with
FUNCNET_COORDINATOR, FUNCNET_NUM_PROCESSES and FUNCNET_PROCESS_ID set, and
``XLA_FLAGS=--xla_force_host_platform_device_count=2`` (two CPU devices per
process: four in the mesh). MODE "train" trains the problem below four ways
and saves every result (gathered to the host) to ``OUT_DIR/p<id>.npz``;
MODE "join" only joins, to test the checks of ``initialize``.

The problem is importable (``problem()``) so that the test computes the
single-process reference from the very same definition.
"""

from __future__ import annotations

import os
import sys

import numpy as np

EPOCHS, BATCH = 2, 8


def problem():
    """The model, optimizer, data and the global batches of the stream runs."""
    import optax

    import funcnet as fn

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    y = (np.tanh(x @ np.array([[1.0], [-2.0], [0.5]], np.float32)) + 0.1).astype(np.float32)
    net = fn.serial(fn.Dense(8, "tanh"), fn.BatchNorm(), fn.Dense(1))
    batches = [(x[i : i + BATCH], y[i : i + BATCH]) for i in range(0, len(x), BATCH)]
    return net, optax.adam(0.02), x, y, batches


def flat(prefix, tree):
    import jax

    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {prefix + jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def train(out_dir: str) -> None:
    import jax

    import funcnet as fn

    info = fn.distributed.initialize(timeout=60)
    net, opt, x, y, batches = problem()
    mesh = fn.make_mesh()
    fn.distributed.print_main(f"main process: {info.num_processes} processes")
    common = {"loss": "mse", "optimizer": opt, "epochs": EPOCHS, "key": 3, "verbose": 1}

    # In-memory arrays: every process holds the whole dataset.
    arrays = fn.fit(net, x, y, batch_size=BATCH, mesh=mesh, **common)

    # A stream: each process yields its share of every global batch.
    shares = [fn.distributed.process_share(b, mesh) for b in batches]
    stream = fn.fit(net, shares, **common, mesh=mesh)

    # A hand-written loop over the jitted step.
    ts = fn.place_train_state(fn.init_train_state(net, opt, (None, 3), key=3), mesh)
    step = fn.make_train_step(net, "mse", opt, mesh=mesh)
    for _ in range(EPOCHS):
        for share in shares:
            ts, _ = step(ts, fn.shard_batch(share, mesh))

    # FSDP: the first layer's kernel and its Adam moments are split across processes.
    sharded = fn.fit(
        net, x, y, batch_size=BATCH, mesh=mesh, param_sharding=fn.fsdp(min_size=8), **common
    )
    kernel = sharded.params[0]["w"]
    spans_processes = not kernel.is_fully_addressable

    # A checkpoint: gathered on every process, written by process 0, read by all.
    host = fn.gather_for_save(sharded.train_state)
    path = os.path.join(out_dir, "fsdp.safetensors")
    if fn.distributed.is_main_process():
        fn.save(path, host)
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices("checkpoint written")
    # load() gives host values of the global shapes; place_like() puts each
    # process's pieces on its devices, in the layout of the run's train state.
    shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), sharded.train_state)
    restored = fn.place_like(fn.load(path, like=shapes), sharded.train_state)
    same_layout = jax.tree.map(
        lambda a, b: a.sharding == b.sharding, restored.params, sharded.params
    )
    restored_host = fn.gather_for_save(restored.params)

    # fit's own checkpoints of the FSDP run: one epoch, then resumed to EPOCHS
    # from the directory (shared by both processes), must equal the whole run.
    fsdp = {"batch_size": BATCH, "mesh": mesh, "param_sharding": fn.fsdp(min_size=8)}
    shared = os.path.join(out_dir, "fit_checkpoints")
    fn.fit(net, x, y, **fsdp, **{**common, "epochs": 1}, checkpoint=shared)
    resumed = fn.fit(net, x, y, **fsdp, **common, checkpoint=shared, resume=True)
    resumed_layout = jax.tree.map(
        lambda a, b: a.sharding == b.sharding, resumed.params, sharded.params
    )
    # PRNG keys split across processes are gathered too (as integers, rewrapped).
    keys = jax.random.split(jax.random.key(7), 8)
    spread = fn.place_like(
        keys, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    )
    keys_gathered = bool(
        not spread.is_fully_addressable
        and np.array_equal(
            jax.random.key_data(fn.gather_for_save(spread)), jax.random.key_data(keys)
        )
    )
    try:  # save() alone cannot write an array split across processes
        fn.save(os.path.join(out_dir, f"direct{info.process_id}.safetensors"), sharded.params)
        direct = "no error"
    except ValueError as error:
        direct = str(error)
    # A directory on each process's own disk: process 1 never sees process 0's files.
    own = os.path.join(out_dir, f"own_checkpoints_{info.process_id}")
    fn.fit(net, x, y, **fsdp, **{**common, "epochs": 1}, checkpoint=own)
    try:
        fn.fit(net, x, y, **fsdp, **common, checkpoint=own, resume=True)
        disagreement = "no error"
    except ValueError as error:
        disagreement = str(error)

    out = {}
    out.update(flat("arrays", fn.gather_for_save(arrays.params)))
    out.update(flat("arrays_state", fn.gather_for_save(arrays.state)))
    out.update(flat("stream", fn.gather_for_save(stream.params)))
    out.update(flat("loop", fn.gather_for_save(ts.params)))
    out.update(flat("fsdp", host.params))
    out.update(flat("restored", restored_host))
    out.update(flat("resumed", fn.gather_for_save(resumed.params)))
    out["resumed_loss"] = np.array(resumed.history["loss"])
    out["resumed_layout"] = np.array(all(jax.tree.leaves(resumed_layout)))
    out["disagreement"] = np.array(disagreement)
    out["direct"] = np.array(direct)
    out["keys_gathered"] = np.array(keys_gathered)
    out["arrays_loss"] = np.array(arrays.history["loss"])
    out["stream_loss"] = np.array(stream.history["loss"])
    out["spans_processes"] = np.array(spans_processes)
    out["same_layout"] = np.array(all(jax.tree.leaves(same_layout)))
    out["devices"] = np.array([info.local_devices, info.global_devices])
    np.savez(os.path.join(out_dir, f"p{info.process_id}.npz"), **out)
    jax.distributed.shutdown()


def join() -> None:
    import funcnet as fn

    try:
        fn.distributed.initialize(timeout=30)
    except ValueError as error:
        print(f"ValueError: {error}", flush=True)
        sys.exit(3)
    print("joined", flush=True)


if __name__ == "__main__":
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if sys.argv[1] == "train":
        train(sys.argv[2])
    else:
        join()
