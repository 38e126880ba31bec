"""Initialisation as one compiled program, shared by models of the same structure."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import funcnet as fn
from funcnet._src.training.programs import PROGRAMS

OPT = optax.adam(0.01)


def playground_net():
    return fn.serial(fn.Dense(4, "tanh"), fn.Dense(2, "tanh"), fn.Dense(1, "sigmoid"))


def eager(net, key):
    """What init_train_state computes, one operation at a time."""
    init_key, train_key = jax.random.split(key)
    _, params, state = net.init(init_key, (None, 2))
    return params, state, OPT.init(params), train_key


def test_the_compiled_init_equals_the_eager_one():
    net, key = playground_net(), jax.random.key(3)
    ts = fn.init_train_state(net, OPT, (None, 2), key=key)
    params, state, opt_state, train_key = eager(net, key)
    jax.tree.map(np.testing.assert_array_equal, (ts.params, ts.opt_state), (params, opt_state))
    assert jax.tree.structure(ts.state) == jax.tree.structure(state)
    np.testing.assert_array_equal(jax.random.key_data(ts.key), jax.random.key_data(train_key))
    assert int(ts.step) == 0 and ts.step.dtype == jnp.int32


def test_models_of_the_same_structure_share_one_program_and_others_do_not():
    fn.init_train_state(playground_net(), OPT, (None, 2), key=0)
    compiled = PROGRAMS.misses
    again = fn.init_train_state(playground_net(), OPT, (None, 2), key=1)  # a new object
    assert PROGRAMS.misses == compiled  # shared: no second compilation
    fn.init_train_state(fn.serial(fn.Dense(5, "tanh"), fn.Dense(1)), OPT, (None, 2), key=0)
    assert PROGRAMS.misses == compiled + 1
    expected, *_ = eager(playground_net(), jax.random.key(1))
    jax.tree.map(np.testing.assert_array_equal, again.params, expected)


def scaled_init(scale):
    def init(key, shape, dtype=jnp.float32):
        return scale * jnp.ones(shape, dtype)

    return init


def test_initializers_differing_only_in_a_constant_get_their_own_values():
    small = fn.init_train_state(fn.Dense(2, w_init=scaled_init(0.25)), OPT, (None, 3), key=0)
    large = fn.init_train_state(fn.Dense(2, w_init=scaled_init(0.2500001)), OPT, (None, 3), key=0)
    np.testing.assert_array_equal(small.params["w"], np.full((3, 2), 0.25, np.float32))
    np.testing.assert_array_equal(large.params["w"], np.full((3, 2), 0.2500001, np.float32))


def from_table(table):
    def init(key, shape, dtype=jnp.float32):
        return jnp.asarray(table, dtype)  # a jaxpr constant: the text omits its values

    return init


def test_captured_arrays_get_their_own_values_and_concrete_initializers_run_eagerly():
    table = np.arange(6, dtype=np.float32).reshape(3, 2)
    for values in (table, table + 1):  # equal jaxpr text, different constants
        ts = fn.init_train_state(fn.Dense(2, w_init=from_table(values)), OPT, (None, 3))
        np.testing.assert_array_equal(ts.params["w"], values)

    def concrete(key, shape, dtype=jnp.float32):
        w = jax.random.normal(key, shape, dtype)
        return w if float(jnp.sum(w)) > 0 else -w  # needs a value, not a tracer

    flipped = fn.init_train_state(fn.Dense(2, w_init=concrete), OPT, (None, 3), key=0)
    assert float(jnp.sum(flipped.params["w"])) > 0


def test_inside_vmap_init_is_traced_into_the_caller():
    keys = jax.random.split(jax.random.key(0), 3)
    stacked = jax.vmap(lambda k: fn.init_train_state(playground_net(), OPT, (None, 2), key=k))(keys)
    assert stacked.params[0]["w"].shape == (3, 2, 4)
    one = fn.init_train_state(playground_net(), OPT, (None, 2), key=keys[1])
    np.testing.assert_allclose(stacked.params[0]["w"][1], one.params[0]["w"], rtol=1e-6)


def test_concrete_initializers_take_the_eager_path_inside_nested_combinators():
    # Inside a combinator the ConcretizationTypeError arrives wrapped in a
    # LayerError that names the path; the fallback must still see it.
    def concrete(key, shape, dtype=jnp.float32):
        w = jax.random.normal(key, shape, dtype)
        return w if float(jnp.sum(w)) > 0 else -w

    def nested():
        return fn.serial(fn.serial(fn.Dense(2, w_init=concrete)), fn.Dense(1))

    ts = fn.init_train_state(nested(), OPT, (None, 3), key=0)
    assert float(jnp.sum(ts.params[0][0]["w"])) > 0
    x, y = np.ones((8, 3), np.float32), np.ones((8, 1), np.float32)
    result = fn.fit(nested(), x, y, loss="mse", optimizer=OPT, epochs=1, key=0, verbose=0)
    assert np.isfinite(result.history["loss"][-1])


def test_other_errors_while_tracing_init_are_not_swallowed():
    def broken(key, shape, dtype=jnp.float32):
        raise RuntimeError("broken initializer")

    with pytest.raises(fn.LayerValueError, match=r"RuntimeError: broken initializer"):
        fn.init_train_state(fn.serial(fn.serial(fn.Dense(2, w_init=broken))), OPT, (None, 3))


def test_the_same_model_is_traced_once_and_not_kept_alive():
    import gc
    import weakref

    traces = []

    def counting_init(key, shape, dtype=jnp.float32):
        traces.append(shape)
        return jnp.zeros(shape, dtype)

    net = fn.Dense(3, w_init=counting_init)
    first = fn.init_train_state(net, OPT, (None, 2), key=0)
    second = fn.init_train_state(net, OPT, (None, 2), key=1)
    assert len(traces) == 1  # the second call reused the traced program
    jax.tree.map(np.testing.assert_array_equal, first.params, second.params)
    dead = weakref.ref(net.apply)
    del net
    gc.collect()
    assert dead() is None  # the program cache holds the model only weakly
