"""Combinators: known answers, params layout, key splitting, state, errors with paths."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet as fn

KEY = jax.random.key(0)
ones = jax.nn.initializers.ones


def arange_dense(units: int, **kwargs) -> fn.Layer:
    """A Dense whose weights are 0.1 * arange, for hand-checkable answers."""

    def w_init(key, shape, dtype):
        return 0.1 * jnp.arange(np.prod(shape), dtype=dtype).reshape(shape)

    return fn.Dense(units, w_init=w_init, b_init=ones, **kwargs)


def dense_np(x, params):
    return np.asarray(x) @ np.asarray(params["w"]) + np.asarray(params["b"])[None, :]


def Noise() -> fn.Layer:
    """Adds N(0, 1) noise drawn from its key when training."""

    def init(key, input_shape):
        return input_shape, {}, {}

    def apply(params, state, x, *, key=None, train=False):
        if not train:
            return x, state
        return x + jax.random.normal(key, x.shape, x.dtype), state

    return fn.Layer(init, apply, "Noise")


def Counter() -> fn.Layer:
    """Adds its state's count to the input; training increments the count."""

    def init(key, input_shape):
        return input_shape, {}, {"count": jnp.zeros((), jnp.float32)}

    def apply(params, state, x, *, key=None, train=False):
        y = x + state["count"]
        return y, ({"count": state["count"] + 1} if train else state)

    return fn.Layer(init, apply, "Counter")


def x_of(*shape, seed=1):
    return jax.random.normal(jax.random.key(seed), shape)


# --------------------------------------------------------------------------
# parallel, branches, fanout


def test_parallel_applies_each_layer_to_its_input():
    net = fn.parallel(arange_dense(2), lambda x: 3 * x)
    out_shape, params, state = net.init(KEY, ((None, 3), (None, 2)))
    assert out_shape == ((None, 2), (None, 2))
    assert params[1] == {} and state == ({}, {})
    a, b = x_of(4, 3), x_of(4, 2, seed=2)
    (ya, yb), _ = net.apply(params, state, (a, b))
    np.testing.assert_allclose(ya, dense_np(a, params[0]), rtol=1e-6)
    np.testing.assert_allclose(yb, 3 * np.asarray(b), rtol=1e-6)


def test_parallel_and_branches_split_the_key_one_per_child():
    x = jnp.zeros((2, 3))
    for net, inputs in (
        (fn.parallel(Noise(), Noise()), (x, x)),
        (fn.branches(Noise(), Noise()), x),
    ):
        _, params, state = net.init(
            KEY, ((None, 3), (None, 3)) if net.name == "parallel" else (None, 3)
        )
        (y0, y1), _ = net.apply(params, state, inputs, key=KEY, train=True)
        k0, k1 = jax.random.split(KEY, 2)
        np.testing.assert_array_equal(y0, jax.random.normal(k0, (2, 3)))
        np.testing.assert_array_equal(y1, jax.random.normal(k1, (2, 3)))


def test_branches_equals_fanout_then_parallel():
    heads = (arange_dense(2), fn.serial(arange_dense(3), jnp.tanh))
    net = fn.branches(*heads)
    reference = fn.serial(fn.fanout(2), fn.parallel(*heads))
    out_shape, params, state = net.init(KEY, (None, 4))
    ref_shape, ref_params, ref_state = reference.init(KEY, (None, 4))
    assert out_shape == ref_shape == ((None, 2), (None, 3))
    x = x_of(5, 4)
    got, _ = net.apply(params, state, x)
    want, _ = reference.apply((ref_params[0], params), ref_state, x)
    jax.tree.map(np.testing.assert_array_equal, got, want)


def test_fanout_copies_the_input():
    net = fn.fanout(3)
    out_shape, params, state = net.init(KEY, [None, 2])
    assert out_shape == ((None, 2),) * 3 and params == {} and state == {}
    spec = jax.ShapeDtypeStruct((None, 5), jnp.int32)
    assert net.init(KEY, spec)[0] == (spec, spec, spec)
    x = x_of(2, 2)
    ys, _ = net.apply({}, {}, x)
    assert len(ys) == 3 and all(y is x for y in ys)


