"""PyTorch eager: ``nn.Sequential``, ``torch.optim.SGD`` (or Adam), the classic step loop.

On the CPU by default; ``python -m bench --device gpu`` runs it on CUDA
(:func:`configure`), where ``sync`` waits for the device.

Images are converted once to PyTorch's channels-first layout in ``prepare``
(outside the timed region); weights are Xavier(Glorot)-uniform and biases
zero, to match the other frameworks (PyTorch's own default differs). Eager
mode compiles nothing, so its "compile" figure is just the first step.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

# OpenMP's default "active" waiting spins idle threads; on a machine whose
# cores are shared (other processes running) that made every PyTorch step
# 10-30 times slower here. Passive waiting is set before torch loads OpenMP;
# an OMP_WAIT_POLICY already in the environment is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
from torch import nn

from bench.frameworks._lm_torch import LM
from bench.spec import (
    Conv,
    Dense,
    Flatten,
    MaxPool,
    NotSupportedError,
    Repeat,
    Task,
    TransformerLM,
    Variant,
    input_shapes,
)

NAME = "torch"
DESCRIPTION = "PyTorch (eager)"
DEVICE = torch.device("cpu")
"""Where models and batches go: set by :func:`configure` from ``--device``."""


def configure(device: str) -> str | None:
    """Runs on ``device`` ("cpu", "gpu", "tpu"); returns why not, or None."""
    global DEVICE
    if device == "cpu":
        DEVICE = torch.device("cpu")
        return None
    if device == "gpu":
        if not torch.cuda.is_available():
            return f"not supported: this torch ({torch.__version__}) sees no CUDA device"
        DEVICE = torch.device("cuda")
        return None
    return f"not supported: PyTorch on {device} needs a separate package (torch_xla)"


_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def version() -> str:
    policy = os.environ.get("OMP_WAIT_POLICY")
    where = f"{torch.get_num_threads()} threads, OMP_WAIT_POLICY={policy}"
    if DEVICE.type == "cuda":
        where = f"cuda: {torch.cuda.get_device_name(DEVICE)}"
    return f"torch {torch.__version__} ({where})"


def build(task: Task) -> nn.Module:
    if len(task.layers) == 1 and isinstance(task.layers[0], TransformerLM):
        return LM(task.layers[0])
    layers: list[nn.Module] = []
    for layer, shape in zip(task.layers, input_shapes(task)):
        if isinstance(layer, Repeat):
            raise NotSupportedError("PyTorch has no scanned repeat of a layer")
        if isinstance(layer, Dense):
            layers.append(nn.Linear(shape[-1], layer.units))
        elif isinstance(layer, Conv):
            layers.append(nn.Conv2d(shape[-1], layer.features, layer.kernel))
        elif isinstance(layer, MaxPool):
            layers.append(nn.MaxPool2d(layer.window))
        elif isinstance(layer, Flatten):
            layers.append(nn.Flatten())
        if isinstance(layer, (Dense, Conv)):
            nn.init.xavier_uniform_(layers[-1].weight)
            nn.init.zeros_(layers[-1].bias)
            if layer.activation:
                layers.append(_ACTIVATIONS[layer.activation]())
    return nn.Sequential(*layers)


class StepLoop:
    """``zero_grad``, forward, ``backward``, ``optimizer.step`` for every batch."""

    def __init__(self, task: Task, seed: int):
        torch.manual_seed(seed)
        self.task = task
        self.model = build(task).to(DEVICE)
        self.optimizer: torch.optim.Optimizer
        if task.optimizer == "adam":
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=task.lr)
        else:
            self.optimizer = torch.optim.SGD(
                self.model.parameters(), lr=task.lr, momentum=task.momentum or 0.0
            )
        self.loss_fn = {"mse": nn.MSELoss, "bce": nn.BCELoss, "softmax_ce": nn.CrossEntropyLoss}[
            task.loss
        ]()
        self.loss: Any = None

    def _x(self, x: np.ndarray) -> torch.Tensor:
        if len(self.task.input_shape) == 3:
            x = np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2)))
        return torch.from_numpy(x).to(DEVICE)

    def _y(self, y: np.ndarray) -> torch.Tensor:
        y = y.astype(np.int64) if self.task.loss == "softmax_ce" else y
        return torch.from_numpy(y).to(DEVICE)

    def prepare(self, x: np.ndarray, y: np.ndarray) -> tuple[Any, Any]:
        return self._x(x), self._y(y)

    def step(self, x: Any, y: Any) -> None:
        if isinstance(x, np.ndarray):
            x, y = self._x(x), self._y(y)
        self.optimizer.zero_grad(set_to_none=True)
        out = self.model(x)
        if out.ndim == 3:  # a language model: every token is an example
            out, y = out.reshape(-1, out.shape[-1]), y.reshape(-1)
        loss = self.loss_fn(out, y)
        loss.backward()
        self.optimizer.step()
        self.loss = loss

    def sync(self) -> None:
        if DEVICE.type == "cuda":
            torch.cuda.synchronize(DEVICE)
        # eager CPU work is done when step returns

    def predict(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.model(self._x(x)).cpu().numpy()


VARIANTS = {"eager step loop": Variant("loop", StepLoop, "eager forward/backward/step loop")}
