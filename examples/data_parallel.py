"""Data-parallel training: the same script on one CPU, several devices, or several hosts.

A classifier of the Playground's two circles, trained with each batch split
over every device of every process. Nothing in it depends on the number of
devices or processes: funcnet places the arrays on the mesh and XLA adds the
collectives (see docs/data-parallel.md).

One process, 4 simulated CPU devices (a GPU or TPU machine needs no flag):

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python examples/data_parallel.py

Two processes on this machine, joined by jax.distributed (gloo on CPU);
on a cluster, the same command runs once per host with its own id:

    export FUNCNET_COORDINATOR=127.0.0.1:12355 FUNCNET_NUM_PROCESSES=2
    FUNCNET_PROCESS_ID=0 python examples/data_parallel.py --distributed &
    FUNCNET_PROCESS_ID=1 python examples/data_parallel.py --distributed

Add ``--stream`` to feed each process only its share of every batch, as a
job whose data does not fit in memory would.
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import numpy as np
import optax

import funcnet as fn
from funcnet.datasets import circle


def batches(x, y, batch_size, mesh, seed):
    """This process's share of each global batch, in a new order every epoch."""
    epoch = 0
    while True:
        order = np.random.default_rng((seed, epoch)).permutation(len(x))
        for start in range(0, len(x) - batch_size + 1, batch_size):
            rows = order[start : start + batch_size]
            yield fn.distributed.process_share((x[rows], y[rows]), mesh)
        epoch += 1


def main(
    epochs: int = 20,
    examples: int = 2048,
    batch_size: int = 64,
    distributed: bool = False,
    stream: bool = False,
) -> dict:
    """Trains the classifier; returns devices, processes, accuracy and the loss history."""
    if distributed:
        fn.distributed.initialize()  # arguments from FUNCNET_* / JAX_* or SLURM, MPI, TPU
    mesh = fn.make_mesh()  # one axis, "data", over every device of every process
    points, labels = circle(examples, noise=0.1, seed=0)
    x, y = points / 5.0, (labels > 0).astype(np.float32)[:, None]
    net = fn.serial(fn.Dense(16, "tanh"), fn.Dense(16, "tanh"), fn.Dense(1))
    loss = functools.partial(fn.binary_crossentropy, from_logits=True)
    batch_size -= batch_size % jax.device_count()  # a multiple of the devices
    start = time.perf_counter()
    if stream:
        data = batches(x, y, batch_size, mesh, seed=0)
        steps = examples // batch_size
        result = fn.fit(
            net, data, loss=loss, optimizer=optax.adam(0.02), epochs=epochs,
            steps_per_epoch=steps, mesh=mesh, key=0, verbose=0,
        )  # fmt: skip
    else:
        result = fn.fit(
            net, x, y, loss=loss, optimizer=optax.adam(0.02), epochs=epochs,
            batch_size=batch_size, mesh=mesh, key=0, verbose=0,
        )  # fmt: skip
    seconds = time.perf_counter() - start
    # Host copies of the replicated params: predicting on them needs no other process.
    params, state = fn.gather_for_save((result.params, result.state))
    logits = fn.predict(net, params, state, x)
    accuracy = float(np.mean((np.asarray(logits) > 0) == (y > 0.5)))
    fn.distributed.print_main(
        f"{jax.process_count()} process(es), {jax.device_count()} device(s), global batch "
        f"{batch_size}: loss {result.history['loss'][-1]:.4f}, accuracy {accuracy:.3f}, "
        f"{seconds:.1f} s"
    )
    return {
        "devices": jax.device_count(),
        "processes": jax.process_count(),
        "accuracy": accuracy,
        "loss": result.history["loss"],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--distributed", action="store_true", help="join with jax.distributed")
    parser.add_argument("--stream", action="store_true", help="feed per-process shares")
    args = parser.parse_args()
    main(args.epochs, batch_size=args.batch_size, distributed=args.distributed, stream=args.stream)
