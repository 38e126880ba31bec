"""The TensorFlow Playground's 2-D datasets, as numpy generators.

Each generator follows the definition in the Playground's source
(tensorflow/playground, ``src/dataset.ts``) and returns ``(points, labels)``:
``points`` is ``[n, 2]`` float32 (x and y), ``labels`` is ``[n]`` float32.
Classification labels are -1 and +1; regression labels lie in [-1, 1].
How they differ from the browser's points is in ``docs/playground.md``.

>>> from funcnet.datasets import circle
>>> points, labels = circle(10, noise=0.0, seed=0)
>>> points.shape, labels.shape
((10, 2), (10,))
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Generator = Callable[[int, float, np.random.Generator], tuple[np.ndarray, np.ndarray]]

NUM_SAMPLES_CLASSIFY = 500
"""Points the Playground generates for a classification dataset."""

NUM_SAMPLES_REGRESS = 1200
"""Points the Playground generates for a regression dataset."""

_CIRCLE_RADIUS = 5.0
_XOR_PADDING = 0.3
_REGRESSION_RADIUS = 6.0
# reg-gauss: (centre x, centre y, sign) of the six bumps.
_BUMPS = np.array(
    [[-4, 2.5, 1], [0, 2.5, -1], [4, 2.5, 1], [-4, -2.5, -1], [0, -2.5, 1], [4, -2.5, -1]],
    dtype=np.float64,
)


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def _half(n: int) -> int:
    # The Playground loops `for (i = 0; i < n / 2; i++)`: an odd n rounds up.
    return math.ceil(n / 2)


def _pack(x: np.ndarray, y: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    points = np.stack([x, y], axis=-1).astype(np.float32)
    return points, np.asarray(labels, dtype=np.float32)


def circle(
    num_samples: int = NUM_SAMPLES_CLASSIFY,
    noise: float = 0.0,
    seed: int | np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Two rings: radius 0 to 2.5 labelled +1, radius 3.5 to 5 labelled -1.

    With noise, each point is labelled by whether a copy of it, moved by
    ``uniform(-5, 5) * noise`` along each axis, lies within radius 2.5; the
    point itself stays where it was drawn.

    Args:
        num_samples: the number of points (half in each ring).
        noise: the noise level in [0, 1] (the URL's percentage / 100).
        seed: an integer seed or a numpy Generator.

    Returns:
        ``(points [n, 2], labels [n])``, the inner ring first.

    Example:
        >>> points, labels = circle(4, seed=0)
        >>> labels.tolist()
        [1.0, 1.0, -1.0, -1.0]
    """
    rng = _rng(seed)
    half = _half(num_samples)
    r = np.concatenate(
        [
            rng.uniform(0.0, _CIRCLE_RADIUS * 0.5, half),
            rng.uniform(_CIRCLE_RADIUS * 0.7, _CIRCLE_RADIUS, half),
        ]
    )
    angle = rng.uniform(0.0, 2 * np.pi, 2 * half)
    x, y = r * np.sin(angle), r * np.cos(angle)
    nx = rng.uniform(-_CIRCLE_RADIUS, _CIRCLE_RADIUS, 2 * half) * noise
    ny = rng.uniform(-_CIRCLE_RADIUS, _CIRCLE_RADIUS, 2 * half) * noise
    labels = np.where(np.hypot(x + nx, y + ny) < _CIRCLE_RADIUS * 0.5, 1.0, -1.0)
    return _pack(x, y, labels)


