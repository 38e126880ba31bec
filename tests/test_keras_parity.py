"""funcnet's Keras-named layers and activations against Keras 3 itself (docs/keras.md).

Each layer with a Keras twin gets the twin's weights copied across and the
same input, and must give the same output within float32 tolerance; each
default that docs/keras.md calls Keras's is read from Keras programmatically
(a layer's config or a function's signature) and compared with funcnet's.
Keras runs on its JAX backend; the module is skipped where Keras 3 is not
installed (``pip install -e ".[keras]"``; the test extra includes it).
"""

from __future__ import annotations

import functools
import inspect
import os

# Keras picks its backend once, on first import.
os.environ["KERAS_BACKEND"] = "jax"

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet as fn

keras = pytest.importorskip(
    "keras",
    minversion="3.0",
    reason="Keras 3 is not installed: pip install -e '.[keras]' to compare with Keras",
)
if keras.backend.backend() != "jax":
    pytest.skip(
        f"Keras was imported earlier on the {keras.backend.backend()!r} backend; these tests "
        "need KERAS_BACKEND=jax set before Keras is first imported",
        allow_module_level=True,
    )

TOL = {"rtol": 1e-5, "atol": 1e-5}


@pytest.fixture(autouse=True)
def _keras_broadcasts():
    # conftest.py makes implicit rank promotion an error for funcnet; Keras relies on it
    # (in its initializers and layers), so allow it here.
    with jax.numpy_rank_promotion("allow"):
        yield


def keras_call(layer, x, **kwargs):
    return np.asarray(layer(x, **kwargs))


def funcnet_call(layer, params, state, x, **kwargs):
    return np.asarray(layer.apply(params, state, jnp.asarray(x), **kwargs)[0])


def ours_and_keras(layer, params, state, twin, x, **keras_kwargs):
    """funcnet's output and its Keras twin's on x, computed in one compiled program
    (eagerly each op would compile a program of its own)."""

    def both(params, state, x):
        return layer.apply(params, state, x)[0], twin(x, **keras_kwargs)

    return jax.device_get(jax.jit(both)(params, state, jnp.asarray(x)))


def data(*shape, seed=0, scale=1.0, shift=0.0):
    return (np.random.default_rng(seed).normal(size=shape) * scale + shift).astype(np.float32)


def default(function, argument):
    return inspect.signature(function).parameters[argument].default


# ----------------------------------------------------------------------------- defaults

