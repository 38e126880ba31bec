"""funcnet's in-memory program cache: rebuilt models share compiled programs."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import funcnet as fn
from funcnet._src.training.programs import PROGRAMS, _ProgramCache, shared_jit

X = np.linspace(-1, 1, 16, dtype=np.float32).reshape(8, 2)
Y = (X[:, :1] * X[:, 1:] > 0).astype(np.float32)


def playground_net(width=4):
    return fn.serial(fn.Dense(width, "tanh"), fn.Dense(1, "sigmoid"))


def train(net):
    return fn.fit(
        net,
        X,
        Y,
        loss="binary_crossentropy",
        optimizer=optax.sgd(0.1),
        epochs=3,
        batch_size=4,
        key=0,
        verbose=0,
    )


def test_a_rebuilt_model_compiles_nothing_and_trains_the_same():
    first = train(playground_net())
    compiled = PROGRAMS.misses
    again = train(playground_net())  # new objects, same structure
    assert PROGRAMS.misses == compiled
    jax.tree.map(np.testing.assert_array_equal, again.params, first.params)
    assert again.history["loss"] == first.history["loss"]


def test_a_different_model_gets_its_own_program():
    train(playground_net(4))
    compiled = PROGRAMS.misses
    wider = train(playground_net(5))
    assert PROGRAMS.misses > compiled
    assert wider.params[0]["w"].shape == (2, 5)


def test_programs_differing_only_in_a_constant_do_not_share():
    def add(c):
        return shared_jit(lambda x: x + c)

    big = np.zeros(4096, np.float32)
    other = big.copy()
    other[-1] = 7.0
    assert float(add(big)(jnp.zeros(4096))[-1]) == 0.0
    assert float(add(other)(jnp.zeros(4096))[-1]) == 7.0
    assert float(add(1.0)(jnp.zeros(2))[0]) == 1.0
    assert float(add(2.0)(jnp.zeros(2))[0]) == 2.0


def test_programs_that_print_alike_but_take_other_trees_do_not_share():
    # An empty {} holds no array, so it leaves no trace in the program's text,
    # but the executable checks the tree it was lowered with.
    with_empty = shared_jit(lambda p, x: (p["w"] * x, p["extra"]))
    without = shared_jit(lambda p, x: (p["w"] * x, {}))
    x = jnp.arange(3.0)
    y, extra = with_empty({"w": 2.0 * jnp.ones(3), "extra": {}}, x)
    np.testing.assert_array_equal(y, [0.0, 2.0, 4.0])
    assert extra == {}
    y, extra = without({"w": 3.0 * jnp.ones(3)}, x)
    np.testing.assert_array_equal(y, [0.0, 3.0, 6.0])
    assert extra == {}
    out_only = shared_jit(lambda x: (x, ()))
    assert out_only(x)[1] == ()


def test_static_arguments_and_new_shapes_each_get_a_program():
    power = shared_jit(lambda x, n: x**n, static_argnums=1)
    np.testing.assert_array_equal(power(jnp.arange(3.0), 2), [0.0, 1.0, 4.0])
    np.testing.assert_array_equal(power(jnp.arange(3.0), 3), [0.0, 1.0, 8.0])
    np.testing.assert_array_equal(power(jnp.arange(4.0), 2), [0.0, 1.0, 4.0, 9.0])


def test_the_cache_is_bounded_and_drops_the_least_recently_used():
    cache = _ProgramCache(max_programs=2)
    programs = [jax.jit(lambda x, k=k: x + k).lower(jnp.zeros(2)) for k in range(3)]
    first = cache.compiled(programs[0])
    cache.compiled(programs[1])
    assert cache.compiled(programs[0]) is first  # used again: now the most recent
    cache.compiled(programs[2])  # evicts programs[1]
    assert len(cache) == 2 and cache.misses == 3 and cache.hits == 1
    cache.compiled(programs[1])
    assert cache.misses == 4


def test_jit_equals_the_shared_program():
    def f(w, x):
        return jnp.tanh(x @ w).sum()

    w, x = jnp.ones((3, 2)), jnp.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(shared_jit(jax.grad(f))(w, x), jax.jit(jax.grad(f))(w, x))
