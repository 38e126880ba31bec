"""Peak memory of a compiled train step with and without rematerialisation.

    python bench/remat_memory.py            # 12 Transformer-like blocks, a markdown table
    python bench/remat_memory.py --quick    # 4 small blocks

The model is a stack of pre-norm Transformer-like blocks (self-attention
and a GELU feed-forward, each in a residual branch), built from funcnet's
own layers and repeated with ``fn.repeat(block, depth, remat=...)``. For
each ``remat`` setting the train step (``fn.make_train_step``, SGD, MSE) is
compiled, not run, and XLA's memory analysis of the compiled program is
read: ``temp_size_in_bytes`` is the scratch memory the step needs beyond
its arguments and outputs, which is where the saved activations live. The
figures are properties of the compiled program, not timings: the same on
every run of the same versions. Recorded in bench/README.md.
"""

from __future__ import annotations

import argparse

SETTINGS = (False, "dots_saveable", True)
"""``repeat``'s ``remat``: keep everything, keep the matrix products, keep only each block's input."""


def block(width: int, heads: int):
    """One pre-norm Transformer-like block, ``[batch, seq, width] -> [batch, seq, width]``."""
    import jax

    import funcnet as fn

    attention = fn.serial(fn.LayerNorm(), fn.MultiHeadAttention(heads, width // heads))
    feed_forward = fn.serial(fn.LayerNorm(), fn.Dense(4 * width), jax.nn.gelu, fn.Dense(width))
    return fn.serial(fn.residual(attention), fn.residual(feed_forward))


def step_memory(depth: int, width: int, heads: int, batch: int, seq: int, remat) -> dict:
    """XLA's memory analysis of the compiled train step, in bytes."""
    import jax
    import jax.numpy as jnp
    import optax

    import funcnet as fn

    net = fn.repeat(block(width, heads), depth, remat=remat)
    optimizer = optax.sgd(0.01)
    ts = fn.init_train_state(net, optimizer, (None, seq, width), key=0)
    step = fn.make_train_step(net, "mse", optimizer)
    x = jax.ShapeDtypeStruct((batch, seq, width), jnp.float32)
    stats = step.lower(ts, (x, x)).compile().memory_analysis()
    return {
        "temp": stats.temp_size_in_bytes,
        "arguments": stats.argument_size_in_bytes,
        "outputs": stats.output_size_in_bytes,
    }


def measure(quick: bool = False) -> tuple[dict, dict]:
    """``(sizes, {remat: memory})`` for the full or the quick model."""
    if quick:
        sizes = {"depth": 4, "width": 32, "heads": 2, "batch": 4, "seq": 16}
    else:
        sizes = {"depth": 12, "width": 256, "heads": 4, "batch": 16, "seq": 128}
    return sizes, {remat: step_memory(**sizes, remat=remat) for remat in SETTINGS}


def table(sizes: dict, results: dict) -> str:
    base = results[False]["temp"]
    lines = [
        f"{sizes['depth']} blocks, width {sizes['width']}, {sizes['heads']} heads, "
        f"batch {sizes['batch']} x {sizes['seq']} tokens, float32",
        "",
        "| remat | temp (MiB) | vs no remat | arguments (MiB) |",
        "| --- | --- | --- | --- |",
    ]
    for remat, memory in results.items():
        lines.append(
            f"| {remat!r} | {memory['temp'] / 2**20:.1f} | {memory['temp'] / base:.2f}x | "
            f"{memory['arguments'] / 2**20:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small model")
    args = parser.parse_args()
    print(table(*measure(args.quick)))


if __name__ == "__main__":
    main()