# (funcnet function, its argument, the Keras twin built with its defaults, Keras's config key)
LAYER_DEFAULTS = [
    (fn.LayerNorm, "epsilon", lambda: keras.layers.LayerNormalization(), "epsilon"),
    (fn.GroupNorm, "epsilon", lambda: keras.layers.GroupNormalization(), "epsilon"),
    (fn.GroupNorm, "num_groups", lambda: keras.layers.GroupNormalization(), "groups"),
    (fn.BatchNorm, "epsilon", lambda: keras.layers.BatchNormalization(), "epsilon"),
    (fn.BatchNorm, "momentum", lambda: keras.layers.BatchNormalization(), "momentum"),
    (fn.BatchNorm, "axis", lambda: keras.layers.BatchNormalization(), "axis"),
    (fn.RMSNorm, "epsilon", lambda: keras.layers.RMSNormalization(), "epsilon"),
    (fn.LeakyRelu, "negative_slope", lambda: keras.layers.LeakyReLU(), "negative_slope"),
    (fn.Elu, "alpha", lambda: keras.layers.ELU(), "alpha"),
    (fn.Softmax, "axis", lambda: keras.layers.Softmax(), "axis"),
    (fn.Dense, "use_bias", lambda: keras.layers.Dense(1), "use_bias"),
    (fn.Dense, "activation", lambda: keras.layers.Dense(1), "activation"),
    (fn.Conv, "strides", lambda: keras.layers.Conv1D(1, 1), "strides"),
    (fn.Conv, "use_bias", lambda: keras.layers.Conv2D(1, 1), "use_bias"),
    (fn.MaxPool, "strides", lambda: keras.layers.MaxPooling2D(), "strides"),
    (fn.MaxPool, "padding", lambda: keras.layers.MaxPooling2D(), "padding"),
    (fn.AvgPool, "strides", lambda: keras.layers.AveragePooling2D(2), "strides"),
    (fn.AvgPool, "padding", lambda: keras.layers.AveragePooling2D(2), "padding"),
    (fn.SimpleRNN, "activation", lambda: keras.layers.SimpleRNN(1), "activation"),
    (fn.LSTM, "activation", lambda: keras.layers.LSTM(1), "activation"),
    (fn.LSTM, "recurrent_activation", lambda: keras.layers.LSTM(1), "recurrent_activation"),
    (fn.LSTM, "unit_forget_bias", lambda: keras.layers.LSTM(1), "unit_forget_bias"),
    (fn.LSTM, "return_sequences", lambda: keras.layers.LSTM(1), "return_sequences"),
    (fn.LSTM, "return_state", lambda: keras.layers.LSTM(1), "return_state"),
    (fn.GRU, "activation", lambda: keras.layers.GRU(1), "activation"),
    (fn.GRU, "recurrent_activation", lambda: keras.layers.GRU(1), "recurrent_activation"),
    (fn.LSTM, "dropout", lambda: keras.layers.LSTM(1), "dropout"),
    (fn.GRU, "recurrent_dropout", lambda: keras.layers.GRU(1), "recurrent_dropout"),
    (fn.SimpleRNN, "go_backwards", lambda: keras.layers.SimpleRNN(1), "go_backwards"),
    (fn.MultiHeadAttention, "use_bias", lambda: keras.layers.MultiHeadAttention(1, 1), "use_bias"),
    (
        fn.MultiHeadAttention,
        "attention_axes",
        lambda: keras.layers.MultiHeadAttention(1, 1),
        "attention_axes",
    ),
    (
        fn.Bidirectional,
        "merge",
        lambda: keras.layers.Bidirectional(keras.layers.LSTM(1)),
        "merge_mode",
    ),
]


def comparable(value):
    """A default as both sides spell it: "VALID" and "valid", None and "linear", 1 and (1,)."""
    if isinstance(value, str):
        return "linear" if value.lower() in ("linear", "identity") else value.lower()
    if value is None:
        return "linear"
    if isinstance(value, (tuple, list)) and len(set(value)) == 1:
        return comparable(value[0])
    return value


@pytest.mark.parametrize(
    ("function", "argument", "twin", "key"),
    LAYER_DEFAULTS,
    ids=[f"{f.__name__}.{a}" for f, a, _, _ in LAYER_DEFAULTS],
)
def test_layer_default_is_keras(function, argument, twin, key):
    ours = default(function, argument)
    theirs = twin().get_config()[key]
    if function in (fn.MaxPool, fn.AvgPool) and argument == "strides":
        # Keras's strides=None means "the pool size", as funcnet's does.
        assert ours is None and theirs in (None, (2, 2), [2, 2])
        return
    assert comparable(ours) == comparable(theirs), (function.__name__, argument, ours, theirs)


def test_activation_function_defaults_are_keras():
    assert default(fn.Gelu, "approximate") is default(keras.activations.gelu, "approximate")
    x = jnp.array([-1.0])
    slope = default(keras.activations.leaky_relu, "negative_slope")
    got = funcnet_call(fn.Activation("leaky_relu"), {}, {}, x)
    np.testing.assert_allclose(got, [-slope], rtol=1e-6)


# ----------------------------------------------------------------------------- activations

KERAS_ACTIVATION_NAMES = sorted(
    name for name in fn.ACTIVATIONS if hasattr(keras.activations, name) and name != "identity"
)


def test_most_funcnet_activation_names_are_keras_names():
    assert len(KERAS_ACTIVATION_NAMES) >= len(fn.ACTIVATIONS) - 2, set(fn.ACTIVATIONS) - set(
        KERAS_ACTIVATION_NAMES
    )


ACTIVATION_X = np.concatenate([np.linspace(-6, 6, 49, dtype=np.float32), data(15, scale=3)])[
    None, :
]


