"""Losses and metrics: known answers, gradients, and clear errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import funcnet as fn

P = np.array([[0.2], [0.9], [0.6]], dtype=np.float32)
T = np.array([[0.0], [1.0], [1.0]], dtype=np.float32)


def test_regression_losses_known_answers():
    assert float(fn.mse(P, T)) == pytest.approx(np.mean((P - T) ** 2))
    assert float(fn.mae(P, T)) == pytest.approx(np.mean(np.abs(P - T)))
    d = np.abs(np.array([0.0, 0.5, 3.0]))
    expected = np.mean(np.where(d <= 1, 0.5 * d**2, d - 0.5))
    assert float(fn.huber(jnp.zeros(3), jnp.array([0.0, 0.5, 3.0]))) == pytest.approx(expected)


def test_binary_crossentropy_from_probabilities_and_logits_agree():
    expected = -np.mean(T * np.log(P) + (1 - T) * np.log(1 - P))
    assert float(fn.binary_crossentropy(P, T)) == pytest.approx(expected, rel=1e-5)
    logits = np.log(P / (1 - P))
    assert float(fn.binary_crossentropy(logits, T, from_logits=True)) == pytest.approx(
        expected, rel=1e-5
    )


def test_categorical_losses_known_answers():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype=np.float32)
    labels = np.array([0, 2])
    expected = -np.mean(np.log([0.7, 0.8]))
    onehot = np.eye(3, dtype=np.float32)[labels]
    assert float(fn.categorical_crossentropy(probs, onehot)) == pytest.approx(expected, rel=1e-5)
    assert float(fn.sparse_categorical_crossentropy(probs, labels)) == pytest.approx(
        expected, rel=1e-5
    )
    logits = np.log(probs)
    assert float(fn.categorical_crossentropy(logits, onehot, from_logits=True)) == pytest.approx(
        expected, rel=1e-5
    )
    assert float(
        fn.sparse_categorical_crossentropy(logits, labels, from_logits=True)
    ) == pytest.approx(expected, rel=1e-5)


LOSSES = {
    "mse": (fn.mse, lambda k: jax.random.normal(k, (4, 2))),
    "mae": (fn.mae, lambda k: jax.random.normal(k, (4, 2))),
    "huber": (fn.huber, lambda k: jax.random.normal(k, (4, 2))),
    "bce": (
        fn.binary_crossentropy,
        lambda k: jax.random.uniform(k, (4, 2), minval=0.1, maxval=0.9),
    ),
    "bce_logits": (
        functools.partial(fn.binary_crossentropy, from_logits=True),
        lambda k: jax.random.uniform(k, (4, 2)),
    ),
    "cce_logits": (
        functools.partial(fn.categorical_crossentropy, from_logits=True),
        lambda k: jax.nn.softmax(jax.random.normal(k, (4, 3))),
    ),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_gradients_match_numerical_in_float64(name):
    loss, make_targets = LOSSES[name]
    with jax.enable_x64(True):
        targets = make_targets(jax.random.key(1)).astype(jnp.float64)
        predictions = jax.random.uniform(jax.random.key(2), targets.shape, jnp.float64, 0.2, 0.8)
        check_grads(lambda p: loss(p, targets), (predictions,), order=2, modes=["rev"])


def test_sparse_crossentropy_gradient_matches_numerical():
    with jax.enable_x64(True):
        logits = jax.random.normal(jax.random.key(0), (5, 4), jnp.float64)
        labels = jnp.array([0, 3, 1, 1, 2])
        check_grads(
            lambda z: fn.sparse_categorical_crossentropy(z, labels, from_logits=True),
            (logits,),
            order=2,
            modes=["rev"],
        )


def test_loss_rejects_targets_of_another_shape_with_the_fix():
    with pytest.raises(
        ValueError,
        match=r"^mse: targets must have the predictions' shape \(3, 1\), got \(3,\)\. "
        r"Reshape the targets with y\.reshape\(-1, 1\)",
    ):
        fn.mse(P, T[:, 0])
    with pytest.raises(
        ValueError, match=r"^binary_crossentropy: .* got \(3, 1, 1\)\. The targets have an extra"
    ):
        fn.binary_crossentropy(P, T[..., None])


def test_sparse_crossentropy_errors():
    with pytest.raises(
        TypeError, match=r"^sparse_categorical_crossentropy: targets must be integer class labels"
    ):
        fn.sparse_categorical_crossentropy(jnp.ones((2, 3)), jnp.ones(2))
    with pytest.raises(ValueError, match=r"targets must have shape \(2,\) .* got \(2, 3\)"):
        fn.sparse_categorical_crossentropy(jnp.ones((2, 3)), jnp.ones((2, 3), jnp.int32))


def test_multi_loss_is_the_weighted_mean():
    preds = (jnp.zeros((2, 1)), jnp.zeros((2, 1)))
    targets = (jnp.full((2, 1), 2.0), jnp.full((2, 1), 1.0))
    assert float(fn.multi_loss([fn.mse, "mae"])(preds, targets)) == pytest.approx((4 + 1) / 2)
    assert float(fn.multi_loss([fn.mse, fn.mae], [3.0, 1.0])(preds, targets)) == pytest.approx(
        13 / 4
    )


def test_multi_loss_errors():
    with pytest.raises(ValueError, match=r"^multi_loss: weights must be 2 non-negative numbers"):
        fn.multi_loss([fn.mse, fn.mae], [1.0])
    with pytest.raises(ValueError, match=r"^multi_loss: expected a tuple of 2 predictions"):
        fn.multi_loss([fn.mse, fn.mae])(jnp.zeros(2), (jnp.zeros(2), jnp.zeros(2)))
    with pytest.raises(ValueError, match=r"^unknown loss 'msee'\. Valid names: .*mse"):
        fn.multi_loss(["msee"])


def test_metrics_known_answers():
    scores = jnp.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert float(fn.accuracy(scores, jnp.array([1, 1, 1]))) == pytest.approx(2 / 3)
    assert float(fn.accuracy(scores, jnp.eye(2)[jnp.array([1, 0, 1])])) == 1.0
    assert float(fn.binary_accuracy(P, T)) == 1.0
    assert float(fn.binary_accuracy(P, T, threshold=0.7)) == pytest.approx(2 / 3)


def test_metric_errors():
    with pytest.raises(ValueError, match=r"^accuracy: targets must be labels of shape \(3,\)"):
        fn.accuracy(jnp.ones((3, 2)), jnp.ones((2,), jnp.int32))
    with pytest.raises(
        ValueError, match=r"^binary_accuracy: targets must have the predictions' shape"
    ):
        fn.binary_accuracy(P, T[:, 0])