def test_parallel_errors_name_the_fix():
    net = fn.parallel(fn.Dense(2), fn.Dense(2))
    with pytest.raises(
        fn.LayerValueError,
        match=re.escape(
            "parallel: expected a tuple of 2 input shapes, got one shape (None, 3). Use branches(...) "
            "to give one input to every layer, or put fanout(2) before parallel."
        ),
    ):
        net.init(KEY, (None, 3))
    with pytest.raises(
        fn.LayerValueError,
        match=re.escape("parallel: expected 2 inputs (one per layer), got 3 input shapes"),
    ):
        net.init(KEY, ((None, 3),) * 3)
    _, params, state = net.init(KEY, ((None, 3), (None, 3)))
    with pytest.raises(
        fn.LayerValueError,
        match=re.escape("parallel: expected a tuple of 2 inputs, got one array of shape (4, 3)."),
    ):
        net.apply(params, state, jnp.ones((4, 3)))
    with pytest.raises(
        fn.LayerValueError,
        match=re.escape(
            "parallel: expected 2 inputs (one per layer), got 1. Give one input per layer."
        ),
    ):
        net.apply(params, state, [jnp.ones((4, 3))])
    with pytest.raises(
        fn.LayerValueError,
        match=re.escape(
            "parallel: expected params as a tuple of 2 entries (one per child), got 1 entries."
        ),
    ):
        net.apply(params[:1], state, (jnp.ones((4, 3)),) * 2)


def test_constructor_arguments_are_validated():
    with pytest.raises(ValueError, match=r"^parallel: needs at least one layer, got none\.$"):
        fn.parallel()
    with pytest.raises(ValueError, match=r"^branches: needs at least one layer, got none\.$"):
        fn.branches()
    with pytest.raises(ValueError, match=r"^fanout: n must be an integer >= 1, got 0.$"):
        fn.fanout(0)
    with pytest.raises(ValueError, match=r"^repeat: n must be an integer >= 1, got True.$"):
        fn.repeat(fn.Dense(2), True)
    with pytest.raises(ValueError, match=r"^repeat: n must be an integer >= 1, got 0.$"):
        fn.repeat(fn.Dense(2), 0)
    with pytest.raises(TypeError, match=r"^fan_in_concat: axis must be an integer, got 1.5.$"):
        fn.fan_in_concat(1.5)
    with pytest.raises(TypeError, match="Layer constructors are calls: write Relu\\(\\), not Relu"):
        fn.residual(3)


# --------------------------------------------------------------------------
# fan-in


def test_fan_in_sum_known_answer_and_shapes():
    net = fn.fan_in_sum()
    assert net.init(KEY, ((None, 3), (4, 3), (None, 3)))[0] == (4, 3)
    xs = (x_of(4, 3), x_of(4, 3, seed=2), x_of(4, 3, seed=3))
    y, state = net.apply({}, {}, xs)
    np.testing.assert_allclose(y, sum(np.asarray(a) for a in xs), rtol=1e-6)
    assert state == {}


def test_fan_in_sum_never_broadcasts():
    net = fn.fan_in_sum()
    message = re.escape(
        "fan_in_sum: cannot sum inputs of different shapes (None, 1) and (None, 4) (funcnet does "
        "not broadcast). Make the branches produce the same shape, e.g. end each with the same "
        "Dense(units), or join them with fan_in_concat."
    )
    with pytest.raises(fn.LayerValueError, match=message):
        net.init(KEY, ((None, 1), (None, 4)))
    with pytest.raises(fn.LayerValueError, match=re.escape("shapes (2, 1) and (2, 4)")):
        net.apply({}, {}, (jnp.ones((2, 1)), jnp.ones((2, 4))))
    with pytest.raises(fn.LayerValueError, match=re.escape("shapes (None, 3) and (3,)")):
        net.init(KEY, ((None, 3), (3,)))
    with pytest.raises(
        fn.LayerTypeError,
        match=re.escape(
            "fan_in_sum: cannot sum inputs of different dtypes float32, bfloat16. Cast the branches "
            "to one dtype"
        ),
    ):
        net.apply({}, {}, (jnp.ones((2, 3)), jnp.ones((2, 3), jnp.bfloat16)))
    with pytest.raises(
        fn.LayerValueError,
        match=re.escape(
            "fan_in_sum: expected a tuple of input shapes, got one shape (None, 3). Put it after a "
            "layer with several outputs, such as parallel, branches or fanout."
        ),
    ):
        net.init(KEY, (None, 3))
    with pytest.raises(
        fn.LayerValueError,
        match=re.escape("fan_in_sum: expected a tuple of inputs, got one array of shape (2, 3)."),
    ):
        net.apply({}, {}, jnp.ones((2, 3)))