@pytest.fixture(scope="module")
def activation_outputs():
    """Per name: funcnet's activation, Keras's, and funcnet's Dense(activation=name) on the
    identity weights, all computed in one compiled program (one compilation, not 3 per name)."""

    def every_activation(x):
        outputs = {}
        for name in KERAS_ACTIVATION_NAMES:
            dense = fn.Dense(x.shape[1], activation=name)
            _, _, state = dense.init(jax.random.key(0), x.shape)
            params = {"w": jnp.eye(x.shape[1]), "b": jnp.zeros(x.shape[1])}
            outputs[name] = (
                fn.Activation(name).apply({}, {}, x)[0],
                keras.layers.Activation(name)(x),
                dense.apply(params, state, x)[0],
            )
        return outputs

    with jax.numpy_rank_promotion("allow"):
        return jax.device_get(jax.jit(every_activation)(jnp.asarray(ACTIVATION_X)))


@pytest.mark.parametrize("name", KERAS_ACTIVATION_NAMES)
def test_activation_string_computes_what_keras_computes(name, activation_outputs):
    ours, theirs, dense_ours = activation_outputs[name]
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(dense_ours, theirs, **TOL)


ACTIVATION_LAYERS = {
    "Relu": (fn.Relu(), lambda: keras.layers.ReLU()),
    "LeakyRelu": (fn.LeakyRelu(), lambda: keras.layers.LeakyReLU()),
    "LeakyRelu(0.1)": (fn.LeakyRelu(0.1), lambda: keras.layers.LeakyReLU(0.1)),
    "Elu": (fn.Elu(), lambda: keras.layers.ELU()),
    "Softmax": (fn.Softmax(), lambda: keras.layers.Softmax()),
    "Softmax(axis=1)": (fn.Softmax(axis=1), lambda: keras.layers.Softmax(axis=1)),
    "Gelu": (fn.Gelu(), lambda: keras.activations.gelu),
    "Gelu(approximate=True)": (
        fn.Gelu(approximate=True),
        lambda: lambda x: keras.activations.gelu(x, approximate=True),
    ),
    "Sigmoid": (fn.Sigmoid(), lambda: keras.activations.sigmoid),
    "Tanh": (fn.Tanh(), lambda: keras.activations.tanh),
    "Silu": (fn.Silu(), lambda: keras.activations.silu),
    "Softplus": (fn.Softplus(), lambda: keras.activations.softplus),
    "LogSoftmax": (fn.LogSoftmax(), lambda: keras.activations.log_softmax),
}


@pytest.fixture(scope="module")
def activation_layer_outputs():
    """Per case: funcnet's layer and Keras's twin on the same input, in one compiled program."""
    x = data(3, 4, 5, scale=3)

    def every_layer(x):
        return {
            case: (ours.apply({}, {}, x)[0], theirs()(x))
            for case, (ours, theirs) in ACTIVATION_LAYERS.items()
        }

    with jax.numpy_rank_promotion("allow"):
        return jax.device_get(jax.jit(every_layer)(jnp.asarray(x)))


@pytest.mark.parametrize("case", sorted(ACTIVATION_LAYERS))
def test_activation_layer_computes_what_keras_computes(case, activation_layer_outputs):
    ours, expected = activation_layer_outputs[case]
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- layers with weights


def init(layer, shape):
    # Jitted: one compiled program instead of one per eager initializer op.
    return jax.jit(lambda key: layer.init(key, shape)[1:])(jax.random.key(0))


@functools.partial(jax.jit, static_argnums=1)
def randomise(tree, seed=1):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(
        treedef,
        [0.5 * jax.random.normal(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves)],
    )


def test_dense():
    x = data(4, 6)
    ours = fn.Dense(5, activation="gelu")
    params, state = init(ours, (None, 6))
    params = randomise(params)
    twin = keras.layers.Dense(5, activation="gelu")
    twin.build((None, 6))
    twin.set_weights([np.asarray(params["w"]), np.asarray(params["b"])])
    np.testing.assert_allclose(*ours_and_keras(ours, params, state, twin, x), **TOL)


