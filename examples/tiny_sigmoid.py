"""The TensorFlow.js tutorial's tiny network: 2 inputs, 4 sigmoid units, 1 sigmoid output.

python examples/tiny_sigmoid.py
"""

from __future__ import annotations

import numpy as np
import optax

import funcnet as fn


def main(max_epochs: int = 20_000, tolerance: float = 0.02, chunk: int = 500) -> np.ndarray:
    """Trains with SGD 0.1 and MSE until every prediction is within ``tolerance``."""
    x = np.array([[0.0, 0.0], [0.2, 0.2], [0.4, 0.4]], dtype=np.float32)
    y = np.array([[0.1], [0.3], [0.5]], dtype=np.float32)

    model = fn.serial(fn.Dense(4, activation="sigmoid"), fn.Dense(1, activation="sigmoid"))
    print(fn.summary(model, (None, 2)))

    optimizer = optax.sgd(0.1)
    train_state = fn.init_train_state(model, optimizer, (None, 2), key=0)
    epochs = 0
    while True:
        result = fn.fit(
            model, x, y, loss="mse", optimizer=optimizer, epochs=chunk,
            batch_size=len(x), train_state=train_state,
        )  # fmt: skip
        train_state, epochs = result.train_state, epochs + chunk
        predictions = np.asarray(fn.predict(model, result.params, result.state, x))
        if np.max(np.abs(predictions - y)) < tolerance or epochs >= max_epochs:
            break
    print(f"after {epochs} epochs (loss {result.history['loss'][-1]:.6f}):")
    for inputs, target, prediction in zip(x, y, predictions):
        print(f"  {inputs} -> {prediction[0]:.3f} (target {target[0]:.1f})")
    return predictions


if __name__ == "__main__":
    fn.enable_compilation_cache()  # a second run loads its programs from disk
    main()