def test_fan_in_concat_known_answer():
    a, b = x_of(2, 2, 3), x_of(2, 1, 3, seed=2)
    net = fn.fan_in_concat(axis=1)
    assert net.init(KEY, ((None, 2, 3), (None, 1, 3)))[0] == (None, 3, 3)
    assert net.init(KEY, ((None, None, 3), (None, 1, 3)))[0] == (None, None, 3)
    y, _ = net.apply({}, {}, (a, b))
    np.testing.assert_array_equal(y, np.concatenate([a, b], axis=1))
    y, _ = fn.fan_in_concat().apply({}, {}, (a, a))
    np.testing.assert_array_equal(y, np.concatenate([a, a], axis=-1))


def test_fan_in_concat_errors():
    net = fn.fan_in_concat(axis=1)
    with pytest.raises(
        fn.LayerValueError,
        match=re.escape(
            "fan_in_concat: cannot concatenate inputs of shapes (None, 2, 3) and (None, 2, 4) along "
            "axis 1: every other axis must be equal (only axis 1 may differ)."
        ),
    ):
        net.init(KEY, ((None, 2, 3), (None, 2, 4)))
    with pytest.raises(fn.LayerValueError, match=re.escape("shapes (None, 2, 3) and (None, 2)")):
        net.init(KEY, ((None, 2, 3), (None, 2)))
    with pytest.raises(fn.LayerValueError, match=re.escape("shapes (2, 2, 3) and (2, 2, 4)")):
        net.apply({}, {}, (jnp.ones((2, 2, 3)), jnp.ones((2, 2, 4))))
    with pytest.raises(
        fn.LayerValueError,
        match=re.escape(
            "fan_in_concat: axis 2 is out of range for inputs of rank 2 (batch included)."
        ),
    ):
        fn.fan_in_concat(axis=2).init(KEY, ((None, 2), (None, 2)))
    with pytest.raises(fn.LayerTypeError, match="cannot concatenate inputs of different dtypes"):
        net.apply({}, {}, (jnp.ones((2, 2, 3)), jnp.ones((2, 2, 3), jnp.bfloat16)))


# --------------------------------------------------------------------------
# residual


def test_residual_known_answer():
    net = fn.residual(arange_dense(3))
    out_shape, params, state = net.init(KEY, (None, 3))
    assert out_shape == (None, 3) and len(params) == 1 and state == ({},)
    x = x_of(4, 3)
    y, _ = net.apply(params, state, x)
    np.testing.assert_allclose(y, dense_np(x, params[0]) + np.asarray(x), rtol=1e-6)


def test_residual_with_projection_known_answer():
    net = fn.residual(arange_dense(4), projection=fn.Dense(4, b_init=ones))
    out_shape, params, state = net.init(KEY, (None, 3))
    assert out_shape == (None, 4) and len(params) == 2
    x = x_of(4, 3)
    y, _ = net.apply(params, state, x)
    np.testing.assert_allclose(y, dense_np(x, params[0]) + dense_np(x, params[1]), rtol=1e-5)


def test_residual_shape_errors_suggest_a_projection():
    with pytest.raises(
        fn.LayerValueError,
        match=re.escape(
            "residual: the layer maps the input (None, 3) to (None, 4), so x + layer(x) is not defined "
            "(funcnet does not broadcast). Give the shortcut a projection: e.g. "
            "residual(layer, projection=Dense(4))."
        ),
    ):
        fn.residual(fn.Dense(4)).init(KEY, (None, 3))
    with pytest.raises(
        fn.LayerValueError,
        match=re.escape(
            "the layer maps the input (None, 4, 4, 2) to (None, 2, 2, 2), so x + layer(x) is not "
            "defined (funcnet does not broadcast). Give the shortcut a projection: a layer that maps "
            "(None, 4, 4, 2) to (None, 2, 2, 2), e.g. a strided 1x1 convolution."
        ),
    ):
        fn.residual(lambda x: x[:, ::2, ::2]).init(KEY, (None, 4, 4, 2))
    with pytest.raises(
        fn.LayerValueError,
        match=re.escape(
            "residual: the projection maps the input (None, 3) to (None, 5), but the layer maps it to "
            "(None, 4); they are added, so they must have the same shape."
        ),
    ):
        fn.residual(fn.Dense(4), projection=fn.Dense(5)).init(KEY, (None, 3))
    with pytest.raises(
        fn.LayerValueError,
        match=re.escape(
            "residual[0]: expected a layer with one output, got output shapes ((None, 3), (None, 3))."
        ),
    ):
        fn.residual(fn.fanout(2)).init(KEY, (None, 3))


