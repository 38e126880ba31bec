"""The Playground's dataset generators: their statistics and their exact rules."""

import math

import numpy as np
import pytest

from funcnet import datasets


def _radius(points):
    return np.hypot(points[:, 0], points[:, 1])


# --------------------------------------------------------------------------
# circle


def test_circle_rings_labels_and_balance():
    points, labels = datasets.circle(500, 0.0, seed=0)
    assert points.shape == (500, 2) and points.dtype == np.float32
    assert labels.shape == (500,) and labels.dtype == np.float32
    r = _radius(points)
    inner, outer = labels == 1, labels == -1
    assert inner.sum() == outer.sum() == 250
    assert r[inner].min() >= 0 and r[inner].max() < 2.5
    assert r[outer].min() >= 3.5 - 1e-5 and r[outer].max() <= 5 + 1e-5
    # Uniform radii: the ring means are the interval midpoints.
    assert abs(r[inner].mean() - 1.25) < 0.15
    assert abs(r[outer].mean() - 4.25) < 0.1
    # Angles cover the circle: the centroid of each ring is near the origin.
    assert np.all(np.abs(points[inner].mean(axis=0)) < 0.3)


def test_circle_noise_moves_the_labelling_copy_not_the_point():
    points, labels = datasets.circle(2000, 0.5, seed=1)
    r = _radius(points)
    # The points stay in their rings...
    assert np.all((r < 2.5) | ((r >= 3.5 - 1e-5) & (r <= 5 + 1e-5)))
    # ...but some labels now disagree with the ring they were drawn in.
    ring_label = np.where(r < 2.5, 1.0, -1.0)
    flipped = np.mean(labels != ring_label)
    assert 0.05 < flipped < 0.5
    # Labels stay in {-1, +1}.
    assert set(np.unique(labels)) == {-1.0, 1.0}


def test_circle_odd_count_rounds_each_half_up_like_the_playground():
    points, labels = datasets.circle(5, seed=0)
    assert len(points) == 6 and labels.tolist() == [1, 1, 1, -1, -1, -1]


# --------------------------------------------------------------------------
# xor, gauss, spiral


def test_xor_quadrants_padding_and_labels():
    points, labels = datasets.xor(1000, 0.0, seed=0)
    x, y = points[:, 0], points[:, 1]
    assert np.all((np.abs(x) >= 0.3) & (np.abs(x) <= 5.3 + 1e-5))
    assert np.all((np.abs(y) >= 0.3) & (np.abs(y) <= 5.3 + 1e-5))
    np.testing.assert_array_equal(labels, np.where(x * y >= 0, 1.0, -1.0))
    assert 0.4 < np.mean(labels == 1) < 0.6


def test_xor_noise_flips_labels_near_the_axes_only():
    points, labels = datasets.xor(2000, 0.1, seed=0)  # the copy moves by at most 0.5
    x, y = points[:, 0], points[:, 1]
    flipped = labels != np.where(x * y >= 0, 1.0, -1.0)
    assert flipped.any()
    assert np.all(np.minimum(np.abs(x), np.abs(y))[flipped] <= 0.5 + 1e-5)


@pytest.mark.parametrize("noise, variance", [(0.0, 0.5), (0.5, 4.0), (0.25, 2.25)])
def test_gauss_centres_and_variance_grow_with_noise(noise, variance):
    points, labels = datasets.gauss(8000, noise, seed=0)
    positive, negative = points[labels == 1], points[labels == -1]
    assert len(positive) == len(negative) == 4000
    np.testing.assert_allclose(positive.mean(axis=0), [2, 2], atol=0.1)
    np.testing.assert_allclose(negative.mean(axis=0), [-2, -2], atol=0.1)
    np.testing.assert_allclose(positive.var(axis=0), [variance, variance], rtol=0.08)


def test_spiral_radii_and_arms_without_noise():
    n = 500
    points, labels = datasets.spiral(n, 0.0, seed=0)
    half = n // 2
    i = np.arange(half)
    np.testing.assert_allclose(_radius(points[:half]), i / half * 5, atol=1e-5)
    # The second arm is the first rotated by pi.
    np.testing.assert_allclose(points[half:], -points[:half], atol=1e-5)
    assert labels[:half].tolist() == [1.0] * half and labels[half:].tolist() == [-1.0] * half
    # 1.75 turns: the angle of point i is 1.75 * 2 pi * i / half.
    t = 1.75 * 2 * np.pi * 100 / half
    np.testing.assert_allclose(
        points[100], [100 / half * 5 * np.sin(t), 100 / half * 5 * np.cos(t)], atol=1e-5
    )