@pytest.mark.parametrize(
    ("kernel", "strides", "padding", "groups", "spatial"),
    [
        ((3, 3), 1, "VALID", 1, (9, 9)),
        pytest.param((3, 3), 2, "VALID", 1, (9, 9), marks=pytest.mark.slow),
        pytest.param((3, 3), 1, "SAME", 1, (8, 8), marks=pytest.mark.slow),
        ((3, 3), 2, "SAME", 1, (8, 8)),  # SAME's uneven padding goes at the end in both
        ((2, 4), (2, 1), "SAME", 2, (7, 8)),
        pytest.param((3,), 1, "VALID", 1, (10,), marks=pytest.mark.slow),
        ((3,), 2, "SAME", 1, (10,)),
    ],
)
def test_conv(kernel, strides, padding, groups, spatial):
    x = data(2, *spatial, 4)
    ours = fn.Conv(6, kernel, strides, padding, feature_group_count=groups)
    params, state = init(ours, (None, *spatial, 4))
    params = randomise(params)
    twin = (keras.layers.Conv2D if len(kernel) == 2 else keras.layers.Conv1D)(
        6, kernel, strides=strides, padding=padding.lower(), groups=groups
    )
    twin.build((None, *spatial, 4))
    twin.set_weights([np.asarray(params["w"]), np.asarray(params["b"])])
    np.testing.assert_allclose(*ours_and_keras(ours, params, state, twin, x), **TOL)


def copy_norm(ours_params, twin):
    twin.set_weights([np.asarray(ours_params["scale"]), np.asarray(ours_params["bias"])])


def test_layer_normalization_defaults_on_low_variance_input():
    # Where the epsilons differed (1e-6 against 1e-3), outputs were up to 0.57 apart.
    x = data(4, 3, 8, scale=0.02)
    ours = fn.LayerNorm()
    params, state = init(ours, (None, 3, 8))
    params = randomise(params)
    twin = keras.layers.LayerNormalization()
    twin.build((None, 3, 8))
    copy_norm(params, twin)
    np.testing.assert_allclose(*ours_and_keras(ours, params, state, twin, x), **TOL)


def test_group_normalization_defaults():
    x = data(2, 5, 5, 64, scale=0.05, shift=1.0)
    ours = fn.GroupNorm()
    params, state = init(ours, (None, 5, 5, 64))
    params = randomise(params)
    twin = keras.layers.GroupNormalization()
    twin.build((None, 5, 5, 64))
    copy_norm(params, twin)
    np.testing.assert_allclose(*ours_and_keras(ours, params, state, twin, x), **TOL)


def test_rms_normalization():
    x = data(3, 8, scale=0.02)
    ours = fn.RMSNorm()
    params, state = init(ours, (None, 8))
    params = randomise(params)
    twin = keras.layers.RMSNormalization()
    twin.build((None, 8))
    twin.set_weights([np.asarray(params["scale"])])
    np.testing.assert_allclose(*ours_and_keras(ours, params, state, twin, x), **TOL)


def batchnorm_pair(axis, shape):
    ours = fn.BatchNorm(axis=axis)
    params, state = init(ours, (None, *shape))
    params = randomise(params)
    features = (None, *shape)[axis]
    state = {"mean": data(features, seed=3), "var": np.abs(data(features, seed=4)) + 0.1}
    twin = keras.layers.BatchNormalization(axis=axis)
    twin.build((None, *shape))
    twin.set_weights(
        [np.asarray(params["scale"]), np.asarray(params["bias"]), state["mean"], state["var"]]
    )
    return ours, params, {k: jnp.asarray(v) for k, v in state.items()}, twin


@pytest.mark.parametrize(("axis", "shape"), [(-1, (4, 4, 3)), (1, (3, 4, 4))])
def test_batch_normalization_inference(axis, shape):
    x = data(5, *shape, scale=2, shift=1)
    ours, params, state, twin = batchnorm_pair(axis, shape)
    np.testing.assert_allclose(*ours_and_keras(ours, params, state, twin, x, training=False), **TOL)