def test_residual_checks_shapes_again_in_apply():
    # The output's first axis is fixed at 2, which init cannot tell from a batch of None.
    net = fn.residual(lambda x: x[:2])
    _, params, state = net.init(KEY, (None, 3))
    with pytest.raises(fn.LayerValueError, match=re.escape("maps the input (5, 3) to (2, 3)")):
        net.apply(params, state, jnp.ones((5, 3)))


# --------------------------------------------------------------------------
# repeat


def unstack(tree, n):
    return tuple(jax.tree.map(lambda a, i=i: a[i], tree) for i in range(n))


def test_repeat_stacks_params_and_equals_serial_copies():
    block = fn.serial(fn.Dense(3), jnp.tanh, Noise())
    n = 4
    net, chain = fn.repeat(block, n), fn.serial(*[block] * n)
    out_shape, params, state = net.init(KEY, (None, 3))
    chain_shape, chain_params, _ = chain.init(KEY, (None, 3))
    assert out_shape == chain_shape == (None, 3)
    assert jax.tree.map(jnp.shape, params) == ({"b": (n, 3), "w": (n, 3, 3)}, {}, {})
    # Same key splitting as serial, so the same params.
    jax.tree.map(np.testing.assert_array_equal, unstack(params, n), chain_params)
    x = x_of(5, 3)
    chain_params, chain_state = unstack(params, n), unstack(state, n)

    @jax.jit  # both models, inference and training: one program
    def outputs(x):
        out = []
        for kwargs in ({}, {"key": jax.random.key(7), "train": True}):
            got, _ = net.apply(params, state, x, **kwargs)
            want, _ = chain.apply(chain_params, chain_state, x, **kwargs)
            out.append((got, want))
        return out

    for got, want in outputs(x):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_repeat_threads_state_in_order():
    n = 3
    net = fn.repeat(Counter(), n)
    _, params, state = net.init(KEY, (None, 2))
    assert state["count"].shape == (n,)
    state = {"count": jnp.array([0.0, 1.0, 2.0])}
    x = jnp.zeros((2, 2))
    y, new_state = net.apply(params, state, x, train=True)
    np.testing.assert_array_equal(y, np.full((2, 2), 3.0))
    np.testing.assert_array_equal(new_state["count"], [1.0, 2.0, 3.0])
    y, same = net.apply(params, state, x)
    np.testing.assert_array_equal(same["count"], state["count"])


@pytest.mark.skipif(not hasattr(fn, "BatchNorm"), reason="funcnet.BatchNorm not available")
def test_repeat_with_batchnorm_equals_serial():
    block = fn.serial(fn.Dense(3), fn.BatchNorm())
    n = 3
    net, chain = fn.repeat(block, n), fn.serial(*[block] * n)
    _, params, state = net.init(KEY, (None, 3))
    x = x_of(6, 3)
    got, new_state = net.apply(params, state, x, train=True)
    want, chain_state = chain.apply(unstack(params, n), unstack(state, n), x, train=True)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        unstack(new_state, n),
        chain_state,
    )
    assert not np.allclose(jax.tree.leaves(new_state)[0], jax.tree.leaves(state)[0])


def test_repeat_program_size_does_not_grow_with_n():
    def program_size(net):
        _, params, state = net.init(KEY, (None, 4))
        jaxpr = jax.make_jaxpr(lambda p, x: net.apply(p, state, x)[0])(params, jnp.ones((2, 4)))
        return len(str(jaxpr))

    small, large = (
        program_size(fn.repeat(fn.Dense(4, "tanh"), 2)),
        program_size(fn.repeat(fn.Dense(4, "tanh"), 32)),
    )
    assert abs(large - small) <= 0.02 * small
    # The check has teeth: the unrolled chain grows about 16-fold.
    unrolled = program_size(fn.serial(*[fn.Dense(4, "tanh")] * 32))
    assert unrolled > 8 * program_size(fn.serial(*[fn.Dense(4, "tanh")] * 2))


