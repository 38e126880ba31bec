"""What every framework builds: a framework-neutral description of a model and its training.

A :class:`Task` names the layers, the per-example input shape, the loss and the
optimizer. Each framework module turns the same task into its own idiomatic
model, so the data, the architecture, the initialisation scheme (Glorot-uniform
weights, zero biases, Keras's and funcnet's default) and the optimizer are the
same everywhere; only the framework differs.

Data is always handed over in one canonical layout, numpy float32
channels-last (``[batch, height, width, channels]``); a framework that prefers
another layout (PyTorch, Equinox: channels-first) converts it in its
``prepare`` method, outside the timed region.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

Activation = Literal["relu", "tanh", "sigmoid"] | None
LossName = Literal["mse", "bce", "softmax_ce"]


class NotSupportedError(Exception):
    """A framework has no idiomatic way to build this task (e.g. ``Repeat``)."""


@dataclass(frozen=True)
class Dense:
    units: int
    activation: Activation = None


@dataclass(frozen=True)
class Conv:
    """A 2-D convolution with VALID padding and stride 1."""

    features: int
    kernel: tuple[int, int] = (3, 3)
    activation: Activation = "relu"


@dataclass(frozen=True)
class MaxPool:
    window: tuple[int, int] = (2, 2)


@dataclass(frozen=True)
class Flatten:
    pass


@dataclass(frozen=True)
class Repeat:
    """``n`` copies of a shape-preserving Dense layer, compiled as one loop (``lax.scan``)."""

    layer: Dense
    n: int


@dataclass(frozen=True)
class TransformerLM:
    """A small decoder-only Transformer language model, the same in every framework.

    Token ids ``[batch, length]`` to next-token logits ``[batch, length, vocab]``:
    a token embedding (``normal(0.02)``) plus learned positions
    (``normal(0.02)``), ``depth`` pre-norm blocks (LayerNorm, causal multi-head
    self-attention with biases, residual; LayerNorm, Dense(4 features) with
    exact GELU, Dense(features), residual), a final LayerNorm, and logits
    against the embedding table (tied). LayerNorm epsilon 1e-5; projections
    Glorot-uniform (per query, key, value and output projection), biases zero.
    """

    vocab: int
    features: int
    depth: int
    heads: int
    length: int


LayerSpec = Dense | Conv | MaxPool | Flatten | Repeat | TransformerLM


@dataclass(frozen=True)
class Task:
    """A model and how it is trained.

    Attributes:
        layers: the model, input to output.
        input_shape: the shape of one example (no batch axis), channels-last.
        loss: "mse" (regression), "bce" (sigmoid probabilities against 0/1
            targets ``[n, 1]``) or "softmax_ce" (logits against int32 labels
            ``[n]``, or ``[n, length]`` for a language model: the mean over tokens).
        lr: the learning rate.
        momentum: SGD momentum, or None for plain SGD.
        optimizer: "sgd" (optax.sgd, torch.optim.SGD) or "adam" (optax.adam,
            torch.optim.Adam: betas 0.9, 0.999, eps 1e-8 in both).
    """

    layers: tuple[LayerSpec, ...]
    input_shape: tuple[int, ...]
    loss: LossName
    lr: float
    momentum: float | None = None
    optimizer: Literal["sgd", "adam"] = "sgd"
    label: str = field(default="", compare=False)


def output_shapes(task: Task) -> list[tuple[int, ...]]:
    """The per-example shape after each layer (frameworks that need input sizes use it)."""
    shape = task.input_shape
    shapes = []
    for layer in task.layers:
        if isinstance(layer, Dense):
            shape = (*shape[:-1], layer.units)
        elif isinstance(layer, Repeat):
            if shape[-1] != layer.layer.units:
                raise ValueError(f"Repeat needs {shape[-1]} units, got {layer.layer.units}")
        elif isinstance(layer, Conv):
            h, w, _ = shape
            kh, kw = layer.kernel
            shape = (h - kh + 1, w - kw + 1, layer.features)
        elif isinstance(layer, MaxPool):
            h, w, c = shape
            wh, ww = layer.window
            shape = (h // wh, w // ww, c)
        elif isinstance(layer, Flatten):
            shape = (int(np.prod(shape)),)
        elif isinstance(layer, TransformerLM):
            shape = (*shape, layer.vocab)
        shapes.append(shape)
    return shapes


def input_shapes(task: Task) -> list[tuple[int, ...]]:
    """The per-example shape entering each layer."""
    return [task.input_shape, *output_shapes(task)[:-1]]


def accuracy(task: Task, predictions: np.ndarray, y: np.ndarray) -> float:
    """Fraction of correct predictions: thresholded at 0.5 for "bce", argmax for "softmax_ce"."""
    predictions = np.asarray(predictions, np.float32)
    if task.loss == "bce":
        return float(np.mean((predictions > 0.5) == (y > 0.5)))
    if task.loss == "softmax_ce":
        return float(np.mean(np.argmax(predictions, axis=-1) == y))
    raise ValueError(f"accuracy is not defined for loss {task.loss!r}")


class Trainer(Protocol):
    """A model with its optimizer, trained one step at a time from a Python loop.

    ``step`` may return before the work is done (JAX dispatches asynchronously);
    ``sync`` waits for it. ``prepare`` converts canonical numpy arrays to what
    ``step`` takes fastest (device arrays, tensors in the framework's layout);
    ``step`` also accepts canonical numpy arrays directly.
    """

    def prepare(self, x: np.ndarray, y: np.ndarray) -> tuple[Any, Any]: ...

    def step(self, x: Any, y: Any) -> None: ...

    def sync(self) -> None: ...

    def predict(self, x: np.ndarray) -> np.ndarray: ...


class Fitter(Protocol):
    """A model trained by a whole-run call, ``fit(x, y, epochs, batch_size)``, that blocks.

    Every epoch reshuffles the data and keeps the last partial batch. Calling
    ``fit`` again may reuse compiled programs (that is what steady-state
    timings measure); a new Fitter compiles afresh.
    """

    def fit(self, x: np.ndarray, y: np.ndarray, epochs: int, batch_size: int) -> None: ...

    def predict(self, x: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Variant:
    """One way a framework trains: ``kind`` "loop" (a :class:`Trainer`) or "fit" (a :class:`Fitter`).

    ``make(task, seed)`` builds it; it raises :class:`NotSupportedError` for tasks
    the framework cannot express idiomatically.
    """

    kind: Literal["loop", "fit"]
    make: Callable[[Task, int], Any]
    description: str = ""
    workloads: tuple[str, ...] | None = None  # None: every workload
