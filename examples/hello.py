"""Hello, funcnet: one Dense neuron learns y = 2x - 1 from six points.

The "Hello Keras" tutorial in funcnet: same data, model, optimizer and loss.

    python examples/hello.py
"""

from __future__ import annotations

import numpy as np
import optax

import funcnet as fn


def main(epochs: int = 500) -> float:
    """Trains the neuron and returns its prediction for x = 10."""
    xs = np.array([[-1.0], [0.0], [1.0], [2.0], [3.0], [4.0]], dtype=np.float32)
    ys = 2 * xs - 1

    model = fn.Dense(1)
    result = fn.fit(
        model, xs, ys, loss="mse", optimizer=optax.sgd(0.01), epochs=epochs, batch_size=len(xs)
    )
    prediction = float(fn.predict(model, result.params, result.state, np.array([[10.0]]))[0, 0])
    print(f"loss after {epochs} epochs: {result.history['loss'][-1]:.6f}")
    print(f"prediction for x = 10: {prediction:.4f} (the rule y = 2x - 1 gives 19)")
    return prediction


if __name__ == "__main__":
    fn.enable_compilation_cache()  # a second run loads its programs from disk
    main()
