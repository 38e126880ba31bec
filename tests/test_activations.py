"""Activation names and defaults mean what Keras 3 means (docs/keras.md).

These known answers hold without Keras installed; tests/test_keras_parity.py
checks the same names against Keras itself.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet as fn

X = jnp.array([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0])


def exact_gelu(x):
    return np.array([v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in np.asarray(x)])


def run(layer, x=X):
    _, params, state = layer.init(jax.random.key(0), x.shape)
    return np.asarray(layer.apply(params, state, x)[0])


def test_gelu_string_is_the_exact_form_as_in_keras():
    exact = exact_gelu(X)
    np.testing.assert_allclose(run(fn.Activation("gelu")), exact, rtol=1e-6, atol=1e-7)
    # The tanh approximation differs by up to about 5e-4: the old meaning is really gone.
    assert np.abs(np.asarray(jax.nn.gelu(X, approximate=True)) - exact).max() > 1e-4


def test_dense_gelu_by_name_is_exact():
    net = fn.Dense(7, activation="gelu")
    _, params, state = net.init(jax.random.key(0), (None, 7))
    params = {"w": jnp.eye(7), "b": jnp.zeros(7)}
    y, _ = net.apply(params, state, X[None, :])
    np.testing.assert_allclose(y[0], exact_gelu(X), rtol=1e-6, atol=1e-7)


def test_gelu_layer_defaults_to_exact_and_keeps_the_approximation_reachable():
    np.testing.assert_allclose(run(fn.Gelu()), exact_gelu(X), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(
        run(fn.Gelu(approximate=True)), jax.nn.gelu(X, approximate=True), rtol=1e-6
    )


def test_leaky_relu_string_has_keras_slope_0_2():
    np.testing.assert_allclose(run(fn.Activation("leaky_relu"))[:2], [-0.6, -0.2], rtol=1e-6)


def test_leaky_relu_layer_has_keras_slope_0_3_and_takes_others():
    np.testing.assert_allclose(run(fn.LeakyRelu())[:2], [-0.9, -0.3], rtol=1e-6)
    np.testing.assert_allclose(run(fn.LeakyRelu(0.01))[:2], [-0.03, -0.01], rtol=1e-6)
    np.testing.assert_array_equal(run(fn.LeakyRelu(0.0)), jax.nn.relu(X))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("celu", jax.nn.celu(X)),
        ("hard_silu", X * jnp.clip(X + 3, 0, 6) / 6),
        ("hard_swish", X * jnp.clip(X + 3, 0, 6) / 6),
        ("hard_tanh", jnp.clip(X, -1, 1)),
        ("log_sigmoid", jnp.log(1 / (1 + jnp.exp(-X)))),
        ("exponential", jnp.exp(X)),
    ],
)
def test_keras_activation_names_added(name, expected):
    np.testing.assert_allclose(run(fn.Activation(name)), expected, rtol=1e-5, atol=1e-6)


def test_gelu_rejects_a_non_boolean_approximate():
    with pytest.raises(
        TypeError,
        match=r"^Gelu: approximate must be True or False, got 'tanh'\. Pass approximate=True",
    ):
        fn.Gelu(approximate="tanh")


@pytest.mark.parametrize("slope", [-0.1, "0.3", None, True])
def test_leaky_relu_rejects_a_bad_slope(slope):
    with pytest.raises(
        ValueError,
        match=rf"^LeakyRelu: negative_slope must be a number >= 0, got {slope!r}\. "
        r"Pass e\.g\. LeakyRelu\(0\.3\)",
    ):
        fn.LeakyRelu(slope)
