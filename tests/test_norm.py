"""Known-answer tests for BatchNorm, LayerNorm, RMSNorm and GroupNorm."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet as fn
from tests._gradcheck import check_grads_rev


def jitted(net, *, train=False):
    """``net.apply`` compiled once: faster than op-by-op dispatch for these tests."""
    return jax.jit(functools.partial(net.apply, train=train))


def arange_params(params):
    """Distinct, non-trivial scale and bias values: scale 1, 1.5, 2...; bias 0, -0.5, -1..."""
    out = {}
    for k, v in params.items():
        n = v.shape[0]
        out[k] = jnp.linspace(1.0, 1.0 + 0.5 * (n - 1), n) if k == "scale" else -0.5 * jnp.arange(n)
    return out


def normalise_np(x, mean, var, eps, scale, bias):
    return (x - mean) / np.sqrt(var + eps) * np.asarray(scale) + np.asarray(bias)


# ----------------------------------------------------------------------------- BatchNorm


def test_batchnorm_train_known_answer():
    x = np.array([[1.0, -2.0, 0.0], [3.0, 4.0, 0.5], [8.0, 1.0, 0.25], [0.0, 5.0, 1.0]])
    net = fn.BatchNorm(momentum=0.9)
    _, params, state = net.init(jax.random.key(0), (None, 3))
    params = arange_params(params)
    y, new_state = jitted(net, train=True)(params, state, jnp.asarray(x, jnp.float32))
    mean, var = x.mean(0), x.var(0)  # biased variance, as documented
    expected = normalise_np(x, mean, var, 1e-3, params["scale"], params["bias"])
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_state["mean"], 0.1 * mean, rtol=1e-6)
    np.testing.assert_allclose(new_state["var"], 0.9 * 1.0 + 0.1 * var, rtol=1e-6)
    assert {k: v.dtype for k, v in new_state.items()} == {"mean": jnp.float32, "var": jnp.float32}


def test_batchnorm_inference_uses_running_stats_and_keeps_state():
    net = fn.BatchNorm(epsilon=0.01)
    _, params, _ = net.init(jax.random.key(0), (None, 2, 3))
    params = arange_params(params)
    state = {"mean": jnp.array([1.0, -2.0, 0.5]), "var": jnp.array([4.0, 0.25, 9.0])}
    x = jax.random.normal(jax.random.key(1), (5, 2, 3))
    y, new_state = jitted(net)(params, state, x)
    expected = normalise_np(
        np.asarray(x), np.asarray(state["mean"]), np.asarray(state["var"]), 0.01,
        np.asarray(params["scale"]), np.asarray(params["bias"]),
    )  # fmt: skip
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    jax.tree.map(np.testing.assert_array_equal, new_state, state)


def test_batchnorm_channels_first_reduces_over_batch_and_spatial_axes():
    x = jax.random.normal(jax.random.key(2), (4, 3, 2, 5)) * 3.0 + 1.0
    net = fn.BatchNorm(axis=1, momentum=0.0)
    _, params, state = net.init(jax.random.key(0), (None, 3, 2, 5))
    assert state["mean"].shape == (3,)
    y, new_state = jitted(net, train=True)(params, state, x)
    xn = np.asarray(x)
    mean = xn.mean(axis=(0, 2, 3))
    var = xn.var(axis=(0, 2, 3))
    expected = (xn - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-3)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    # momentum=0 keeps exactly the last batch's statistics.
    np.testing.assert_allclose(new_state["mean"], mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_state["var"], var, rtol=1e-5)


def test_batchnorm_running_stats_converge_on_a_fixed_batch():
    x = jax.random.normal(jax.random.key(3), (16, 2)) * jnp.array([[2.0, 0.5]]) + jnp.array(
        [[3.0, -1.0]]
    )
    net = fn.BatchNorm(momentum=0.9)
    _, params, state = net.init(jax.random.key(0), (None, 2))

    def step(state, _):
        return net.apply(params, state, x, train=True)[1], None

    state, _ = jax.lax.scan(step, state, None, length=300)  # 0.9**300 ~ 2e-14
    np.testing.assert_allclose(state["mean"], np.asarray(x).mean(0), rtol=1e-5)
    np.testing.assert_allclose(state["var"], np.asarray(x).var(0), rtol=1e-5)  # ddof=0


def test_batchnorm_running_stats_converge_to_the_data_distribution():
    mu, sigma = jnp.array([[5.0, -2.0, 0.0]]), jnp.array([[3.0, 0.5, 1.0]])
    net = fn.BatchNorm(momentum=0.95)
    _, params, state = net.init(jax.random.key(0), (None, 3))

    def step(state, key):
        x = jax.random.normal(key, (256, 3)) * sigma + mu
        return net.apply(params, state, x, train=True)[1], None

    state, _ = jax.lax.scan(step, state, jax.random.split(jax.random.key(4), 400))
    np.testing.assert_allclose(state["mean"], mu[0], atol=0.05 * 3.0)
    np.testing.assert_allclose(state["var"], jnp.square(sigma[0]), rtol=0.05)


def test_batchnorm_then_inference_matches_the_batch_normalisation():
    # After converging on one batch, inference normalises it like training does.
    x = jax.random.normal(jax.random.key(5), (32, 4)) * 2.0 + 1.0
    net = fn.BatchNorm(momentum=0.5)
    _, params, state = net.init(jax.random.key(0), (None, 4))
    train_step = jitted(net, train=True)
    for _ in range(60):
        y_train, state = train_step(params, state, x)
    y_eval, _ = jitted(net)(params, state, x)
    np.testing.assert_allclose(y_eval, y_train, rtol=1e-4, atol=1e-4)


def test_batchnorm_bfloat16_keeps_float32_statistics():
    net = fn.BatchNorm(param_dtype=jnp.bfloat16)
    _, params, state = net.init(jax.random.key(0), (None, 2))
    assert params["scale"].dtype == jnp.bfloat16
    assert state["mean"].dtype == jnp.float32
    # bfloat16 values near 256 are 2 apart: mean 263, biased variance 21.
    x = (256.0 + 2.0 * jnp.arange(8.0)[:, None] * jnp.ones((1, 2))).astype(jnp.bfloat16)
    y, new_state = jitted(net, train=True)(params, state, x)
    assert y.dtype == jnp.bfloat16
    expected = (np.arange(8.0) * 2 - 7.0) / np.sqrt(21.0 + 1e-3)
    np.testing.assert_allclose(np.asarray(y, np.float32)[:, 0], expected, rtol=1e-2, atol=1e-2)
    # 0.99 * 1 + 0.01 * 21: the update survives because the state stays float32.
    assert new_state["var"].dtype == jnp.float32
    np.testing.assert_allclose(new_state["var"], [1.2, 1.2], rtol=1e-5)
    np.testing.assert_allclose(new_state["mean"], [2.63, 2.63], rtol=1e-5)


def test_batchnorm_compute_dtype_overrides_the_input_dtype():
    net = fn.BatchNorm(dtype=jnp.float32)
    _, params, state = net.init(jax.random.key(0), (None, 2))
    y, _ = net.apply(params, state, jnp.ones((3, 2), jnp.bfloat16), train=True)
    assert y.dtype == jnp.float32


def test_batchnorm_without_scale_and_bias_has_no_params():
    net = fn.BatchNorm(use_scale=False, use_bias=False)
    _, params, state = net.init(jax.random.key(0), (None, 2))
    assert params == {}
    x = jnp.array([[0.0, 1.0], [2.0, 3.0]])
    y, _ = net.apply(params, state, x, train=True)
    np.testing.assert_allclose(y, [[-1.0, -1.0], [1.0, 1.0]], rtol=1e-3)


def test_batchnorm_train_gradients_match_numerical():
    with jax.enable_x64(True):
        net = fn.BatchNorm()
        _, params, state = net.init(jax.random.key(0), (None, 3))
        params = jax.tree.map(lambda a: a.astype(jnp.float64) + 0.3, params)
        x = jax.random.normal(jax.random.key(1), (5, 3), jnp.float64)

        def f(params, x):
            return jnp.sum(jnp.sin(net.apply(params, state, x, train=True)[0]))

        check_grads_rev(f, (params, x), order=1, atol=1e-5, rtol=1e-5)  # one program


def test_batchnorm_train_under_jit_equals_eager():
    net = fn.BatchNorm()
    _, params, state = net.init(jax.random.key(0), (None, 3))
    x = jax.random.normal(jax.random.key(1), (6, 3))
    eager = net.apply(params, state, x, train=True)
    jitted = jax.jit(lambda p, s, x: net.apply(p, s, x, train=True))(params, state, x)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6), eager, jitted)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"momentum": 1.5},
            ValueError,
            r"^BatchNorm: momentum must be a number in \[0, 1\], got 1.5",
        ),
        ({"momentum": True}, ValueError, r"momentum must be a number in \[0, 1\], got True"),
        ({"epsilon": 0.0}, ValueError, r"^BatchNorm: epsilon must be a positive number, got 0.0"),
        ({"axis": 1.0}, TypeError, r"^BatchNorm: axis must be an integer, got 1.0"),
        ({"use_scale": 1}, TypeError, r"^BatchNorm: use_scale must be True or False, got 1"),
        ({"use_bias": None}, TypeError, r"^BatchNorm: use_bias must be True or False, got None"),
    ],
)
def test_batchnorm_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        fn.BatchNorm(**kwargs)


def test_batchnorm_shape_errors():
    net = fn.BatchNorm()
    key = jax.random.key(0)
    with pytest.raises(fn.LayerValueError, match=r"^BatchNorm: expected an input of rank >= 2"):
        net.init(key, (None,))
    with pytest.raises(
        fn.LayerValueError,
        match=r"feature dimension must be known at init, got shape \(None, None\)",
    ):
        net.init(key, (None, None))
    with pytest.raises(
        fn.LayerValueError, match=r"axis=0 must name a feature axis other than the batch axis 0"
    ):
        fn.BatchNorm(axis=0).init(key, (None, 3))
    with pytest.raises(
        fn.LayerValueError, match=r"axis=3 must name a feature axis .* shape \(None, 3\) \(rank 2\)"
    ):
        fn.BatchNorm(axis=3).init(key, (None, 3))
    _, params, state = net.init(key, (None, 3))
    with pytest.raises(
        fn.LayerValueError,
        match=r"expected 3 features on axis 1 \(the size given at init\), got input of shape \(2, 4\)",
    ):
        net.apply(params, state, jnp.ones((2, 4)), train=True)
    with pytest.raises(fn.LayerValueError, match=r"^BatchNorm: axis=-1 must name a feature axis"):
        net.apply(params, state, jnp.ones((3,)))


def test_norms_reject_integer_inputs_and_specs():
    net = fn.BatchNorm()
    _, params, state = net.init(jax.random.key(0), (None, 3))
    with pytest.raises(
        fn.LayerTypeError, match=r"^BatchNorm: expected floating-point input, got dtype int32"
    ):
        net.apply(params, state, jnp.ones((2, 3), jnp.int32))
    spec = jax.ShapeDtypeStruct((None, 3), jnp.int32)
    for layer in (fn.BatchNorm(), fn.LayerNorm(), fn.RMSNorm(), fn.GroupNorm(1)):
        with pytest.raises(
            fn.LayerTypeError,
            match=r"got dtype int32\. Normalization needs real values; cast with x.astype\(jnp.float32\)",
        ):
            layer.init(jax.random.key(0), spec)


def test_batchnorm_error_path_inside_serial():
    net = fn.serial(fn.Dense(3), fn.BatchNorm())
    _, params, state = net.init(jax.random.key(0), (None, 2))
    wrong_state = (state[0], {"mean": jnp.zeros(4), "var": jnp.ones(4)})
    with pytest.raises(
        fn.LayerValueError,
        match=r"^serial\[1\]\.BatchNorm: expected 4 features on axis 1 \(the size given at init\), got input of shape \(2, 3\)",
    ):
        net.apply(params, wrong_state, jnp.ones((2, 2)))


# ----------------------------------------------------------------------------- LayerNorm


def test_layernorm_known_answer():
    x = np.array(
        [[[1.0, 2.0, 4.0, -3.0], [0.5, 0.5, 0.5, 2.5]], [[10.0, 0.0, 0.0, 0.0], [1, 2, 3, 4]]]
    )
    net = fn.LayerNorm(epsilon=0.1)
    _, params, state = net.init(jax.random.key(0), (None, 2, 4))
    params = arange_params(params)
    y, new_state = jitted(net)(params, state, jnp.asarray(x, jnp.float32))
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    expected = normalise_np(x, mean, var, 0.1, params["scale"], params["bias"])
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    assert new_state == {}


def test_layernorm_default_epsilon_is_keras_1e_minus_3():
    x = np.array([[0.0, 0.0632455532]])  # variance 1e-3: Keras's epsilon 1e-3 halves it exactly
    net = fn.LayerNorm()
    _, params, state = net.init(jax.random.key(0), (None, 2))
    y, _ = jitted(net)(params, state, jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(y, [[-1 / np.sqrt(2), 1 / np.sqrt(2)]], rtol=1e-4)


def test_groupnorm_defaults_are_keras_32_groups_and_epsilon_1e_minus_3():
    # 32 channels in 32 groups of one: each channel normalised over its spatial axis alone.
    x = np.zeros((1, 2, 32), np.float32)
    x[0, 1, :] = 0.0632455532  # variance 1e-3 per channel: epsilon 1e-3 halves it exactly
    net = fn.GroupNorm()
    _, params, state = net.init(jax.random.key(0), (None, 2, 32))
    y, _ = jitted(net)(params, state, jnp.asarray(x))
    np.testing.assert_allclose(y[0, 0], np.full(32, -1 / np.sqrt(2)), rtol=1e-4)
    np.testing.assert_allclose(y[0, 1], np.full(32, 1 / np.sqrt(2)), rtol=1e-4)
    with pytest.raises(fn.LayerValueError, match=r"^GroupNorm: num_groups=32 must divide"):
        net.init(jax.random.key(0), (None, 2, 16))


def test_layernorm_bfloat16_in_bfloat16_out_with_float32_statistics():
    net = fn.LayerNorm()
    _, params, state = net.init(jax.random.key(0), (None, 8))
    x = (1024.0 + 8.0 * jnp.arange(8.0)[None, :]).astype(jnp.bfloat16)  # exact in bfloat16
    y, _ = jitted(net)(params, state, x)
    assert y.dtype == jnp.bfloat16
    expected = (np.arange(8.0) - 3.5) / np.sqrt(np.arange(8.0).var())
    np.testing.assert_allclose(np.asarray(y, np.float32)[0], expected, rtol=1e-2, atol=1e-2)


def test_layernorm_shape_error():
    net = fn.LayerNorm()
    _, params, state = net.init(jax.random.key(0), (None, 4))
    with pytest.raises(fn.LayerValueError, match=r"^LayerNorm: expected 4 features on axis -1"):
        net.apply(params, state, jnp.ones((2, 5)))
    with pytest.raises(
        fn.LayerValueError, match=r"^LayerNorm: expected an input of rank >= 1, got a scalar"
    ):
        net.apply(params, state, jnp.ones(()))
    with pytest.raises(
        fn.LayerValueError, match=r"last \(feature\) dimension must be known at init"
    ):
        net.init(jax.random.key(0), (None, None))
    with pytest.raises(ValueError, match=r"^LayerNorm: epsilon must be a positive number, got -1"):
        fn.LayerNorm(epsilon=-1)


# ----------------------------------------------------------------------------- RMSNorm


def test_rmsnorm_known_answer():
    x = np.array([[3.0, -4.0, 0.0], [1.0, 1.0, 1.0]])
    net = fn.RMSNorm(epsilon=0.5)
    _, params, state = net.init(jax.random.key(0), (None, 3))
    assert set(params) == {"scale"}
    params = arange_params(params)
    y, _ = jitted(net)(params, state, jnp.asarray(x, jnp.float32))
    expected = x / np.sqrt((x**2).mean(-1, keepdims=True) + 0.5) * np.asarray(params["scale"])
    np.testing.assert_allclose(y, expected, rtol=1e-6)
    # No centring: a constant row stays constant and positive.
    assert (np.asarray(y)[1] > 0).all()


def test_rmsnorm_without_scale_and_errors():
    net = fn.RMSNorm(use_scale=False)
    _, params, state = net.init(jax.random.key(0), (None, 2))
    assert params == {}
    y, _ = net.apply(params, state, jnp.array([[3.0, 4.0]]))
    np.testing.assert_allclose(y, [[3 / np.sqrt(12.5), 4 / np.sqrt(12.5)]], rtol=1e-5)
    net = fn.RMSNorm()
    _, params, state = net.init(jax.random.key(0), (None, 2))
    with pytest.raises(
        fn.LayerValueError,
        match=r"^RMSNorm: expected 2 features on axis -1 \(the size given at init\), got input of shape \(1, 3\)",
    ):
        net.apply(params, state, jnp.ones((1, 3)))
    with pytest.raises(fn.LayerValueError, match=r"^RMSNorm: expected an input of rank >= 1"):
        net.apply(params, state, jnp.ones(()))
    with pytest.raises(TypeError, match=r"^RMSNorm: use_scale must be True or False"):
        fn.RMSNorm(use_scale="yes")


# ----------------------------------------------------------------------------- GroupNorm


def groupnorm_np(x, groups, eps, scale, bias):
    b, c = x.shape[0], x.shape[-1]
    g = x.reshape(b, -1, groups, c // groups)  # [batch, spatial, group, channels in group]
    mean = g.mean(axis=(1, 3), keepdims=True)
    var = g.var(axis=(1, 3), keepdims=True)
    return ((g - mean) / np.sqrt(var + eps)).reshape(x.shape) * scale + bias


def test_groupnorm_known_answer():
    x = np.asarray(jax.random.normal(jax.random.key(6), (2, 3, 3, 6))) * 2 + np.arange(6)
    net = fn.GroupNorm(3, epsilon=1e-2)
    _, params, state = net.init(jax.random.key(0), (None, 3, 3, 6))
    params = arange_params(params)
    y, _ = jitted(net)(params, state, jnp.asarray(x, jnp.float32))
    expected = groupnorm_np(x, 3, 1e-2, np.asarray(params["scale"]), np.asarray(params["bias"]))
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


def test_groupnorm_small_hand_computed_case():
    # One example, no spatial axes, groups {1, 3} and {10, 30}.
    net = fn.GroupNorm(2, epsilon=1e-6)
    _, params, state = net.init(jax.random.key(0), (None, 4))
    y, _ = net.apply(params, state, jnp.array([[1.0, 3.0, 10.0, 30.0]]))
    np.testing.assert_allclose(y, [[-1.0, 1.0, -1.0, 1.0]], rtol=1e-5)


def test_groupnorm_extremes_are_layer_and_instance_norm():
    x = jax.random.normal(jax.random.key(7), (2, 5, 4)) * 3 + 2
    xn = np.asarray(x)
    one = fn.GroupNorm(1, use_scale=False, use_bias=False)
    y, _ = jitted(one)({}, {}, x)
    mean, var = xn.mean(axis=(1, 2), keepdims=True), xn.var(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(y, (xn - mean) / np.sqrt(var + 1e-3), rtol=1e-4, atol=1e-5)
    each = fn.GroupNorm(4, use_scale=False, use_bias=False)
    y, _ = jitted(each)({}, {}, x)
    mean, var = xn.mean(axis=1, keepdims=True), xn.var(axis=1, keepdims=True)
    np.testing.assert_allclose(y, (xn - mean) / np.sqrt(var + 1e-3), rtol=1e-4, atol=1e-5)


def test_groupnorm_errors():
    with pytest.raises(
        ValueError, match=r"^GroupNorm: num_groups must be a positive integer, got 0"
    ):
        fn.GroupNorm(0)
    with pytest.raises(
        ValueError, match=r"^GroupNorm: num_groups must be a positive integer, got 2.0"
    ):
        fn.GroupNorm(2.0)
    net = fn.GroupNorm(4)
    with pytest.raises(
        fn.LayerValueError,
        match=r"^GroupNorm: num_groups=4 must divide the number of channels \(the last axis\), got input of shape \(None, 2, 6\) with 6 channels",
    ):
        net.init(jax.random.key(0), (None, 2, 6))
    _, params, state = net.init(jax.random.key(0), (None, 8))
    with pytest.raises(fn.LayerValueError, match=r"^GroupNorm: expected 8 features on axis -1"):
        net.apply(params, state, jnp.ones((2, 6)))
    with pytest.raises(
        fn.LayerValueError,
        match=r"^GroupNorm: expected an input of rank >= 2, \[batch, \.\.\., channels\], got shape \(8,\)",
    ):
        net.apply(params, state, jnp.ones((8,)))
    with pytest.raises(fn.LayerValueError, match=r"^GroupNorm: num_groups=4 must divide"):
        net.apply({}, {}, jnp.ones((2, 6)))


def test_per_example_norm_argument_and_shape_messages():
    with pytest.raises(ValueError, match=r"^RMSNorm: epsilon must be a positive number, got 0\.$"):
        fn.RMSNorm(epsilon=0)
    # num_groups is checked before the other arguments.
    with pytest.raises(ValueError, match=r"^GroupNorm: num_groups must be a positive integer"):
        fn.GroupNorm(0, epsilon=-1.0)
    with pytest.raises(TypeError, match=r"^GroupNorm: use_bias must be True or False, got 1\.$"):
        fn.GroupNorm(2, use_bias=1)
    with pytest.raises(
        fn.LayerValueError,
        match=r"^GroupNorm: the last \(channel\) dimension must be known at init, got shape "
        r"\(None, None\)\.$",
    ):
        fn.GroupNorm(2).init(jax.random.key(0), (None, None))
    _, params, _ = fn.RMSNorm().init(jax.random.key(0), (None, 3))
    assert sorted(params) == ["scale"]