def test_spiral_noise_is_bounded_by_the_noise_level():
    clean, _ = datasets.spiral(500, 0.0, seed=0)
    noisy, _ = datasets.spiral(500, 0.3, seed=0)
    shift = np.abs(noisy - clean)
    assert shift.max() <= 0.3 + 1e-5 and shift.max() > 0.2


# --------------------------------------------------------------------------
# regression


def test_reg_plane_label_and_range():
    points, labels = datasets.reg_plane(1200, 0.0, seed=0)
    assert np.all(np.abs(points) <= 6)
    np.testing.assert_allclose(labels, (points[:, 0] + points[:, 1]) / 10, atol=1e-6)
    assert labels.min() >= -1.2 and labels.max() <= 1.2


def _reg_gauss_reference(x, y):
    # The Playground's rule, point by point: the bump of largest magnitude wins.
    bumps = [(-4, 2.5, 1), (0, 2.5, -1), (4, 2.5, 1), (-4, -2.5, -1), (0, -2.5, 1), (4, -2.5, -1)]
    label = 0.0
    for cx, cy, sign in bumps:
        d = math.hypot(x - cx, y - cy)
        value = sign * min(1.0, max(0.0, 1 - d / 2))
        if abs(value) > abs(label):
            label = value
    return label


def test_reg_gauss_matches_the_rule_point_by_point():
    points, labels = datasets.reg_gauss(300, 0.0, seed=0)
    expected = [_reg_gauss_reference(float(x), float(y)) for x, y in points]
    np.testing.assert_allclose(labels, expected, atol=1e-6)
    assert labels.min() >= -1 and labels.max() <= 1
    assert np.mean(labels == 0) > 0.3  # far from every bump the label is 0


def test_reg_gauss_at_the_bumps():
    # Labels are computed from the points, so check the rule at known places.
    assert _reg_gauss_reference(-4, 2.5) == 1 and _reg_gauss_reference(0, 2.5) == -1
    points, labels = datasets.reg_gauss(5000, 0.0, seed=3)
    near = np.hypot(points[:, 0] - 4, points[:, 1] + 2.5) < 0.2
    assert near.any() and np.all(labels[near] < -0.89)


# --------------------------------------------------------------------------
# playground_data and playground_split


@pytest.mark.parametrize(
    "name, n", [("circle", 500), ("xor", 500), ("gauss", 500), ("spiral", 500),
                ("reg-plane", 1200), ("reg-gauss", 1200)],
)  # fmt: skip
def test_playground_data_sizes_and_reproducibility(name, n):
    points, labels = datasets.playground_data(name, seed=7)
    assert points.shape == (n, 2) and labels.shape == (n,)
    again, _ = datasets.playground_data(name, seed=7)
    np.testing.assert_array_equal(points, again)
    if name in datasets.CLASSIFICATION:
        assert set(np.unique(labels)) == {-1.0, 1.0}


def test_playground_data_errors():
    with pytest.raises(
        ValueError,
        match=r"unknown dataset 'moons'\. Valid names: circle, xor, gauss, spiral, reg-plane, reg-gauss\.",
    ):
        datasets.playground_data("moons")
    with pytest.raises(
        ValueError,
        match=r"noise must be a level in \[0, 1\] \(the Playground's percentage / 100\), got 5",
    ):
        datasets.playground_data("circle", noise=5)
    with pytest.raises(ValueError, match=r"num_samples must be a positive integer, got 0"):
        datasets.playground_data("circle", num_samples=0)


def test_playground_split_is_a_shuffled_partition():
    points, labels = datasets.playground_data("circle", seed=0)
    (xt, yt), (xv, yv) = datasets.playground_split(points, labels, 30, seed=0)
    assert len(xt) == math.floor(500 * 30 / 100) == 150 and len(xv) == 350
    both = np.concatenate([xt, xv])
    # The same points, each once, in a new order.
    assert sorted(map(tuple, both.tolist())) == sorted(map(tuple, points.tolist()))
    assert not np.array_equal(both, points)
    # Labels travel with their points.
    lookup = {tuple(p): lab for p, lab in zip(points.tolist(), labels.tolist())}
    assert [lookup[tuple(p)] for p in xt.tolist()] == yt.tolist()
    assert [lookup[tuple(p)] for p in xv.tolist()] == yv.tolist()
    # Shuffled: both classes appear in the training part.
    assert 0.3 < np.mean(yt == 1) < 0.7
    with pytest.raises(ValueError, match=r"percent_train must be between 0 and 100, got 100"):
        datasets.playground_split(points, labels, 100)
