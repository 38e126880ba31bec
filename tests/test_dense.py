"""Dense, activations and shape layers: known answers and clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet as fn


def arange_dense(units, in_features, **kwargs):
    net = fn.Dense(units, **kwargs)
    _, params, state = net.init(jax.random.key(0), (None, in_features))
    params = {
        "w": jnp.arange(in_features * units, dtype=jnp.float32).reshape(in_features, units),
        "b": jnp.arange(units, dtype=jnp.float32),
    }
    return net, params, state


def test_dense_known_answer():
    net, params, state = arange_dense(2, 3)
    y, _ = net.apply(params, state, jnp.array([[1.0, 2.0, 3.0]]))
    # w = [[0,1],[2,3],[4,5]]: x @ w = [16, 22], plus b = [0, 1].
    np.testing.assert_array_equal(y, [[16.0, 23.0]])


def test_dense_activation_by_name_and_function():
    x = jnp.array([[1.0, -2.0, 0.5]])
    for activation, fn_ in [
        ("sigmoid", jax.nn.sigmoid),
        ("relu", jax.nn.relu),
        (jnp.tanh, jnp.tanh),
    ]:
        net, params, state = arange_dense(2, 3, activation=activation)
        y, _ = net.apply(params, state, x)
        np.testing.assert_allclose(y, fn_(x @ params["w"] + params["b"][None, :]), rtol=1e-6)


def test_dense_defaults_are_glorot_uniform_and_zero_bias():
    _, params, _ = fn.Dense(200).init(jax.random.key(0), (None, 100))
    limit = np.sqrt(6 / (100 + 200))
    assert np.all(np.abs(params["w"]) <= limit) and np.max(np.abs(params["w"])) > 0.9 * limit
    np.testing.assert_array_equal(params["b"], 0)


def test_dense_param_dtype_and_compute_dtype():
    net = fn.Dense(3, param_dtype=jnp.bfloat16, dtype=jnp.float32)
    _, params, state = net.init(jax.random.key(0), (None, 2))
    assert params["w"].dtype == jnp.bfloat16
    y, _ = net.apply(params, state, jnp.ones((1, 2), jnp.bfloat16))
    assert y.dtype == jnp.float32


def test_dense_rejects_a_different_input_size():
    net, params, state = arange_dense(2, 3)
    with pytest.raises(
        fn.LayerValueError,
        match=r"^Dense: expected input with last dimension 3 \(the size given at init\), "
        r"got input of shape \(4, 5\)\. Check the previous layer's output",
    ):
        net.apply(params, state, jnp.ones((4, 5)))


def test_dense_rejects_a_scalar_input():
    net, params, state = arange_dense(2, 3)
    with pytest.raises(fn.LayerValueError, match=r"^Dense: expected input with last dimension 3"):
        net.apply(params, state, jnp.float32(1.0))


def test_dense_rejects_integer_input():
    net, params, state = arange_dense(2, 3)
    with pytest.raises(
        fn.LayerTypeError,
        match=r"^Dense: expected floating-point input, got dtype int32 .* x\.astype\(jnp\.float32\)",
    ):
        net.apply(params, state, jnp.ones((1, 3), jnp.int32))


def test_dense_rejects_unknown_feature_size():
    with pytest.raises(fn.LayerValueError, match=r"the last \(feature\) dimension must be known"):
        fn.Dense(2).init(jax.random.key(0), (None, None))


@pytest.mark.parametrize("units", [0, -1, 2.5, True])
def test_dense_rejects_bad_units(units):
    with pytest.raises(ValueError, match=r"^Dense: units must be a positive integer"):
        fn.Dense(units)


def test_numpy_integer_sizes_are_accepted_like_conv_does():
    # One positive-integer check for every layer: Conv always took np.int64,
    # now Dense, Embedding, the recurrent layers and attention do too.
    out_shape, params, _ = fn.Dense(np.int64(3)).init(jax.random.key(0), (None, 2))
    assert out_shape == (None, 3) and type(out_shape[-1]) is int
    assert params["w"].shape == (2, 3)


def test_unknown_activation_lists_the_valid_names():
    with pytest.raises(
        ValueError, match=r"^Dense: unknown activation 'sigmod'\. Valid names: .*sigmoid"
    ):
        fn.Dense(2, activation="sigmod")
    with pytest.raises(TypeError, match=r"activation must be a name, a function or None"):
        fn.Dense(2, activation=3)


def test_activation_layers_known_answers():
    x = jnp.array([[-2.0, 0.0, 3.0]])
    expected = {
        fn.Relu(): [[0.0, 0.0, 3.0]],
        fn.LeakyRelu(0.5): [[-1.0, 0.0, 3.0]],
        fn.Identity(): x,
        fn.Softmax(): jax.nn.softmax(x),
        fn.LogSoftmax(): jnp.log(jax.nn.softmax(x)),
        fn.Elu(): [[np.exp(-2.0) - 1, 0.0, 3.0]],
        fn.Softplus(): np.log1p(np.exp(np.array(x))),
        fn.Silu(): np.array(x) / (1 + np.exp(-np.array(x))),
        fn.Sigmoid(): 1 / (1 + np.exp(-np.array(x))),
        fn.Tanh(): np.tanh(np.array(x)),
    }
    for layer, want in expected.items():
        y, _ = layer.apply({}, {}, x)
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6, err_msg=layer.name)


def test_activation_rejects_integer_input():
    with pytest.raises(fn.LayerTypeError, match=r"^Relu: expected floating-point input"):
        fn.Relu().apply({}, {}, jnp.array([1, 2]))


def test_flatten_and_reshape_known_answers():
    x = jnp.arange(24.0).reshape(2, 3, 4)
    y, _ = fn.Flatten().apply({}, {}, x)
    np.testing.assert_array_equal(y, np.arange(24.0).reshape(2, 12))
    y, _ = fn.Reshape((4, -1)).apply({}, {}, x)
    np.testing.assert_array_equal(y, np.arange(24.0).reshape(2, 4, 3))


def test_reshape_errors():
    with pytest.raises(
        ValueError, match=r"^Reshape: target_shape must hold positive sizes and at most one -1"
    ):
        fn.Reshape((-1, -1))
    with pytest.raises(
        fn.LayerValueError, match=r"^Reshape: cannot reshape examples of shape \(5,\)"
    ):
        fn.Reshape((2, -1)).init(jax.random.key(0), (None, 5))
    with pytest.raises(
        fn.LayerValueError, match=r"^Flatten: every non-batch dimension must be known"
    ):
        fn.Flatten().init(jax.random.key(0), (None, None, 3))
