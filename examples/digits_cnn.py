"""A small CNN on the 8x8 handwritten digits that scikit-learn ships (no download).

Conv, BatchNorm, MaxPool, Dropout and Dense, trained with Adam on 80% of the
1,797 digits and evaluated on the held-out 20%.

    pip install -e ".[examples]" && python examples/digits_cnn.py
"""

from __future__ import annotations

import numpy as np
import optax

import funcnet as fn


def load(test_fraction: float = 0.2, seed: int = 0):
    """The digits as ``[n, 8, 8, 1]`` floats in [0, 1] and integer labels, split train/test."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    y = digits.target.astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(len(x) * (1 - test_fraction))
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def model() -> fn.Layer:
    return fn.serial(
        # momentum 0.9: running statistics settle within an epoch of this small dataset.
        fn.Conv(32, (3, 3)), fn.BatchNorm(momentum=0.9), fn.Relu(),
        fn.Conv(64, (3, 3)), fn.BatchNorm(momentum=0.9), fn.Relu(),
        fn.MaxPool((2, 2)),
        fn.Dropout(0.25),
        fn.Flatten(),
        fn.Dense(128, "relu"),
        fn.Dropout(0.3),
        fn.Dense(10),
    )  # fmt: skip


def main(epochs: int = 25, verbose: int | str = "auto") -> float:
    """Trains the CNN and returns its accuracy on the held-out 20%."""
    x_train, y_train, x_test, y_test = load()
    net = model()
    print(fn.summary(net, (None, 8, 8, 1)))

    def cross_entropy(logits, labels):
        return fn.sparse_categorical_crossentropy(logits, labels, from_logits=True)

    result = fn.fit(
        net, x_train, y_train, loss=cross_entropy, optimizer=optax.adam(1e-3), epochs=epochs,
        batch_size=32, metrics=["accuracy"], validation_data=(x_test, y_test), key=0,
        verbose=verbose,
    )  # fmt: skip
    scores = fn.evaluate(
        net, result.params, result.state, x_test, y_test, loss=cross_entropy, metrics=["accuracy"]
    )
    print(f"held-out accuracy: {scores['accuracy']:.2%} ({len(x_test)} digits)")
    return scores["accuracy"]


if __name__ == "__main__":
    fn.enable_compilation_cache()  # a second run loads its programs from disk
    main()
