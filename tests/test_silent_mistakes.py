"""Results that used to be silently wrong: each is now right or a clear error (issue 12)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import funcnet as fn
from funcnet._src.metrics import get_metric

X = np.random.RandomState(0).randn(64, 4).astype(np.float32)
LABELS = (X[:, 0] > 0).astype(np.int32)
Y01 = LABELS[:, None].astype(np.float32)


def test_accuracy_by_name_reads_a_one_unit_output_as_binary():
    # A constant model: predicts 0.0 (class 0) for every example. With the
    # argmax over a size-1 axis, "accuracy" used to report 1.0 for any model.
    net = fn.serial(fn.Dense(1, w_init=jax.nn.initializers.zeros), fn.Sigmoid())
    result = fn.fit(
        net, X, Y01, loss="binary_crossentropy", optimizer=optax.sgd(0.0), metrics=["accuracy"],
        verbose=0, batch_size=64, shuffle=False,
    )  # fmt: skip
    # sigmoid(0) = 0.5 is not above 0.5: every prediction is 0, right for the zeros.
    assert result.history["accuracy"] == [pytest.approx(1 - Y01.mean())]
    scores = fn.evaluate(net, result.params, result.state, X, Y01, loss="mse", metrics=["accuracy"])
    assert scores["accuracy"] == pytest.approx(1 - Y01.mean())


def test_accuracy_by_name_follows_keras_for_sparse_and_one_hot_targets():
    _, accuracy = get_metric("accuracy")
    scores = jnp.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert float(accuracy(scores, jnp.array([1, 1, 1]))) == pytest.approx(2 / 3)
    assert float(accuracy(scores, jnp.array([[1], [1], [1]]))) == pytest.approx(2 / 3)
    assert float(accuracy(scores, jnp.eye(2)[jnp.array([1, 0, 1])])) == 1.0
    assert float(accuracy(jnp.array([0.2, 0.7]), jnp.array([0.0, 0.0]))) == 0.5


def test_categorical_accuracy_rejects_a_class_axis_of_size_one():
    with pytest.raises(
        ValueError,
        match=r"^accuracy: predictions of shape \(2, 1\) have a class axis of size 1, .* "
        r"use binary_accuracy",
    ):
        fn.accuracy(jnp.array([[0.2], [0.9]]), jnp.array([[1.0], [0.0]]))


def test_probability_loss_fed_logits_stops_with_from_logits_fix():
    with pytest.raises(
        ValueError,
        match=r"^fit: loss='sparse_categorical_crossentropy' expects probabilities \(after a "
        r"softmax\), .* outside \[0, 1\]: they look like logits\. Use "
        r"loss=fn\.losses\.get\('sparse_categorical_crossentropy', from_logits=True\)",
    ):
        fn.fit(fn.Dense(10), X, LABELS, loss="sparse_categorical_crossentropy",
               optimizer=optax.sgd(0.1), verbose=0)  # fmt: skip
    with pytest.raises(
        ValueError,
        match=r"^fit: loss='binary_crossentropy' expects probabilities \(after a sigmoid",
    ):
        fn.fit(fn.Dense(1), [(X, Y01)], loss="binary_crossentropy", optimizer=optax.sgd(0.1),
               verbose=0)  # fmt: skip


def test_categorical_loss_on_rows_that_do_not_sum_to_one_stops():
    net = fn.serial(fn.Dense(3), fn.Sigmoid())  # in [0, 1], but not a distribution
    with pytest.raises(ValueError, match=r"rows whose sums are up to .* away from 1: they look"):
        fn.fit(net, X, np.eye(3, dtype=np.float32)[LABELS], loss="categorical_crossentropy",
               optimizer=optax.sgd(0.1), verbose=0)  # fmt: skip


def test_from_logits_by_name_trains_and_shares_the_loss():
    loss = fn.losses.get("sparse_categorical_crossentropy", from_logits=True)
    assert loss is fn.losses.get("Sparse_Categorical_Crossentropy", from_logits=True)
    result = fn.fit(fn.Dense(2), X, LABELS, loss=loss, optimizer=optax.adam(0.05), epochs=20,
                    metrics=["accuracy"], verbose=0)  # fmt: skip
    assert result.history["accuracy"][-1] > 0.9
    # The probability losses with a softmax still train by name.
    net = fn.serial(fn.Dense(2), fn.Softmax())
    result = fn.fit(net, X, LABELS, loss="sparse_categorical_crossentropy",
                    optimizer=optax.adam(0.05), epochs=20, metrics=["accuracy"], verbose=0)  # fmt: skip
    assert result.history["accuracy"][-1] > 0.9


@pytest.mark.parametrize("from_logits", [False, True])
def test_binary_crossentropy_rejects_minus_one_labels_in_fit(from_logits):
    net = fn.serial(fn.Dense(1), fn.Sigmoid()) if not from_logits else fn.Dense(1)
    loss = fn.losses.get("binary_crossentropy", from_logits=from_logits)
    with pytest.raises(
        ValueError,
        match=r"^fit \(loss='binary_crossentropy'\): targets must be in \[0, 1\] .* from -1 to 1\. "
        r"For -1/\+1 labels use \(y \+ 1\) / 2\.",
    ):
        fn.fit(net, X, 2 * Y01 - 1, loss=loss, optimizer=optax.sgd(0.1), verbose=0)


def test_loss_value_errors_on_concrete_inputs():
    with pytest.raises(ValueError, match=r"^binary_crossentropy: targets must be in \[0, 1\]"):
        fn.binary_crossentropy(jnp.full(2, 0.5), jnp.array([-1.0, 1.0]))
    with pytest.raises(ValueError, match=r"^huber: delta must be a number > 0 .* got 0\."):
        fn.huber(jnp.zeros(2), jnp.zeros(2), delta=0)
    with pytest.raises(ValueError, match=r"^huber: delta must be a number > 0 .* got -1\.0\."):
        fn.losses.get("huber", delta=-1.0)(jnp.zeros(2), jnp.zeros(2))
    with pytest.raises(
        ValueError,
        match=r"^sparse_categorical_crossentropy: targets must be class labels in \[0, 3\), "
        r"got the label -1\.",
    ):
        fn.sparse_categorical_crossentropy(jnp.ones((2, 3)) / 3, jnp.array([0, -1]))
    # Traced inputs are not checked (their values are unknown), and do not fail.
    assert jnp.isfinite(jax.jit(fn.binary_crossentropy)(jnp.full(2, 0.5), jnp.ones(2)))


OVERFLOWS = [(jnp.float16, 1e4), (jnp.bfloat16, 1e38), (jnp.float32, 1e38)]


# Every dtype with the scan; the Python loop's check is the same for each
# dtype, so beyond float16 its cases are slow tests.
@pytest.mark.parametrize(
    ("loop", "dtype", "learning_rate"),
    [("scan", *case) for case in OVERFLOWS]
    + [("python", *OVERFLOWS[0])]
    + [pytest.param("python", *case, marks=pytest.mark.slow) for case in OVERFLOWS[1:]],
)
def test_an_update_that_overflows_keeps_the_last_finite_params(loop, dtype, learning_rate):
    # Finite loss and gradients; the update lr * grad overflows the params' dtype.
    net = fn.Dense(1, param_dtype=dtype)
    x = np.full((8, 2), 10.0, np.float32)
    y = np.full((8, 1), 100.0, np.float32)
    optimizer = optax.sgd(learning_rate)
    start = fn.init_train_state(net, optimizer, (None, 2), key=0)
    params = jax.tree.map(np.array, start.params)  # a copy: fit donates start's buffers
    result = fn.fit(net, x, y, loss="mse", optimizer=optimizer, epochs=2, batch_size=8,
                    loop=loop, train_state=start, verbose=0)  # fmt: skip
    assert result.nonfinite == fn.callbacks.NonFinite(epoch=0, step=0, what="update")
    assert result.stop_reason.startswith("TerminateOnNaN: non-finite update at epoch 1, step 1")
    for kept, initial in zip(jax.tree.leaves(result.params), jax.tree.leaves(params)):
        assert kept.dtype == dtype
        np.testing.assert_array_equal(np.asarray(kept, np.float32), np.asarray(initial, np.float32))


def test_skip_mode_skips_an_update_that_overflows():
    net = fn.Dense(1, param_dtype=jnp.float16)
    x = np.full((8, 2), 10.0, np.float32)
    y = np.full((8, 1), 100.0, np.float32)
    result = fn.fit(net, x, y, loss="mse", optimizer=optax.sgd(1e4), epochs=2, batch_size=8,
                    on_nonfinite="skip", verbose=0)  # fmt: skip
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(result.params))
    assert int(result.train_state.step) == 0
