"""Losses and metrics: known answers, gradients, and clear errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet as fn
from tests._gradcheck import check_many_grads_rev

P = np.array([[0.2], [0.9], [0.6]], dtype=np.float32)
T = np.array([[0.0], [1.0], [1.0]], dtype=np.float32)


def test_regression_losses_known_answers():
    # One compiled program for all the known answers (eager calls compile one per op).
    mse, mae, huber = jax.jit(
        lambda p, t, h: (fn.mse(p, t), fn.mae(p, t), fn.huber(jnp.zeros(3), h))
    )(P, T, jnp.array([0.0, 0.5, 3.0]))
    assert float(mse) == pytest.approx(np.mean((P - T) ** 2))
    assert float(mae) == pytest.approx(np.mean(np.abs(P - T)))
    d = np.abs(np.array([0.0, 0.5, 3.0]))
    expected = np.mean(np.where(d <= 1, 0.5 * d**2, d - 0.5))
    assert float(huber) == pytest.approx(expected)


def test_binary_crossentropy_from_probabilities_and_logits_agree():
    expected = -np.mean(T * np.log(P) + (1 - T) * np.log(1 - P))
    logits = np.log(P / (1 - P))
    from_probs, from_logits = jax.jit(
        lambda p, z: (
            fn.binary_crossentropy(p, T),
            fn.binary_crossentropy(z, T, from_logits=True),
        )
    )(P, logits)
    assert float(from_probs) == pytest.approx(expected, rel=1e-5)
    assert float(from_logits) == pytest.approx(expected, rel=1e-5)


def test_categorical_losses_known_answers():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype=np.float32)
    labels = np.array([0, 2])  # host labels: the sparse loss validates them while tracing
    expected = -np.mean(np.log([0.7, 0.8]))
    onehot = np.eye(3, dtype=np.float32)[labels]
    logits = np.log(probs)
    answers = jax.jit(
        lambda probs, logits: (
            fn.categorical_crossentropy(probs, onehot),
            fn.sparse_categorical_crossentropy(probs, labels),
            fn.categorical_crossentropy(logits, onehot, from_logits=True),
            fn.sparse_categorical_crossentropy(logits, labels, from_logits=True),
        )
    )(probs, logits)
    for answer in answers:
        assert float(answer) == pytest.approx(expected, rel=1e-5)


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


def test_loss_gradients_match_numerical_in_float64():
    # Every loss's second-order check runs in one compiled program.
    cases = {}
    with jax.enable_x64(True):
        for name, (loss, make_targets) in LOSSES.items():
            # Host targets: the losses validate concrete targets while tracing.
            targets = np.asarray(make_targets(jax.random.key(1)), np.float64)
            predictions = jax.random.uniform(
                jax.random.key(2), targets.shape, jnp.float64, 0.2, 0.8
            )
            cases[name] = (functools.partial(loss, targets=targets), (predictions,))
        logits = jax.random.normal(jax.random.key(0), (5, 4), jnp.float64)
        labels = np.array([0, 3, 1, 1, 2])
        cases["sparse_cce_logits"] = (
            lambda z: fn.sparse_categorical_crossentropy(z, labels, from_logits=True),
            (logits,),
        )
        check_many_grads_rev(cases, order=2)


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
    labels, onehot = np.array([1, 1, 1]), np.eye(2, dtype=np.float32)[[1, 0, 1]]
    accuracy, onehot_accuracy, binary, binary_07 = jax.jit(
        lambda s, p: (
            fn.accuracy(s, labels),
            fn.accuracy(s, onehot),
            fn.binary_accuracy(p, T),
            fn.binary_accuracy(p, T, threshold=0.7),
        )
    )(scores, P)
    assert float(accuracy) == pytest.approx(2 / 3)
    assert float(onehot_accuracy) == 1.0
    assert float(binary) == 1.0
    assert float(binary_07) == pytest.approx(2 / 3)


def test_metric_errors():
    with pytest.raises(ValueError, match=r"^accuracy: targets must be labels of shape \(3,\)"):
        fn.accuracy(jnp.ones((3, 2)), jnp.ones((2,), jnp.int32))
    with pytest.raises(
        ValueError, match=r"^binary_accuracy: targets must have the predictions' shape"
    ):
        fn.binary_accuracy(P, T[:, 0])
