"""The train step and fit/evaluate/predict."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import funcnet as fn

XS = np.array([[-1.0], [0.0], [1.0], [2.0], [3.0], [4.0]], dtype=np.float32)
YS = 2 * XS - 1


def test_train_step_is_one_sgd_update():
    net, opt = fn.Dense(1), optax.sgd(0.1)
    ts = fn.init_train_state(net, opt, (None, 1), key=0)
    w, b = float(ts.params["w"][0, 0]), float(ts.params["b"][0])
    step = fn.make_train_step(net, fn.mse, opt)
    new, loss = step(ts, (XS, YS))
    residual = w * XS + b - YS
    assert float(loss) == pytest.approx(np.mean(residual**2), rel=1e-5)
    assert float(new.params["w"][0, 0]) == pytest.approx(
        w - 0.1 * np.mean(2 * residual * XS), rel=1e-5
    )
    assert float(new.params["b"][0]) == pytest.approx(b - 0.1 * np.mean(2 * residual), rel=1e-5)
    assert int(new.step) == 1


def test_second_step_does_not_recompile():
    traces = []

    def counting_mse(predictions, targets):
        traces.append(1)
        return fn.mse(predictions, targets)

    net, opt = fn.serial(fn.Dense(4, "tanh"), fn.Dense(1)), optax.adam(1e-2)
    ts = fn.init_train_state(net, opt, (None, 1), key=0)
    step = fn.make_train_step(net, counting_mse, opt)
    ts, first = step(ts, (XS, YS))
    ts, _ = step(ts, (XS, YS))
    ts, third = step(ts, (XS, YS))
    assert len(traces) == 1
    assert step._cache_size() == 1
    assert float(third) < float(first)


def test_fit_learns_hello_world():
    result = fn.fit(
        fn.Dense(1), XS, YS, loss="mse", optimizer=optax.sgd(0.01), epochs=500, batch_size=6
    )
    prediction = fn.predict(fn.Dense(1), result.params, result.state, np.array([[10.0]]))
    assert float(prediction[0, 0]) == pytest.approx(19.0, abs=0.1)
    losses = result.history["loss"]
    assert len(losses) == 500 and losses[-1] < 1e-3 < losses[0]


def test_fit_uses_every_example_each_epoch_with_a_partial_last_batch():
    x = np.linspace(-1, 1, 10, dtype=np.float32)[:, None]
    result = fn.fit(
        fn.Dense(1), x, 3 * x, loss="mse", optimizer=optax.sgd(0.1), epochs=3, batch_size=4
    )
    assert int(result.train_state.step) == 3 * 3  # batches of 4, 4 and 2


def test_fit_epoch_loss_is_the_mean_over_examples():
    # With lr 0 the params never move, so the epoch loss is the full-data loss.
    x = np.linspace(-1, 1, 10, dtype=np.float32)[:, None]
    y = 3 * x + 1
    result = fn.fit(fn.Dense(1), x, y, loss="mse", optimizer=optax.sgd(0.0), epochs=1, batch_size=4)
    expected = fn.evaluate(fn.Dense(1), result.params, result.state, x, y, loss="mse")["loss"]
    assert result.history["loss"][0] == pytest.approx(expected, rel=1e-5)


def test_fit_is_deterministic_for_a_seed_and_differs_across_seeds():
    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    y = x.sum(axis=1, keepdims=True)
    net = fn.serial(fn.Dense(8, "relu"), fn.Dense(1))

    def run(seed):
        return fn.fit(
            net, x, y, loss="mse", optimizer=optax.adam(1e-2), epochs=3, batch_size=8, key=seed
        )

    a, b, c = run(3), run(3), run(4)
    jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
    assert a.history == b.history
    assert not np.array_equal(a.params[0]["w"], c.params[0]["w"])


def test_fit_continues_from_a_train_state():
    opt = optax.sgd(0.01)
    once = fn.fit(
        fn.Dense(1), XS, YS, loss="mse", optimizer=opt, epochs=20, batch_size=6, shuffle=False
    )
    half = fn.fit(
        fn.Dense(1), XS, YS, loss="mse", optimizer=opt, epochs=10, batch_size=6, shuffle=False
    )
    rest = fn.fit(
        fn.Dense(1), XS, YS, loss="mse", optimizer=opt, epochs=10, batch_size=6, shuffle=False,
        train_state=half.train_state,
    )  # fmt: skip
    np.testing.assert_allclose(rest.params["w"], once.params["w"], rtol=1e-6)
    assert int(rest.train_state.step) == 20


def test_fit_with_zero_epochs_returns_the_initial_params():
    result = fn.fit(fn.Dense(1), XS, YS, loss="mse", optimizer=optax.sgd(0.1), epochs=0, key=5)
    initial = fn.init_train_state(fn.Dense(1), optax.sgd(0.1), (None, 1), key=5)
    np.testing.assert_array_equal(result.params["w"], initial.params["w"])
    assert result.history == {"loss": []}


def test_fit_logs_metrics_and_learns_a_classifier():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2)).astype(np.float32)
    y = (x[:, :1] + x[:, 1:] > 0).astype(np.float32)
    net = fn.Dense(1, "sigmoid")
    result = fn.fit(
        net, x, y, loss="binary_crossentropy", optimizer=optax.sgd(0.5), epochs=30,
        batch_size=20, metrics=["binary_accuracy"],
    )  # fmt: skip
    assert len(result.history["binary_accuracy"]) == 30
    assert result.history["binary_accuracy"][-1] > 0.95
    scores = fn.evaluate(net, result.params, result.state, x, y, loss="binary_crossentropy",
                         metrics=[fn.binary_accuracy], batch_size=64)  # fmt: skip
    assert set(scores) == {"loss", "binary_accuracy"} and scores["binary_accuracy"] > 0.95


def test_fit_verbose_prints_one_line_per_epoch(capsys):
    fn.fit(fn.Dense(1), XS, YS, loss="mse", optimizer=optax.sgd(0.01), epochs=2, verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" - ")[0] for line in lines] == ["Epoch 1/2", "Epoch 2/2"]


def test_predict_in_batches_equals_one_batch():
    net = fn.serial(fn.Dense(3, "tanh"), fn.Dense(2))
    _, params, state = net.init(jax.random.key(0), (None, 4))
    x = np.random.default_rng(1).normal(size=(10, 4)).astype(np.float32)
    np.testing.assert_allclose(
        fn.predict(net, params, state, x, batch_size=3),
        fn.predict(net, params, state, x),
        atol=1e-6,
    )


def test_train_step_on_a_multi_output_model():
    trunk = fn.Dense(4, "tanh")
    net = fn.serial(trunk, lambda h: (h[:, :2], h[:, 2:]))
    opt = optax.sgd(0.1)
    ts = fn.init_train_state(net, opt, (None, 3), key=0)
    step = fn.make_train_step(net, fn.multi_loss([fn.mse, fn.mse]), opt)
    x = jnp.ones((5, 3))
    batch = (x, (jnp.zeros((5, 2)), jnp.ones((5, 2))))
    losses = []
    for _ in range(20):
        ts, loss = step(ts, batch)
        losses.append(float(loss))
    assert losses[-1] < losses[0]


# Bad input ---------------------------------------------------------------


def fit_hello(**kwargs):
    args = {"loss": "mse", "optimizer": optax.sgd(0.01), "epochs": 1, **kwargs}
    x, y = args.pop("x", XS), args.pop("y", YS)
    return fn.fit(args.pop("net", fn.Dense(1)), x, y, **args)


def test_fit_rejects_targets_of_another_shape():
    with pytest.raises(
        ValueError, match=r"^mse: targets must have the predictions' shape \(6, 1\), got \(6,\)"
    ):
        fit_hello(y=YS[:, 0])


def test_fit_rejects_different_numbers_of_examples():
    with pytest.raises(ValueError, match=r"^fit: x has 6 examples but y has 5; they must match"):
        fit_hello(y=YS[:5])


def test_fit_rejects_integer_inputs():
    with pytest.raises(
        fn.LayerTypeError, match=r"^Dense: expected floating-point input, got dtype int32"
    ):
        fit_hello(x=XS.astype(np.int32))


@pytest.mark.parametrize("batch_size", [0, -3, 2.5])
def test_fit_rejects_a_bad_batch_size(batch_size):
    with pytest.raises(ValueError, match=r"^fit: batch_size must be a positive integer"):
        fit_hello(batch_size=batch_size)


def test_fit_rejects_a_batch_larger_than_the_data_and_states_the_rule():
    with pytest.raises(
        ValueError,
        match=r"^fit: batch_size 7 is larger than the dataset \(6 examples\)\. "
        r"The rule: 1 <= batch_size <= number of examples",
    ):
        fit_hello(batch_size=7)


@pytest.mark.parametrize("epochs", [-1, 1.5])
def test_fit_rejects_bad_epochs(epochs):
    with pytest.raises(ValueError, match=r"^fit: epochs must be an integer >= 0"):
        fit_hello(epochs=epochs)


def test_fit_rejects_an_empty_dataset():
    with pytest.raises(ValueError, match=r"^fit: the dataset is empty"):
        fit_hello(x=XS[:0], y=YS[:0])


def test_fit_rejects_a_loss_that_is_not_a_scalar():
    with pytest.raises(
        ValueError,
        match=r"the loss must return a scalar .* got shape \(6, 1\)\. End it with jnp\.mean",
    ):
        fit_hello(loss=lambda p, t: (p - t) ** 2)


def test_fit_rejects_an_unknown_loss_name():
    with pytest.raises(ValueError, match=r"^unknown loss 'rmse'\. Valid names:"):
        fit_hello(loss="rmse")
