"""fn.from_keras against Keras 3 itself: the converted model predicts what Keras predicts.

Each model kind is built in Keras with random (non-default) weights, including
BatchNormalization moving statistics far from their initial values, converted,
and compared with ``model.predict`` on random inputs within 1e-5 (float32);
then fine-tuned a few steps with ``fn.fit``, whose loss must fall. The bad
inputs get the errors pinned here and in docs/errors.md. Keras runs on its JAX
backend; the module is skipped where Keras 3 is not installed.
"""

from __future__ import annotations

import os

# Keras picks its backend once, on first import.
os.environ["KERAS_BACKEND"] = "jax"

import jax
import jax.numpy as jnp
import numpy as np
import optax
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

L = keras.layers
TOL = {"rtol": 1e-5, "atol": 1e-5}


@pytest.fixture(autouse=True)
def _keras_broadcasts():
    # conftest.py makes implicit rank promotion an error for funcnet; Keras relies on it.
    with jax.numpy_rank_promotion("allow"):
        yield


def randomize(model, seed=0):
    """Random weights everywhere; moving variances positive and far from 1."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        if "moving_variance" in v.path:
            v.assign(rng.uniform(0.3, 3.0, v.shape).astype("float32"))
        elif "moving_mean" in v.path:
            v.assign(rng.normal(0, 1.0, v.shape).astype("float32"))
        else:
            v.assign(rng.normal(0, 0.4, v.shape).astype("float32"))
    return model


def data(*shape, seed=1):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def assert_same_predictions(model, net, params, state, x):
    want = model.predict(x if not isinstance(x, tuple) else list(x), verbose=0)
    got = fn.predict(net, params, state, x)
    if isinstance(want, list):
        assert isinstance(got, tuple) and len(got) == len(want)
        for g, w in zip(got, want):
            np.testing.assert_allclose(np.asarray(g), w, **TOL)
    else:
        np.testing.assert_allclose(np.asarray(got), want, **TOL)


def fine_tune(net, params, state, x, y, loss, epochs=5):
    """A few fn.fit epochs from the converted weights; returns the FitResult."""
    opt = optax.adam(1e-2)
    # fit donates its train state's buffers: give it copies, the fixture is shared.
    params, state = jax.tree.map(jnp.array, (params, state))
    start = fn.TrainState(
        params, state, opt.init(params), jnp.zeros((), jnp.int32), jax.random.key(0)
    )
    return fn.fit(net, x, y, loss=loss, optimizer=opt, epochs=epochs, batch_size=8,
                  train_state=start, verbose=0)  # fmt: skip


def converted(model):
    return fn.from_keras(randomize(model))


def keras_allowed(build):
    """A module fixture building a Keras model, with the broadcasting Keras relies on."""

    def fixture():
        with jax.numpy_rank_promotion("allow"):
            return build()

    fixture.__name__ = build.__name__
    return pytest.fixture(scope="module")(fixture)


# --------------------------------------------------------------------------
# (1) An MLP


@keras_allowed
def mlp():
    model = keras.Sequential(
        [
            L.InputLayer((4, 3)),
            L.Flatten(),
            L.Dense(8, activation="gelu"),
            L.Dropout(0.3),
            L.Dense(6),
            L.Reshape((2, 3)),
            L.Activation("tanh"),
            L.Flatten(),
            L.Dense(3, activation="softmax"),
        ],
        name="mlp",
    )
    return model, *converted(model)


def test_mlp_predicts_as_keras(mlp):
    model, net, params, state = mlp
    assert_same_predictions(model, net, params, state, data(5, 4, 3))
    # The funcnet layers carry the Keras names, so summaries and errors show them.
    summary = fn.summary(net, (None, 4, 3))
    assert all(layer.name in summary for layer in model.layers if "dense" in layer.name)


@pytest.mark.slow  # fine-tuning a converted model: the CNN's and the two-branch model's by default
def test_mlp_fine_tunes(mlp):
    _, net, params, state = mlp
    x = data(32, 4, 3)
    y = np.eye(3, dtype=np.float32)[np.arange(32) % 3]
    result = fine_tune(net, params, state, x, y, "categorical_crossentropy")
    assert result.history["loss"][-1] < result.history["loss"][0]


# --------------------------------------------------------------------------
# (2) A CNN with BatchNorm and Dropout


@keras_allowed
def cnn():
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            L.Conv2D(4, 3, strides=2, padding="same", activation="relu"),
            L.BatchNormalization(momentum=0.9, epsilon=1e-2),
            L.Conv2DTranspose(4, 3, strides=2, padding="same", activation="elu"),
            L.MaxPooling2D(2),
            L.GroupNormalization(2, epsilon=1e-4),
            L.Conv2D(6, 2, padding="valid", dilation_rate=1, groups=2),
            L.AveragePooling2D(2, strides=1, padding="same"),
            L.LayerNormalization(),
            L.Dropout(0.2),
            L.GlobalAveragePooling2D(),
            L.Dense(2),
        ],
        name="cnn",
    )
    return model, *converted(model)


def test_cnn_predicts_as_keras_with_moving_statistics(cnn):
    model, net, params, state = cnn
    assert_same_predictions(model, net, params, state, data(4, 8, 8, 3))
    bn = model.get_layer(index=1)
    (bn_state,) = [s for s in jax.tree.leaves(state, is_leaf=lambda s: "mean" in s) if s]
    np.testing.assert_array_equal(bn_state["mean"], bn.moving_mean.numpy())
    np.testing.assert_array_equal(bn_state["var"], bn.moving_variance.numpy())


def test_cnn_fine_tunes_and_updates_the_moving_statistics(cnn):
    _, net, params, state = cnn
    x, y = data(16, 8, 8, 3), data(16, 2, seed=3)
    result = fine_tune(net, params, state, x, y, "mse")
    assert result.history["loss"][-1] < result.history["loss"][0]
    before, after = jax.tree.leaves(state), jax.tree.leaves(result.state)
    assert any(not np.allclose(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize(
    "layers, shape",
    [
        ([L.Conv1D(3, 3, padding="causal", dilation_rate=2, activation="relu"),
          L.MaxPooling1D(2, padding="same"), L.Conv1D(2, 2, strides=2), L.GlobalMaxPooling1D()],
         (9, 2)),
        ([L.Conv3D(2, 2, padding="same"), L.Conv3DTranspose(2, 2, strides=2, padding="valid"),
          L.GlobalMaxPooling3D()], (3, 3, 3, 2)),
        ([L.Conv1DTranspose(3, 4, strides=3), L.AveragePooling1D(3), L.GlobalAveragePooling1D(),
          L.ReLU(negative_slope=0.1), L.Dense(2), L.Softmax()], (5, 2)),
    ],
    ids=["conv1d", "conv3d", "conv1d-transpose"],
)  # fmt: skip
@pytest.mark.slow
def test_other_convolutions_predict_as_keras(layers, shape):
    model = keras.Sequential([keras.Input(shape), *layers])
    assert_same_predictions(model, *converted(model), data(3, *shape))


# --------------------------------------------------------------------------
# (3) A functional model: two inputs, branches, merges, two outputs


@keras_allowed
def two_branch():
    image, extra = keras.Input((6, 6, 2), name="image"), keras.Input((3,), name="extra")
    a = L.Flatten()(L.Conv2D(3, 3, activation="relu")(image))
    a = L.Dense(4, activation="tanh")(a)
    b = L.Dense(4, activation="relu")(extra)
    merged = L.Concatenate()([a, b, L.Add()([a, b])])
    mixed = L.Average()([L.Subtract()([a, b]), L.Multiply()([a, b]), L.Maximum()([a, b]),
                         L.Minimum()([a, b])])  # fmt: skip
    score = L.Dense(1, activation="sigmoid", name="score")(merged)
    label = L.Dense(3, name="label")(L.Concatenate()([mixed, merged]))
    model = keras.Model([image, extra], [score, label], name="two_branch")
    return model, *converted(model)


def test_two_branch_model_predicts_as_keras(two_branch):
    model, net, params, state = two_branch
    assert_same_predictions(model, net, params, state, (data(5, 6, 6, 2), data(5, 3, seed=2)))


@pytest.mark.slow
def test_two_branch_model_fine_tunes_with_one_loss_per_output(two_branch):
    _, net, params, state = two_branch
    x = (data(16, 6, 6, 2), data(16, 3, seed=2))
    y = ((np.arange(16) % 2).astype(np.float32)[:, None], data(16, 3, seed=4))
    loss = fn.multi_loss(["binary_crossentropy", "mse"])
    result = fine_tune(net, params, state, x, y, loss)
    assert result.history["loss"][-1] < result.history["loss"][0]


# --------------------------------------------------------------------------
# (4) Embedding and recurrent layers


@keras_allowed
def text_classifier():
    model = keras.Sequential(
        [
            keras.Input((7,), dtype="int32"),
            L.Embedding(20, 6),
            L.Bidirectional(L.LSTM(4, return_sequences=True)),
            L.GRU(4, return_sequences=True, reset_after=False),
            L.Bidirectional(L.GRU(3, return_sequences=True), merge_mode="sum"),
            L.SimpleRNN(3, activation="relu"),
            L.Dense(1, activation="sigmoid"),
        ],
        name="text",
    )
    return model, *converted(model)


def ids(n, seed=0):
    return np.random.default_rng(seed).integers(0, 20, size=(n, 7)).astype(np.int32)


def test_text_classifier_predicts_as_keras(text_classifier):
    model, net, params, state = text_classifier
    assert_same_predictions(model, net, params, state, ids(5))


@pytest.mark.slow
def test_text_classifier_fine_tunes(text_classifier):
    _, net, params, state = text_classifier
    x, y = ids(16), (np.arange(16) % 2).astype(np.float32)[:, None]
    result = fine_tune(net, params, state, x, y, "binary_crossentropy")
    assert result.history["loss"][-1] < result.history["loss"][0]


def test_float_ids_are_cast_as_keras_does():
    # keras.Input defaults to float32; Keras casts the ids, so the converted model does too.
    model = keras.Sequential([keras.Input((7,)), L.Embedding(20, 3), L.GRU(2)])
    net, params, state = converted(model)
    assert_same_predictions(model, net, params, state, ids(4).astype(np.float32))


# --------------------------------------------------------------------------
# (5) A small Transformer encoder built from Keras layers


@keras_allowed
def encoder():
    tokens = keras.Input((5, 8))
    attended = L.MultiHeadAttention(num_heads=2, key_dim=3)(tokens, tokens, use_causal_mask=True)
    h = L.LayerNormalization(epsilon=1e-6)(L.Add()([tokens, attended]))
    ff = L.Dense(8)(L.Dropout(0.1)(L.Dense(16, activation="relu")(h)))
    h = L.LayerNormalization(epsilon=1e-6)(L.Add()([h, ff]))
    cross = L.MultiHeadAttention(2, 4, output_shape=6)(h, tokens, key=h)
    out = L.Dense(2)(L.GlobalAveragePooling1D()(cross))
    model = keras.Model(tokens, out, name="encoder")
    return model, *converted(model)


def test_transformer_encoder_predicts_as_keras(encoder):
    model, net, params, state = encoder
    assert_same_predictions(model, net, params, state, data(3, 5, 8))


@pytest.mark.slow
def test_transformer_encoder_fine_tunes(encoder):
    _, net, params, state = encoder
    x, y = data(16, 5, 8), data(16, 2, seed=5)
    result = fine_tune(net, params, state, x, y, "mse")
    assert result.history["loss"][-1] < result.history["loss"][0]


def test_layer_normalization_over_chosen_axes_predicts_as_keras():
    model = keras.Sequential(
        [keras.Input((3, 4, 2)), L.LayerNormalization(axis=[1, 2, 3]), L.LayerNormalization(axis=1),
         L.LayerNormalization(axis=(-3, -1), center=False, epsilon=1e-5)]
    )  # fmt: skip
    net, params, state = converted(model)
    assert [jnp.shape(p["scale"]) for p in params[0]] == [(3, 4, 2), (3,), (3, 2)]
    assert_same_predictions(model, net, params, state, data(2, 3, 4, 2))


def test_layer_norm_axis_is_checked():
    with pytest.raises(TypeError, match=r"LayerNorm: axis must be an int or a tuple of ints"):
        fn.LayerNorm(axis="last")
    with pytest.raises(ValueError, match=r"axis=0 must name distinct non-batch axes"):
        fn.LayerNorm(axis=0).init(jax.random.key(0), (None, 3))


def test_a_model_used_as_a_layer_is_rebuilt_inside():
    block = keras.Sequential([keras.Input((3,)), L.Rescaling(0.5, offset=1.0), L.Dense(4)])
    x = keras.Input((3,))
    model = keras.Model(x, L.Dense(2)(L.Identity()(block(x))))
    assert_same_predictions(model, *converted(model), data(4, 3))


def test_call_options_other_than_the_attention_masks_are_refused():
    # attention_mask= and use_causal_mask= convert (tests/test_attention_masks.py);
    # a padding mask given by hand is refused.
    q = keras.Input((4, 2))
    mask = keras.Input((4,), dtype="bool")
    out = L.MultiHeadAttention(1, 2, name="att")(q, q, value_mask=mask)
    with pytest.raises(
        ValueError,
        match=r"layer 'att' \(MultiHeadAttention\) is called with "
        r"value_mask=.*masks and call options are not carried over",
    ):
        fn.from_keras(keras.Model([q, mask], out))


# --------------------------------------------------------------------------
# Bad inputs: each names the layer, the option and the fix


def test_a_funcnet_model_is_not_a_keras_model():
    with pytest.raises(TypeError, match=r"from_keras: expected a Keras 3 Sequential or functional"):
        fn.from_keras(fn.Dense(3))


def test_a_keras_layer_is_not_a_model():
    with pytest.raises(TypeError, match=r"got the Keras Dense 'd'\. Wrap a layer in a model"):
        fn.from_keras(L.Dense(3, name="d"))


def test_a_subclassed_model_is_refused():
    class Mine(keras.Model):
        def __init__(self):
            super().__init__(name="mine")
            self.dense = L.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Mine()
    model(np.zeros((1, 3), np.float32))
    with pytest.raises(TypeError, match=r"'mine' is a subclassed keras\.Model \(Mine\)"):
        fn.from_keras(model)


def test_a_sequential_without_input_shape_is_refused():
    with pytest.raises(ValueError, match=r"has no input shape yet.*keras\.Input\(shape\)"):
        fn.from_keras(keras.Sequential([L.Dense(2)], name="unbuilt"))


@pytest.mark.parametrize(
    "layer, shape, message",
    [
        (L.UpSampling2D(name="up"), (4, 4, 2),
         r"layer 'up' \(UpSampling2D\) has no funcnet twin\. Supported Keras layers: Activation"),
        (L.Conv2D(2, 3, data_format="channels_first", name="c"), (2, 5, 5),
         r"layer 'c' \(Conv2D\): data_format='channels_first' is not supported\. funcnet's "
         r"convolutions.*channels-last"),
        (L.Dense(2, activation=lambda x: x * 2, name="d"), (3,),
         r"layer 'd' \(Dense\): activation=.* is not supported\. funcnet knows the activations"),
        (L.RMSNormalization(axis=1, name="n"), (4, 4),
         r"layer 'n' \(RMSNormalization\): axis=\[1\] is not supported\. Keras's "
         r"RMSNormalization lines its scale up with the input's last axes"),
    ],
    ids=["unknown-layer", "channels-first", "custom-activation", "norm-axis"],
)  # fmt: skip
def test_unsupported_layers_and_options_are_named(layer, shape, message):
    model = keras.Sequential([keras.Input(shape), layer])
    with pytest.raises(ValueError, match=message):
        fn.from_keras(model)


def test_a_shared_layer_is_refused():
    shared = L.Dense(2, name="shared")
    a, b = keras.Input((3,)), keras.Input((3,))
    model = keras.Model([a, b], L.Add()([shared(a), shared(b)]))
    with pytest.raises(ValueError, match=r"layer 'shared' \(Dense\) is called more than once"):
        fn.from_keras(model)


# --------------------------------------------------------------------------
# The layer options added for Keras, checked on their own


def test_conv_activation_is_applied_after_the_bias():
    conv = fn.Conv(2, (3,), padding="VALID", activation="relu")
    _, params, state = conv.init(jax.random.key(0), (None, 5, 1))
    params = {"w": -jnp.ones_like(params["w"]), "b": jnp.array([1.0, 100.0])}
    y, _ = conv.apply(params, state, jnp.ones((1, 5, 1)))
    np.testing.assert_allclose(y[0], [[0.0, 97.0]] * 3)


def test_conv_transpose_output_padding_predicts_as_keras():
    model = keras.Sequential(
        [keras.Input((4, 4, 2)),
         L.Conv2DTranspose(3, 3, strides=2, padding="valid", output_padding=1),
         L.Conv2DTranspose(2, 2, strides=(3, 2), padding="same", output_padding=(2, 0))]
    )  # fmt: skip
    net, params, state = converted(model)
    shapes = []  # traced, not run: the initializers' eager ops would each compile
    jax.eval_shape(lambda key: shapes.append(net.init(key, (None, 4, 4, 2))[0]), jax.random.key(0))
    assert shapes[0] == model.output_shape == (None, 29, 18, 2)
    assert_same_predictions(model, net, params, state, data(2, 4, 4, 2))


def test_conv_transpose_output_padding_extends_the_high_end_with_the_bias():
    up = fn.ConvTranspose(1, (2,), strides=2, padding="VALID", output_padding=1)
    _, params, state = up.init(jax.random.key(0), (None, 2, 1))
    params = {"w": jnp.ones_like(params["w"]), "b": jnp.array([0.5])}
    y, _ = up.apply(params, state, jnp.ones((1, 2, 1)))
    np.testing.assert_allclose(y[0, :, 0], [1.5, 1.5, 1.5, 1.5, 0.5])
    with pytest.raises(ValueError, match=r"output_padding must be a non-negative int"):
        fn.ConvTranspose(1, (2,), output_padding=-1)


def test_gru_reset_after_false_has_one_bias_row():
    gru = fn.GRU(3, reset_after=False)
    _, params, _ = gru.init(jax.random.key(0), (None, 4, 2))
    assert params["b"].shape == (9,)
    with pytest.raises(TypeError, match="reset_after"):
        fn.GRU(3, reset_after="no")
