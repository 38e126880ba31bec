"""Graphs beyond a stack: two branches, two heads with a loss each, an inception block.

The Keras anatomy tutorial's point: a network is a graph of compatible layers.
In funcnet the graph is written with combinators: ``branches`` feeds one input
to several layers, ``fan_in_concat`` joins their outputs, and a model with
several outputs trains on one loss per output (``multi_loss``).

    python examples/graphs.py
"""

from __future__ import annotations

import numpy as np
import optax

import funcnet as fn


def two_branches() -> fn.Layer:
    """Two views of the same input, concatenated: a relu branch and a tanh branch."""
    return fn.serial(
        fn.branches(fn.Dense(16, "relu"), fn.Dense(16, "tanh")),
        fn.fan_in_concat(),
        fn.Dense(1),
    )


def two_heads() -> fn.Layer:
    """A shared trunk with two heads: a regression value and 3-class logits."""
    return fn.serial(fn.Dense(32, "relu"), fn.branches(fn.Dense(1), fn.Dense(3)))


def inception_block(features: int = 8) -> fn.Layer:
    """1x1, 3x3 and 5x5 convolutions and a pooling branch, side by side, concatenated."""
    return fn.serial(
        fn.branches(
            fn.Conv(features, (1, 1)),
            fn.serial(fn.Conv(features, (1, 1)), fn.Relu(), fn.Conv(features, (3, 3))),
            fn.serial(fn.Conv(features // 2, (1, 1)), fn.Relu(), fn.Conv(features // 2, (5, 5))),
            fn.serial(
                fn.MaxPool((3, 3), strides=(1, 1), padding="SAME"), fn.Conv(features // 2, (1, 1))
            ),
            name="inception",
        ),
        fn.fan_in_concat(axis=-1),
        fn.Relu(),
        name="inception_block",
    )


def main(epochs: int = 30, n: int = 256) -> dict[str, list[float]]:
    """Trains each graph briefly; returns each one's per-epoch losses."""
    rng = np.random.default_rng(0)
    losses = {}

    x = rng.uniform(-2, 2, size=(n, 2)).astype(np.float32)
    y = (np.sin(x[:, :1]) * x[:, 1:]).astype(np.float32)
    net = two_branches()
    print("Two branches\n" + fn.summary(net, (None, 2)))
    result = fn.fit(net, x, y, loss="mse", optimizer=optax.adam(1e-2), epochs=epochs, verbose=0)
    losses["two_branches"] = result.history["loss"]

    value = (x[:, :1] ** 2 + x[:, 1:]).astype(np.float32)
    label = (np.digitize(x[:, 0], [-0.7, 0.7])).astype(np.int32)
    net = two_heads()
    print("\nTwo heads, one loss each\n" + fn.summary(net, (None, 2)))
    loss = fn.multi_loss(
        [fn.mse, lambda logits, y: fn.sparse_categorical_crossentropy(logits, y, from_logits=True)]
    )
    result = fn.fit(
        net, x, (value, label), loss=loss, optimizer=optax.adam(1e-2), epochs=epochs, verbose=0
    )
    losses["two_heads"] = result.history["loss"]

    images = rng.normal(size=(n // 4, 8, 8, 3)).astype(np.float32)
    target = images[:, 2:6, 2:6, 0].mean(axis=(1, 2))[:, None].astype(np.float32)
    net = fn.serial(inception_block(), fn.GlobalAvgPool(), fn.Dense(1))
    print("\nInception block\n" + fn.summary(net, (None, 8, 8, 3)))
    result = fn.fit(
        net, images, target, loss="mse", optimizer=optax.adam(3e-3), epochs=max(2, epochs // 3),
        verbose=0,
    )  # fmt: skip
    losses["inception"] = result.history["loss"]

    for name, history in losses.items():
        print(f"{name}: loss {history[0]:.4f} -> {history[-1]:.4f}")
    return losses


if __name__ == "__main__":
    fn.enable_compilation_cache()  # a second run loads its programs from disk
    main()