def xor(
    num_samples: int = NUM_SAMPLES_CLASSIFY,
    noise: float = 0.0,
    seed: int | np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The four quadrants: +1 where ``x * y >= 0``, -1 elsewhere.

    Coordinates are uniform in [-5, 5], pushed 0.3 away from the axes; noise
    moves the labelling copy by ``uniform(-5, 5) * noise``.

    Example:
        >>> points, labels = xor(200, seed=0)
        >>> bool(np.all(np.abs(points) >= 0.3))
        True
    """
    rng = _rng(seed)
    x = rng.uniform(-5.0, 5.0, num_samples)
    y = rng.uniform(-5.0, 5.0, num_samples)
    x = x + np.where(x > 0, _XOR_PADDING, -_XOR_PADDING)
    y = y + np.where(y > 0, _XOR_PADDING, -_XOR_PADDING)
    nx = rng.uniform(-5.0, 5.0, num_samples) * noise
    ny = rng.uniform(-5.0, 5.0, num_samples) * noise
    labels = np.where((x + nx) * (y + ny) >= 0, 1.0, -1.0)
    return _pack(x, y, labels)


def gauss(
    num_samples: int = NUM_SAMPLES_CLASSIFY,
    noise: float = 0.0,
    seed: int | np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussian blobs: +1 around (2, 2), -1 around (-2, -2).

    Noise widens them: the variance grows linearly from 0.5 (noise 0) to 4
    (noise 0.5).

    Example:
        >>> points, labels = gauss(1000, seed=0)
        >>> np.round(points[labels > 0].mean(axis=0)).tolist()
        [2.0, 2.0]
    """
    rng = _rng(seed)
    half = _half(num_samples)
    variance = 0.5 + noise * (4.0 - 0.5) / 0.5
    centres = np.repeat(np.array([[2.0, 2.0], [-2.0, -2.0]]), half, axis=0)
    xy = centres + rng.normal(0.0, math.sqrt(variance), (2 * half, 2))
    labels = np.repeat([1.0, -1.0], half)
    return _pack(xy[:, 0], xy[:, 1], labels)


def spiral(
    num_samples: int = NUM_SAMPLES_CLASSIFY,
    noise: float = 0.0,
    seed: int | np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved spirals of 1.75 turns out to radius 5: +1 and -1 (rotated by pi).

    Noise adds ``uniform(-1, 1) * noise`` to each coordinate of the point.

    Example:
        >>> points, labels = spiral(4, seed=0)
        >>> points[0].tolist(), labels.tolist()
        ([0.0, 0.0], [1.0, 1.0, -1.0, -1.0])
    """
    rng = _rng(seed)
    half = _half(num_samples)
    n = num_samples / 2
    i = np.arange(half, dtype=np.float64)
    r = np.tile(i / n * 5.0, 2)
    t = np.concatenate([1.75 * i / n * 2 * np.pi, 1.75 * i / n * 2 * np.pi + np.pi])
    x = r * np.sin(t) + rng.uniform(-1.0, 1.0, 2 * half) * noise
    y = r * np.cos(t) + rng.uniform(-1.0, 1.0, 2 * half) * noise
    labels = np.repeat([1.0, -1.0], half)
    return _pack(x, y, labels)


def reg_plane(
    num_samples: int = NUM_SAMPLES_REGRESS,
    noise: float = 0.0,
    seed: int | np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A tilted plane: label ``(x + y) / 10`` over the square [-6, 6]^2.

    Noise moves the labelling copy by ``uniform(-6, 6) * noise`` per axis.

    Example:
        >>> points, labels = reg_plane(100, seed=0)
        >>> bool(np.allclose(labels, points.sum(axis=1) / 10, atol=1e-6))
        True
    """
    rng = _rng(seed)
    x, y, nx, ny = _square_with_noise(rng, num_samples, noise)
    return _pack(x, y, (x + nx + y + ny) / 10.0)


def reg_gauss(
    num_samples: int = NUM_SAMPLES_REGRESS,
    noise: float = 0.0,
    seed: int | np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Six bumps of height +1 or -1 on a 3 x 2 grid over [-6, 6]^2.

    A bump at distance ``d`` contributes ``sign * max(0, 1 - d / 2)``; the
    label is the contribution of largest magnitude (0 far from every bump).

    Example:
        >>> points, labels = reg_gauss(2000, seed=0)
        >>> float(labels.min()) >= -1 and float(labels.max()) <= 1
        True
    """
    rng = _rng(seed)
    x, y, nx, ny = _square_with_noise(rng, num_samples, noise)
    d = np.hypot((x + nx)[:, None] - _BUMPS[None, :, 0], (y + ny)[:, None] - _BUMPS[None, :, 1])
    height = np.clip(1.0 - d / 2.0, 0.0, 1.0)
    # argmax picks the first bump on ties, as the Playground's strict ">" does.
    nearest = np.argmax(height, axis=1)
    labels = _BUMPS[nearest, 2] * height[np.arange(num_samples), nearest]
    return _pack(x, y, labels)


def _square_with_noise(
    rng: np.random.Generator, n: int, noise: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    radius = _REGRESSION_RADIUS
    x = rng.uniform(-radius, radius, n)
    y = rng.uniform(-radius, radius, n)
    nx = rng.uniform(-radius, radius, n) * noise
    ny = rng.uniform(-radius, radius, n) * noise
    return x, y, nx, ny


CLASSIFICATION: dict[str, Generator] = {
    "circle": circle,
    "xor": xor,
    "gauss": gauss,
    "spiral": spiral,
}
"""The Playground's classification datasets by URL name."""

REGRESSION: dict[str, Generator] = {"reg-plane": reg_plane, "reg-gauss": reg_gauss}
"""The Playground's regression datasets by URL name."""


def playground_data(
    name: str,
    *,
    noise: float = 0.0,
    seed: int | np.random.Generator | None = None,
    num_samples: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A Playground dataset by name, with the Playground's number of points.

    Args:
        name: one of ``circle, xor, gauss, spiral`` (500 points) or
            ``reg-plane, reg-gauss`` (1200 points).
        noise: the noise level in [0, 1] (the URL's percentage / 100).
        seed: an integer seed or a numpy Generator.
        num_samples: override the number of points.

    Returns:
        ``(points [n, 2], labels [n])``, float32.

    Example:
        >>> points, labels = playground_data("circle", seed=0)
        >>> points.shape, sorted(set(labels.tolist()))
        ((500, 2), [-1.0, 1.0])
    """
    generators = {**CLASSIFICATION, **REGRESSION}
    if name not in generators:
        raise ValueError(f"unknown dataset {name!r}. Valid names: {', '.join(generators)}.")
    if num_samples is None:
        num_samples = NUM_SAMPLES_CLASSIFY if name in CLASSIFICATION else NUM_SAMPLES_REGRESS
    if not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}.")
    if not 0.0 <= noise <= 1.0:
        raise ValueError(
            f"noise must be a level in [0, 1] (the Playground's percentage / 100), got {noise!r}."
        )
    return generators[name](int(num_samples), float(noise), _rng(seed))


def playground_split(
    points: np.ndarray,
    labels: np.ndarray,
    percent_train: float = 50,
    seed: int | np.random.Generator | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Shuffles once and splits into train and test data, as the Playground does.

    The first ``floor(n * percent_train / 100)`` shuffled points train.

    Returns:
        ``((train_points, train_labels), (test_points, test_labels))``.

    Example:
        >>> points, labels = playground_data("xor", seed=0)
        >>> (xt, yt), (xv, yv) = playground_split(points, labels, 30, seed=0)
        >>> len(xt), len(xv)
        (150, 350)
    """
    if not 0 < percent_train < 100:
        raise ValueError(f"percent_train must be between 0 and 100, got {percent_train!r}.")
    order = _rng(seed).permutation(len(points))
    points, labels = points[order], labels[order]
    split = math.floor(len(points) * percent_train / 100)
    return (points[:split], labels[:split]), (points[split:], labels[split:])
