"""Deterministic synthetic data, float32, the same arrays for every framework.

The bench makes its own data so that it depends on nothing but numpy (not on
``funcnet.datasets``, which may change). Every generator takes a seed and
returns numpy arrays in the canonical layout (channels-last images).
"""

from __future__ import annotations

import numpy as np


def hello() -> tuple[np.ndarray, np.ndarray]:
    """The six points of "Hello Keras": ``x = -1..4``, ``y = 2x - 1``, shapes ``[6, 1]``."""
    x = np.array([[-1.0], [0.0], [1.0], [2.0], [3.0], [4.0]], np.float32)
    return x, (2 * x - 1).astype(np.float32)


def circle(n: int = 500, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The TensorFlow Playground "circle" dataset.

    Half the points lie at a radius drawn from uniform(0, 2.5) and are labelled
    1, the other half at a radius from uniform(3.5, 5) and are labelled 0; the
    angles are uniform. Returns ``x`` of shape ``[n, 2]`` and ``y`` of shape
    ``[n, 1]`` (0.0 or 1.0), the two classes interleaved.
    """
    rng = np.random.default_rng(seed)
    inner = n // 2
    radius = np.concatenate([rng.uniform(0.0, 2.5, inner), rng.uniform(3.5, 5.0, n - inner)])
    angle = rng.uniform(0.0, 2 * np.pi, n)
    x = np.stack([radius * np.sin(angle), radius * np.cos(angle)], axis=1).astype(np.float32)
    y = np.concatenate([np.ones(inner), np.zeros(n - inner)]).astype(np.float32)[:, None]
    order = rng.permutation(n)
    return x[order], y[order]


def classification(
    n: int, input_shape: tuple[int, ...], classes: int = 10, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Standard-normal inputs ``[n, *input_shape]`` and uniform int32 labels ``[n]``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *input_shape), dtype=np.float32)
    y = rng.integers(0, classes, n).astype(np.int32)
    return x, y


def regression(n: int, features: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Standard-normal inputs and targets, both ``[n, features]``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, features), dtype=np.float32)
    y = rng.standard_normal((n, features), dtype=np.float32)
    return x, y


def tokens(n: int, length: int, vocab: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Uniform token ids ``x`` ``[n, length]`` and the next tokens ``y`` ``[n, length]``, int32.

    ``y[:, t] = x[:, t + 1]`` (one longer sequence cut in two), as a language
    model's targets are; the last target is one more random id.
    """
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, (n, length + 1)).astype(np.int32)
    return ids[:, :-1].copy(), ids[:, 1:].copy()