def test_repeat_works_under_jit_and_grad():
    net = fn.repeat(fn.Dense(3, "tanh"), 3)
    _, params, state = net.init(KEY, (None, 3))
    x = x_of(2, 3)
    chain = fn.serial(*[fn.Dense(3, "tanh")] * 3)

    def loss(net, params, state):
        return jnp.sum(net.apply(params, state, x)[0] ** 2)

    got = jax.jit(jax.grad(lambda p: loss(net, p, state)))(params)
    want = jax.grad(lambda p: loss(chain, p, unstack(state, 3)))(unstack(params, 3))
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), unstack(got, 3), want
    )


def test_repeat_errors():
    with pytest.raises(
        fn.LayerValueError,
        match=re.escape(
            "repeat: the layer maps its input (None, 3) to (None, 4), but repeat feeds each copy's "
            "output to the next copy, so they must be equal. Use serial(...) to chain layers that "
            "change the shape."
        ),
    ):
        fn.repeat(fn.Dense(4), 2).init(KEY, (None, 3))
    net = fn.repeat(fn.Dense(3), 2)
    _, params, state = net.init(KEY, (None, 3))
    with pytest.raises(
        fn.LayerValueError,
        match=re.escape(
            "repeat: expected params stacked along a leading axis of size 2 (one slice per copy), got "
            "params['b'] of shape (3,)."
        ),
    ):
        net.apply(unstack(params, 2)[0], state, jnp.ones((2, 3)))
    with pytest.raises(
        fn.LayerTypeError,
        match=re.escape(
            "repeat: the layer turns inputs of dtype bfloat16 into float32, but repeat needs the "
            "same dtype in and out."
        ),
    ):
        fn.repeat(fn.Dense(3, dtype=jnp.float32), 2).apply(
            params, {}, jnp.ones((2, 3), jnp.bfloat16)
        )
    # A concrete init shape hides the batch dependence; apply checks it again.
    crop = fn.repeat(lambda x: x[:2], 2)
    _, p, s = crop.init(KEY, (2, 3))
    with pytest.raises(
        fn.LayerValueError,
        match=re.escape(
            "repeat: the layer maps an input of shape (5, 3) to (2, 3), but repeat needs them equal."
        ),
    ):
        crop.apply(p, s, jnp.ones((5, 3)))


# --------------------------------------------------------------------------
# Paths and summaries of nested models


def test_nested_init_error_names_the_path():
    net = fn.serial(fn.Identity(), fn.parallel(fn.Dense(2), fn.Dense(2), fn.Dense(3)))
    with pytest.raises(
        fn.LayerValueError,
        match=re.escape(
            "serial[1].parallel[2].Dense: the last (feature) dimension must be known at init"
        ),
    ) as info:
        net.init(KEY, ((None, 2), (None, 2), (None, None)))
    assert info.value.path == ("serial[1]", "parallel[2]", "Dense")


def test_nested_apply_error_names_the_path_inside_repeat():
    net = fn.serial(fn.Dense(3), fn.branches(fn.Dense(3), fn.repeat(fn.Dense(3), 2)))
    _, params, state = net.init(KEY, (None, 3))
    _, wide, _ = fn.repeat(fn.Dense(4), 2).init(KEY, (None, 4))
    params = (params[0], (params[1][0], wide))
    with pytest.raises(
        fn.LayerValueError,
        match=re.escape(
            "serial[1].branches[1].repeat[0:2].Dense: expected input with last dimension 4"
        ),
    ):
        jax.jit(lambda p, x: net.apply(p, state, x))(params, jnp.ones((2, 3)))


def test_summary_lists_nested_children():
    net = fn.serial(
        fn.Dense(4),
        fn.branches(fn.residual(fn.Dense(4)), fn.repeat(fn.Dense(4), 3)),
        fn.fan_in_concat(),
    )
    rows = fn.summary(net, (None, 2)).splitlines()
    cells = [tuple(row.split()) for row in rows[2:-2]]
    assert cells == [
        ("input", "(None,", "2)", "0"),
        ("serial[0].Dense", "(None,", "4)", "12"),
        ("serial[1].branches", "((None,", "4),", "(None,", "4))", "80"),
        ("serial[1].branches[0].residual", "(None,", "4)", "20"),
        ("serial[1].branches[0].residual[0].Dense", "(None,", "4)", "20"),
        ("serial[1].branches[1].repeat", "(None,", "4)", "60"),
        ("serial[1].branches[1].repeat[0:3].Dense", "(None,", "4)", "60"),
        ("serial[2].fan_in_concat", "(None,", "8)", "0"),
    ]
    assert rows[-1] == "Total params: 92"
