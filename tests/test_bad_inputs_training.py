"""Bad (and Keras-style) arguments at the training entry points.

fit, fit_many, predict, evaluate, make_train_step and init_train_state: each
mistake is a funcnet error naming the argument and the fix, or is accepted
and gives the same result as the spelled-out form (issue 12).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import funcnet as fn
from funcnet._src.training.arguments import OPTIMIZERS

X = np.linspace(-1, 1, 16, dtype=np.float32).reshape(8, 2)
Y = X[:, :1] - 2 * X[:, 1:]
NET = fn.serial(fn.Dense(4), fn.Relu(), fn.Dense(1))
OPT = optax.sgd(0.1)
_, PARAMS, STATE = NET.init(jax.random.key(0), (None, 2))


def train(net=NET, x=X, y=Y, **options):
    options = {"loss": "mse", "optimizer": OPT, "verbose": 0, "key": 0, **options}
    return fn.fit(net, x, y, **options)


def same_tree(a, b) -> bool:
    return all(jax.tree.leaves(jax.tree.map(lambda p, q: bool(jnp.allclose(p, q)), a, b)))


# --- optimizer ---------------------------------------------------------------


def test_an_optimizer_name_trains_as_the_optax_optimizer_with_keras_defaults():
    by_name = train(optimizer="adam", epochs=2)
    spelled = train(optimizer=optax.adam(0.001, eps=1e-7), epochs=2)
    assert same_tree(by_name.params, spelled.params)
    assert not same_tree(by_name.params, train(optimizer=optax.adam(0.01), epochs=2).params)
    sgd = train(optimizer="SGD", epochs=2)  # case-insensitive, as Keras's get
    assert same_tree(sgd.params, train(optimizer=optax.sgd(0.01), epochs=2).params)


def test_every_optimizer_name_builds_an_optimizer_a_train_step_can_trace():
    # Traced, not compiled (one compile per optimizer is the slow test below).
    for name in sorted(OPTIMIZERS):

        def one_step(x, y, name=name):
            ts = fn.init_train_state(NET, name, (None, 2), key=0)
            return fn.make_train_step(NET, "mse", name)(ts, (x, y))

        ts, loss = jax.eval_shape(one_step, X, Y)
        assert (ts.step.shape, ts.step.dtype, loss.shape) == ((), jnp.int32, ()), name
        assert jax.tree.map(lambda a: a.shape, ts.params) == jax.tree.map(jnp.shape, PARAMS)


# Each name's step run once: adam by default, the further optimizers as slow tests.
@pytest.mark.parametrize(
    "name",
    [n if n == "adam" else pytest.param(n, marks=pytest.mark.slow) for n in sorted(OPTIMIZERS)],
)
def test_every_optimizer_name_builds_an_optimizer(name):
    ts = fn.init_train_state(NET, name, (None, 2), key=0)
    step = fn.make_train_step(NET, "mse", name)
    ts, loss = step(ts, (jnp.asarray(X), jnp.asarray(Y)))
    assert int(ts.step) == 1 and np.isfinite(float(loss))


def test_the_optimizer_defaults_are_keras_defaults():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras")
    classes = {"sgd": "SGD", "rmsprop": "RMSprop", "adamw": "AdamW"}
    for name, (_, defaults) in OPTIMIZERS.items():
        optimizer = getattr(keras.optimizers, classes.get(name, name.capitalize()))()
        assert defaults["learning_rate"] == pytest.approx(float(optimizer.learning_rate)), name
        config = optimizer.get_config()
        if "eps" in defaults:
            assert defaults["eps"] == pytest.approx(config["epsilon"]), name
        if name == "adamw":
            assert defaults["weight_decay"] == pytest.approx(config["weight_decay"])
        if name == "adadelta":
            assert defaults["rho"] == pytest.approx(config["rho"])


def test_an_unknown_optimizer_name_lists_the_valid_ones():
    with pytest.raises(
        ValueError, match=r"^fit: unknown optimizer 'adamm'\. Valid names: adadelta"
    ):
        train(optimizer="adamm")


@pytest.mark.parametrize("where", ["fit", "fit_many", "init_train_state", "make_train_step"])
def test_an_optimizer_factory_not_called_says_to_call_it(where):
    calls = {
        "fit": lambda: train(optimizer=optax.adam),
        "fit_many": lambda: fn.fit_many(NET, X, Y, loss="mse", optimizer=optax.adam, seeds=2),
        "init_train_state": lambda: fn.init_train_state(NET, optax.adam, (None, 2)),
        "make_train_step": lambda: fn.make_train_step(NET, "mse", optax.adam),
    }
    with pytest.raises(
        TypeError,
        match=rf"^{where}: optimizer must be an optax optimizer, got the function optax\.adam "
        r"itself\. Call it with a learning rate, e\.g\. optimizer=optax\.adam\(1e-3\)",
    ):
        calls[where]()


def test_something_not_an_optimizer_is_refused():
    with pytest.raises(TypeError, match=r"^fit: optimizer must be an optax optimizer .* got float"):
        train(optimizer=0.01)


# --- net ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda net: train(net=net),
        lambda net: fn.fit_many(net, X, Y, loss="mse", optimizer=OPT, seeds=2),
        lambda net: fn.predict(net, PARAMS, STATE, X),
        lambda net: fn.evaluate(net, PARAMS, STATE, X, Y, loss="mse"),
        lambda net: fn.init_train_state(net, OPT, (None, 2)),
        lambda net: fn.make_train_step(net, "mse", OPT),
    ],
)
def test_a_layer_constructor_instead_of_a_layer_says_to_call_it(call):
    with pytest.raises(
        TypeError,
        match=r"^\w+: net must be a funcnet Layer, got the function fn\.Dense itself\. Call it",
    ):
        call(fn.Dense)


def test_a_non_layer_net_names_what_is_expected():
    with pytest.raises(TypeError, match=r"^fit: net must be a funcnet Layer \(e\.g\. fn\.Dense"):
        train(net=[fn.Dense(1)])
    with pytest.raises(TypeError, match=r"^fit: net must be a funcnet Layer, got the class"):
        train(net=int)


# --- callbacks, steps_per_epoch, batch_size ------------------------------------


def test_a_single_callback_is_a_list_of_one():
    stopper = fn.EarlyStopping(monitor="loss", patience=1)
    result = train(optimizer=optax.sgd(0.0), epochs=10, shuffle=False, callbacks=stopper)
    assert len(result.history["loss"]) < 10  # no improvement: stopped after patience
    assert result.stop_reason is not None
    seen = []
    train(epochs=2, callbacks=lambda epoch, logs: seen.append(epoch))
    assert seen == [0, 1]


def test_callbacks_that_are_not_callbacks_are_refused():
    with pytest.raises(TypeError, match=r"^fit: callbacks must be a list of callbacks, .*got int"):
        train(callbacks=3)


@pytest.mark.parametrize("steps", [-1, 0, 1.5, "2"])
def test_steps_per_epoch_must_be_a_positive_integer(steps):
    with pytest.raises(
        ValueError, match=r"^fit: steps_per_epoch must be a positive integer or None, got"
    ):
        fn.fit(NET, [(X, Y)], loss="mse", optimizer=OPT, verbose=0, steps_per_epoch=steps)


@pytest.mark.parametrize("size", [0, -2, "a", 2.0, True])
def test_predict_and_evaluate_refuse_a_bad_batch_size(size):
    with pytest.raises(ValueError, match=r"^predict: batch_size must be a positive integer"):
        fn.predict(NET, PARAMS, STATE, X, batch_size=size)
    with pytest.raises(ValueError, match=r"^evaluate: batch_size must be a positive integer"):
        fn.evaluate(NET, PARAMS, STATE, X, Y, loss="mse", batch_size=size)


def test_predict_batch_sizes_give_the_same_outputs():
    whole = fn.predict(NET, PARAMS, STATE, X)
    np.testing.assert_allclose(fn.predict(NET, PARAMS, STATE, X, batch_size=3), whole, rtol=1e-6)
    np.testing.assert_allclose(fn.predict(NET, PARAMS, STATE, X, batch_size=100), whole)


# --- x and y -----------------------------------------------------------------


def test_string_inputs_name_the_argument_and_dtype():
    words = np.array([["a", "b"]] * 8)
    with pytest.raises(TypeError, match=r"^fit: x must hold numbers, got an array of dtype <U1"):
        train(x=words)
    with pytest.raises(TypeError, match=r"^fit: y must hold numbers, got an array of dtype object"):
        train(y=np.array([["a"]] * 8, dtype=object))
    with pytest.raises(TypeError, match=r"^predict: x must hold numbers, got an array of dtype"):
        fn.predict(NET, PARAMS, STATE, words)
    with pytest.raises(TypeError, match=r"^evaluate: x must hold numbers"):
        fn.evaluate(NET, PARAMS, STATE, words, Y, loss="mse")
    with pytest.raises(TypeError, match=r"validation_data's x must hold numbers"):
        train(validation_data=(words, Y))


def test_an_object_array_of_numbers_is_accepted():
    objects = X.astype(object)
    np.testing.assert_allclose(
        fn.predict(NET, PARAMS, STATE, objects), fn.predict(NET, PARAMS, STATE, X), rtol=1e-6
    )


def test_nested_lists_are_arrays():
    x = [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]
    y = [[1.0], [1.0], [0.0], [0.0]]
    from_lists = train(x=x, y=y, epochs=3)
    from_arrays = train(x=np.array(x, np.float32), y=np.array(y, np.float32), epochs=3)
    assert same_tree(from_lists.params, from_arrays.params)
    np.testing.assert_allclose(
        fn.predict(NET, from_lists.params, from_lists.state, x),
        fn.predict(NET, from_arrays.params, from_arrays.state, np.array(x, np.float32)),
    )
    assert fn.evaluate(NET, from_lists.params, from_lists.state, x, y, loss="mse") == pytest.approx(
        fn.evaluate(NET, from_lists.params, from_lists.state, np.array(x), np.array(y), loss="mse")
    )
    many = fn.fit_many(NET, x, y, loss="mse", optimizer=OPT, seeds=2)
    assert many.params[0]["w"].shape == (2, 2, 4)


# --- metrics ------------------------------------------------------------------


def test_a_single_metric_is_a_list_of_one():
    assert set(train(metrics="mae").history) == {"loss", "mae"}
    assert set(train(metrics=fn.mae).history) == {"loss", "mae"}
    logs = fn.evaluate(NET, PARAMS, STATE, X, Y, loss="mse", metrics="mae")
    assert set(logs) == {"loss", "mae"}
    many = fn.fit_many(NET, X, Y, loss="mse", optimizer=OPT, seeds=2, metrics="mae")
    assert set(many.history) == {"loss", "mae"}


def test_metrics_that_are_not_metrics_are_refused():
    with pytest.raises(TypeError, match=r"^fit: metrics must be a list of metric names"):
        train(metrics=3)


# --- losses and validation data --------------------------------------------------


def test_integer_labels_with_categorical_crossentropy_point_to_the_sparse_loss():
    classifier = fn.serial(fn.Dense(3), fn.Softmax())
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    message = r"got integer class labels of shape \(8,\)\. For integer labels use loss='sparse_categorical_crossentropy'"
    with pytest.raises(ValueError, match=message):
        train(net=classifier, y=labels, loss="categorical_crossentropy")
    with pytest.raises(ValueError, match=r"^categorical_crossentropy: targets must be one-hot"):
        fn.categorical_crossentropy(jnp.full((8, 3), 1 / 3), labels)
    # One-hot integer targets are still fine.
    one_hot = np.eye(3, dtype=np.int32)[labels]
    assert np.isfinite(float(fn.categorical_crossentropy(jnp.full((8, 3), 1 / 3), one_hot)))


def test_validation_data_of_the_wrong_width_names_validation_data():
    wide = np.zeros((4, 5), np.float32)
    with pytest.raises(
        ValueError, match=r"^fit: validation_data does not fit the model: serial\[0\]\.Dense"
    ):
        train(validation_data=(wide, Y[:4]))
    with pytest.raises(ValueError, match=r"^fit: validation_data does not fit the model: mse"):
        train(validation_data=(X[:4], np.zeros((4, 2), np.float32)))


# --- keys ---------------------------------------------------------------------


def test_integer_seeds_and_keys_are_the_same_everywhere():
    by_int = fn.init_train_state(NET, OPT, (None, 2), key=5)
    by_key = fn.init_train_state(NET, OPT, (None, 2), key=jax.random.key(5))
    by_raw = fn.init_train_state(NET, OPT, (None, 2), key=jax.random.PRNGKey(5))
    assert same_tree(by_int.params, by_key.params) and same_tree(by_int.params, by_raw.params)
    ints = fn.fit_many(NET, X, Y, loss="mse", optimizer=OPT, seeds=[3, 4])
    keys = fn.fit_many(
        NET, X, Y, loss="mse", optimizer=OPT, seeds=[jax.random.key(3), jax.random.key(4)]
    )
    mixed = fn.fit_many(
        NET, X, Y, loss="mse", optimizer=OPT, seeds=[np.int64(3), jax.random.PRNGKey(4)]
    )
    assert same_tree(ints.params, keys.params) and same_tree(ints.params, mixed.params)
    assert same_tree(ints.model(0).params, train(key=3, epochs=1).params)


@pytest.mark.parametrize("bad", ["seed", 1.5, jnp.zeros(3), jax.random.split(jax.random.key(0), 2)])
def test_a_bad_key_gets_one_message_everywhere(bad):
    tail = r"must be a jax\.random\.key\(\.\.\.\) or an integer seed, got"
    with pytest.raises(TypeError, match=rf"^fit: key {tail}"):
        train(key=bad)
    with pytest.raises(TypeError, match=rf"^init_train_state: key {tail}"):
        fn.init_train_state(NET, OPT, (None, 2), key=bad)
    with pytest.raises(TypeError, match=rf"^fit_many: seeds\[1\] {tail}"):
        fn.fit_many(NET, X, Y, loss="mse", optimizer=OPT, seeds=[0, bad])


@pytest.mark.parametrize("seeds", ["01", 1.5, None])
def test_seeds_that_are_neither_a_count_nor_a_list_are_refused(seeds):
    with pytest.raises(TypeError, match=r"^fit_many: seeds must be the number of models"):
        fn.fit_many(NET, X, Y, loss="mse", optimizer=OPT, seeds=seeds)


def test_no_seeds_means_no_models():
    for seeds in (0, -1, []):
        with pytest.raises(ValueError, match=r"^fit_many: seeds must name at least one model"):
            fn.fit_many(NET, X, Y, loss="mse", optimizer=OPT, seeds=seeds)


def test_bfloat16_and_float8_arrays_are_numbers_but_records_are_not():
    import ml_dtypes

    from funcnet._src.training.data import as_arrays

    for dtype in (ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn):
        assert as_arrays(np.ones((2, 2), dtype), "fit", "x").dtype == dtype
    records = np.zeros(2, dtype=[("a", np.float32), ("b", np.int32)])
    with pytest.raises(
        TypeError, match=r"^fit: x must hold numbers, got an array of dtype .* \(records\)"
    ):
        as_arrays(records, "fit", "x")
