"""funcnet through its public API only: ``fit``, ``make_train_step``, ``repeat``, ``fit_many``,
``TransformerLM``.

- "fit": ``fn.fit(net, x, y, loss=..., optimizer=..., epochs=..., batch_size=...,
  key=..., verbose=0)``. The Fitter keeps the same net, loss and optimizer
  objects for all its calls, because fit caches its compiled programs per
  those objects: a second call is the steady state. A second call continues
  from the trained state (``train_state=result.train_state``), as Keras's
  ``model.fit`` and the hand-written epoch scan continue from their weights.
- "step loop": ``fn.make_train_step`` called from a Python loop, the train
  state threaded by hand.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np
import optax

import funcnet as fn
from bench.spec import Conv, Dense, Flatten, MaxPool, Repeat, Task, TransformerLM, Variant

NAME = "funcnet"
DESCRIPTION = "funcnet (this library)"

_ACTIVATION_LAYERS = {"relu": fn.Relu, "tanh": fn.Tanh, "sigmoid": fn.Sigmoid}


def version() -> str:
    return f"funcnet {fn.__version__}, jax {jax.__version__}"


def build(task: Task) -> fn.Layer:
    layers: list[Any] = []
    for layer in task.layers:
        if isinstance(layer, Dense):
            layers.append(fn.Dense(layer.units, activation=layer.activation))
        elif isinstance(layer, Repeat):
            block = fn.Dense(layer.layer.units, activation=layer.layer.activation)
            layers.append(fn.repeat(block, layer.n))
        elif isinstance(layer, Conv):
            layers.append(fn.Conv(layer.features, kernel_size=layer.kernel, padding="VALID"))
            if layer.activation:
                layers.append(_ACTIVATION_LAYERS[layer.activation]())
        elif isinstance(layer, MaxPool):
            layers.append(fn.MaxPool(window=layer.window))
        elif isinstance(layer, Flatten):
            layers.append(fn.Flatten())
        elif isinstance(layer, TransformerLM):
            layers.append(
                fn.TransformerLM(
                    layer.vocab,
                    layer.features,
                    layer.depth,
                    layer.heads,
                    max_length=layer.length,
                    positions="learned",
                )
            )
    if len(layers) == 1 and isinstance(task.layers[0], TransformerLM):
        return layers[0]  # the model itself, as a user would train it
    return fn.serial(*layers)


def loss(task: Task) -> Any:
    if task.loss == "mse":
        return "mse"
    if task.loss == "bce":
        return "binary_crossentropy"
    return functools.partial(fn.sparse_categorical_crossentropy, from_logits=True)


def optimizer(task: Task) -> optax.GradientTransformation:
    if task.optimizer == "adam":
        return optax.adam(task.lr)
    return optax.sgd(task.lr, momentum=task.momentum)


class Fit:
    """``fn.fit`` with the same objects every call (so the second call reuses the compile)."""

    def __init__(self, task: Task, seed: int):
        self.task, self.seed = task, seed
        self.net, self.loss, self.optimizer = build(task), loss(task), optimizer(task)
        self.result: Any = None

    def fit(self, x: np.ndarray, y: np.ndarray, epochs: int, batch_size: int) -> None:
        self.result = fn.fit(
            self.net,
            x,
            y,
            loss=self.loss,
            optimizer=self.optimizer,
            epochs=epochs,
            batch_size=batch_size,
            key=self.seed,
            verbose=0,
            train_state=None if self.result is None else self.result.train_state,
        )
        jax.block_until_ready(self.result.params)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(fn.predict(self.net, self.result.params, self.result.state, x))


class StepLoop:
    """``fn.make_train_step`` (jitted, donating) called from a Python loop."""

    def __init__(self, task: Task, seed: int):
        self.net, opt = build(task), optimizer(task)
        self.train_state = fn.init_train_state(self.net, opt, (None, *task.input_shape), key=seed)
        self._step = fn.make_train_step(self.net, loss(task), opt)
        self.loss: Any = None

    def prepare(self, x: np.ndarray, y: np.ndarray) -> tuple[Any, Any]:
        return jax.device_put(x), jax.device_put(y)

    def step(self, x: Any, y: Any) -> None:
        self.train_state, self.loss = self._step(self.train_state, (x, y))

    def sync(self) -> None:
        jax.block_until_ready(self.train_state)

    def predict(self, x: np.ndarray) -> np.ndarray:
        ts = self.train_state
        return np.asarray(fn.predict(self.net, ts.params, ts.state, x))


VARIANTS = {
    "fit": Variant("fit", Fit, "fn.fit (one compiled lax.scan per epoch)"),
    "step loop": Variant("loop", StepLoop, "fn.make_train_step called from a Python loop"),
}


# --------------------------------------------------------------------------
# Ensembles


class SequentialFits:
    """``fn.fit`` once per model, keys seed..seed+n-1, the same objects (one compile)."""

    def __init__(self, task: Task, seed: int, n_models: int):
        self.task, self.seed, self.n_models = task, seed, n_models
        self.net, self.loss, self.optimizer = build(task), loss(task), optimizer(task)
        self.results: list[Any] = []

    def fit(self, x: np.ndarray, y: np.ndarray, epochs: int, batch_size: int) -> None:
        self.results = [
            fn.fit(
                self.net,
                x,
                y,
                loss=self.loss,
                optimizer=self.optimizer,
                epochs=epochs,
                batch_size=batch_size,
                key=self.seed + i,
                verbose=0,
            )
            for i in range(self.n_models)
        ]
        jax.block_until_ready([r.params for r in self.results])

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.stack(
            [np.asarray(fn.predict(self.net, r.params, r.state, x)) for r in self.results]
        )


class FitMany:
    """``fn.fit_many``: all models trained together (vmapped) in one call."""

    def __init__(self, task: Task, seed: int, n_models: int):
        self.task, self.seed, self.n_models = task, seed, n_models
        self.net, self.loss, self.optimizer = build(task), loss(task), optimizer(task)
        self.result: Any = None

    def fit(self, x: np.ndarray, y: np.ndarray, epochs: int, batch_size: int) -> None:
        self.result = fn.fit_many(
            self.net,
            x,
            y,
            loss=self.loss,
            optimizer=self.optimizer,
            epochs=epochs,
            batch_size=batch_size,
            verbose=0,
            seeds=list(range(self.seed, self.seed + self.n_models)),  # as SequentialFits
        )
        jax.block_until_ready(self.result.params)

    def predict(self, x: np.ndarray) -> np.ndarray:
        predict = jax.vmap(lambda p, s: fn.predict(self.net, p, s, x))
        return np.asarray(predict(self.result.params, self.result.state))


ENSEMBLE = {
    "fit_many": (FitMany, "fn.fit_many: the models trained together in one program"),
    "sequential fit": (SequentialFits, "fn.fit once per model, one after another"),
}