def test_batch_normalization_training_step():
    x = data(16, 3, scale=2, shift=1)
    ours, params, state, twin = batchnorm_pair(-1, (3,))
    y, new_state = ours.apply(params, state, jnp.asarray(x), train=True)
    np.testing.assert_allclose(y, keras_call(twin, x, training=True), **TOL)
    np.testing.assert_allclose(new_state["mean"], np.asarray(twin.moving_mean), **TOL)
    np.testing.assert_allclose(new_state["var"], np.asarray(twin.moving_variance), **TOL)


def test_embedding():
    ids = np.array([[0, 3, 9], [2, 2, 1]], np.int32)
    ours = fn.Embedding(10, 4)
    params, state = init(ours, (None, 3))
    twin = keras.layers.Embedding(10, 4)
    twin.build((None, 3))
    twin.set_weights([np.asarray(params["embedding"])])
    np.testing.assert_allclose(*ours_and_keras(ours, params, state, twin, ids))


@pytest.mark.parametrize(
    ("ours", "theirs", "spatial"),
    [
        (lambda: fn.MaxPool((2, 2)), lambda: keras.layers.MaxPooling2D(), (7, 8)),
        (
            lambda: fn.MaxPool((3, 3), 2, "SAME"),
            lambda: keras.layers.MaxPooling2D(3, 2, "same"),
            (7, 8),
        ),
        (lambda: fn.AvgPool((2, 2)), lambda: keras.layers.AveragePooling2D(2), (7, 8)),
        # With padding both average over the real elements only.
        (
            lambda: fn.AvgPool((3, 3), 2, "SAME"),
            lambda: keras.layers.AveragePooling2D(3, 2, "same"),
            (7, 8),
        ),
        (lambda: fn.MaxPool(2), lambda: keras.layers.MaxPooling1D(), (9,)),
        (
            lambda: fn.AvgPool(3, 1, "SAME"),
            lambda: keras.layers.AveragePooling1D(3, 1, "same"),
            (9,),
        ),
        (fn.GlobalAvgPool, keras.layers.GlobalAveragePooling2D, (5, 6)),
        (fn.GlobalMaxPool, keras.layers.GlobalMaxPooling2D, (5, 6)),
        (fn.GlobalAvgPool, keras.layers.GlobalAveragePooling1D, (7,)),
        (fn.Flatten, keras.layers.Flatten, (3, 4)),
    ],
    ids=lambda v: "" if callable(v) else str(v),
)
def test_parameterless_layers(ours, theirs, spatial):
    x = data(2, *spatial, 3)
    layer = ours()
    params, state = init(layer, (None, *spatial, 3))
    np.testing.assert_allclose(*ours_and_keras(layer, params, state, theirs(), x), **TOL)


def test_dropout_is_the_identity_in_inference():
    x = data(3, 5)
    ours = fn.Dropout(0.5)
    np.testing.assert_array_equal(
        funcnet_call(ours, {}, {}, x), keras_call(keras.layers.Dropout(0.5), x, training=False)
    )


@pytest.mark.parametrize(
    ("return_sequences", "kind"),
    [
        # Each kind and each return_sequences by default; the other pairs in the slow run.
        (False, "LSTM"),
        (True, "GRU"),
        (True, "SimpleRNN"),
        pytest.param(False, "SimpleRNN", marks=pytest.mark.slow),
        pytest.param(False, "GRU", marks=pytest.mark.slow),
        pytest.param(True, "LSTM", marks=pytest.mark.slow),
    ],
)
def test_recurrent(kind, return_sequences):
    x = data(2, 5, 3)
    ours = getattr(fn, kind)(4, return_sequences=return_sequences)
    params, state = init(ours, (None, 5, 3))
    params = randomise(params)
    twin = getattr(keras.layers, kind)(4, return_sequences=return_sequences)
    twin.build((None, 5, 3))
    twin.set_weights([np.asarray(params[k]) for k in ("w", "u", "b")])
    np.testing.assert_allclose(*ours_and_keras(ours, params, state, twin, x), **TOL)
