"""The single sigmoid neuron of the numpy tutorial, in funcnet.

Three inputs, one sigmoid output; the output copies the first input.

    python examples/neuron.py
"""

from __future__ import annotations

import numpy as np
import optax

import funcnet as fn


def main(steps: int = 10_000) -> float:
    """Trains for ``steps`` full-batch steps and returns the prediction for [1, 0, 0]."""
    x = np.array([[0, 0, 1], [1, 1, 1], [1, 0, 1], [0, 1, 1]], dtype=np.float32)
    y = np.array([[0], [1], [1], [0]], dtype=np.float32)

    # The tutorial adds x.T @ (error * sigmoid slope) to the weights: gradient
    # descent with step 1 on half the summed squared error, which is len(x) / 2
    # times the mean squared error; so the same run is SGD with rate len(x) / 2.
    neuron = fn.Dense(1, activation="sigmoid")
    result = fn.fit(
        neuron, x, y, loss="mse", optimizer=optax.sgd(len(x) / 2), epochs=steps,
        batch_size=len(x), key=1,
    )  # fmt: skip
    new = np.array([[1, 0, 0]], dtype=np.float32)
    prediction = float(fn.predict(neuron, result.params, result.state, new)[0, 0])
    print(f"weights: {np.asarray(result.params['w']).ravel().round(3)}")
    print(f"prediction for [1, 0, 0]: {prediction:.5f}")
    return prediction


if __name__ == "__main__":
    fn.enable_compilation_cache()  # a second run loads its programs from disk
    main()
