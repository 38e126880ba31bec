"""Keras 3 on the JAX backend: ``keras.Sequential``, ``compile`` and ``model.fit``.

``KERAS_BACKEND`` must be "jax" before Keras is first imported; this module
sets it when Keras is not imported yet and refuses (skips) otherwise. Keras's
defaults are already Glorot-uniform weights and zero biases.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from bench.spec import Conv, Dense, Flatten, MaxPool, NotSupportedError, Repeat, Task, Variant

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras

if keras.backend.backend() != "jax":
    raise RuntimeError(f"Keras runs on the {keras.backend.backend()!r} backend, not 'jax'")

NAME = "keras"
DESCRIPTION = "Keras 3 (JAX backend)"


def version() -> str:
    return f"keras {keras.__version__} ({keras.backend.backend()} backend)"


def build(task: Task) -> keras.Model:
    layers: list[Any] = [keras.Input(task.input_shape)]
    for layer in task.layers:
        if isinstance(layer, Dense):
            layers.append(keras.layers.Dense(layer.units, activation=layer.activation))
        elif isinstance(layer, Conv):
            layers.append(
                keras.layers.Conv2D(layer.features, layer.kernel, activation=layer.activation)
            )
        elif isinstance(layer, MaxPool):
            layers.append(keras.layers.MaxPooling2D(layer.window))
        elif isinstance(layer, Flatten):
            layers.append(keras.layers.Flatten())
        elif isinstance(layer, Repeat):
            raise NotSupportedError("Keras has no scanned repeat of a layer")
        else:
            raise NotSupportedError(f"no {type(layer).__name__} written for Keras")
    model = keras.Sequential(layers)
    if task.loss == "mse":
        loss: Any = "mse"
    elif task.loss == "bce":
        loss = keras.losses.BinaryCrossentropy()
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    sgd = keras.optimizers.SGD(task.lr, momentum=task.momentum or 0.0)
    model.compile(optimizer=sgd, loss=loss)
    return model


class Fit:
    """``model.fit(x, y, batch_size, epochs, shuffle=True, verbose=0)``."""

    def __init__(self, task: Task, seed: int):
        keras.utils.set_random_seed(seed)
        self.model = build(task)

    def fit(self, x: np.ndarray, y: np.ndarray, epochs: int, batch_size: int) -> None:
        self.model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(x, verbose=0))


VARIANTS = {"model.fit": Variant("fit", Fit, "model.fit, JAX backend, jit_compile default")}
