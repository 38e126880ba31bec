"""Dropout: inverted scaling, statistics of the mask, keys and the error without one."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet as fn

N = 20_000


def train_apply(net):
    return jax.jit(functools.partial(net.apply, {}, {}, train=True))


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_fraction_dropped_is_rate_and_mean_is_preserved(rate):
    x = jnp.ones((4, N // 4))
    y, _ = train_apply(fn.Dropout(rate))(x, key=jax.random.key(0))
    y = np.asarray(y)
    dropped = (y == 0).mean()
    # Binomial(N, rate): 5 standard deviations of the observed fraction.
    bound = 5 * math.sqrt(rate * (1 - rate) / N)
    assert abs(dropped - rate) < bound
    # Every kept value is scaled by exactly 1 / (1 - rate)...
    np.testing.assert_allclose(y[y != 0], 1 / (1 - rate), rtol=1e-6)
    # ...so the mean, (1 - dropped) / (1 - rate), is 1 within the same bound, rescaled.
    assert abs(y.mean() - 1.0) < bound / (1 - rate)


def test_inference_is_the_identity():
    net = fn.Dropout(0.5)
    out_shape, params, state = net.init(jax.random.key(0), (None, 3, 2))
    assert (out_shape, params, state) == ((None, 3, 2), {}, {})
    x = jax.random.normal(jax.random.key(1), (4, 3, 2))
    y, new_state = net.apply(params, state, x)
    np.testing.assert_array_equal(y, x)
    y, _ = net.apply(params, state, x, key=jax.random.key(2))  # a key alone does not drop
    np.testing.assert_array_equal(y, x)
    assert new_state == {}


def test_same_key_same_mask_and_different_keys_differ():
    step = train_apply(fn.Dropout(0.5))
    x = jnp.ones((8, 64))
    a, _ = step(x, key=jax.random.key(3))
    b, _ = step(x, key=jax.random.key(3))
    c, _ = step(x, key=jax.random.key(4))
    np.testing.assert_array_equal(a, b)
    # Independent masks agree on about half the 512 entries; equality would be a bug.
    agreement = (np.asarray(a) == np.asarray(c)).mean()
    assert 0.3 < agreement < 0.7


def test_values_are_kept_not_just_ones():
    x = jnp.arange(1.0, 101.0).reshape(2, 50)
    y, _ = train_apply(fn.Dropout(0.25))(x, key=jax.random.key(5))
    kept = np.asarray(y) != 0
    np.testing.assert_allclose(np.asarray(y)[kept], np.asarray(x)[kept] / 0.75, rtol=1e-6)


def test_gradient_is_the_scaled_mask():
    net = fn.Dropout(0.5)
    x = jnp.linspace(1.0, 2.0, 40).reshape(4, 10)
    key = jax.random.key(6)

    def f(x):
        return jnp.sum(net.apply({}, {}, x, train=True, key=key)[0])

    grad = jax.grad(f)(x)
    y, _ = net.apply({}, {}, x, train=True, key=key)
    np.testing.assert_allclose(grad, np.where(np.asarray(y) != 0, 2.0, 0.0))


def test_rate_zero_trains_without_a_key():
    x = jnp.ones((2, 3))
    y, _ = fn.Dropout(0.0).apply({}, {}, x, train=True)
    np.testing.assert_array_equal(y, x)


def test_bfloat16_is_preserved_when_training():
    y, _ = train_apply(fn.Dropout(0.5))(jnp.ones((4, 4), jnp.bfloat16), key=jax.random.key(0))
    assert y.dtype == jnp.bfloat16
    assert set(np.asarray(y, np.float32).ravel().tolist()) <= {0.0, 2.0}


def test_accepts_raw_uint32_keys():
    y, _ = fn.Dropout(0.5).apply({}, {}, jnp.ones((2, 8)), train=True, key=jax.random.PRNGKey(0))
    assert set(np.asarray(y).ravel().tolist()) <= {0.0, 2.0}


def test_training_without_a_key_shows_the_corrected_call():
    net = fn.Dropout(0.3)
    expected = (
        r"^Dropout: Dropout needs a key when train=True: call net\.apply\(params, state, x, "
        r"train=True, key=jax\.random\.key\(0\)\) \(fit and the train step pass one for you\)\.$"
    )
    with pytest.raises(fn.LayerValueError, match=expected):
        net.apply({}, {}, jnp.ones((2, 3)), train=True)


def test_missing_key_error_carries_the_path_inside_serial():
    net = fn.serial(fn.Dense(3), fn.Dropout(0.5))
    _, params, state = net.init(jax.random.key(0), (None, 2))
    with pytest.raises(fn.LayerValueError, match=r"^serial\[1\]\.Dropout: Dropout needs a key"):
        net.apply(params, state, jnp.ones((1, 2)), train=True)
    y, _ = net.apply(params, state, jnp.ones((1, 2)), train=True, key=jax.random.key(1))
    assert y.shape == (1, 3)


@pytest.mark.parametrize("rate", [1.0, -0.1, 1.5, True, "0.5", None])
def test_rate_outside_zero_one_is_rejected(rate):
    with pytest.raises(
        ValueError,
        match=r"^Dropout: rate is the probability of dropping a value and must be in \[0, 1\), "
        r"got .*\. For a keep probability p, pass rate=1 - p\.$",
    ):
        fn.Dropout(rate)


def test_integer_input_is_rejected():
    with pytest.raises(
        fn.LayerTypeError, match=r"^Dropout: expected floating-point input, got dtype int32"
    ):
        fn.Dropout(0.5).apply(
            {}, {}, jnp.ones((2, 3), jnp.int32), train=True, key=jax.random.key(0)
        )
