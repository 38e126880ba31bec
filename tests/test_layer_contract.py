"""Generic tests over every registered layer: the contract of funcnet.core."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import funcnet as fn
from tests.registry import Case, all_cases

CASES = all_cases()
BATCH = 3


def concrete(shape, batch=BATCH):
    if isinstance(shape, jax.ShapeDtypeStruct):
        return tuple(batch if d is None else d for d in shape.shape)
    if all(d is None or isinstance(d, int) for d in shape):
        return tuple(batch if d is None else d for d in shape)
    return tuple(concrete(s, batch) for s in shape)


def example_input(case: Case, key, dtype=jnp.float32, batch=BATCH):
    shapes = concrete(case.input_shape, batch)
    dtype = case.input_dtype or dtype
    if all(isinstance(d, int) for d in shapes):
        return case.make_input(key, shapes, dtype)
    keys = jax.random.split(key, len(shapes))
    return tuple(case.make_input(k, s, dtype) for k, s in zip(keys, shapes))


_BUILT: dict[str, tuple] = {}


def build(case: Case):
    """The case's layer, initialised once per case (params are immutable arrays, safe to share)."""
    if case.label not in _BUILT:
        net = case.make()
        out_shape, params, state = net.init(jax.random.key(1), case.input_shape)
        _BUILT[case.label] = (net, out_shape, params, state)
    return _BUILT[case.label]


def run(net, params, state, x, **kwargs):
    return net.apply(params, state, x, **kwargs)


@pytest.fixture(
    params=[pytest.param(c, marks=pytest.mark.slow) if c.slow else c for c in CASES],
    ids=[c.label for c in CASES],
)
def case(request):
    return request.param


def test_init_shape_equals_apply_shape(case):
    net, out_shape, params, state = build(case)
    x = example_input(case, jax.random.key(2))
    y, _ = jax.eval_shape(lambda p, s, x: run(net, p, s, x), params, state, x)
    got = jax.tree.map(lambda a: a.shape, y)
    assert (
        jax.tree.map(lambda s: concrete(s), out_shape, is_leaf=lambda s: isinstance(s, tuple))
        == got
    )


def test_jit_equals_eager(case):
    net, _, params, state = build(case)
    x = example_input(case, jax.random.key(2))
    eager, _ = run(net, params, state, x)
    jitted, _ = jax.jit(lambda p, s, x: run(net, p, s, x))(params, state, x)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), eager, jitted)


def test_vmap_over_extra_axis_equals_separate_calls(case):
    net, _, params, state = build(case)
    xs = [example_input(case, jax.random.key(i)) for i in range(2)]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *xs)
    # Both compiled (one program each; eager vmap would compile every operation).
    call = jax.jit(lambda x: run(net, params, state, x)[0])
    mapped = jax.jit(jax.vmap(lambda x: run(net, params, state, x)[0]))(stacked)
    for i, x in enumerate(xs):
        single = call(x)
        jax.tree.map(
            lambda a, b, i=i: np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-5),
            mapped,
            single,
        )


def test_train_false_leaves_state_unchanged(case):
    net, _, params, state = build(case)
    x = example_input(case, jax.random.key(2))
    _, new_state = jax.jit(lambda p, s, x: run(net, p, s, x))(params, state, x)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    jax.tree.map(np.testing.assert_array_equal, new_state, state)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["float32", "bfloat16"])
def test_float_dtype_is_preserved(case, dtype):
    if not case.float_dtypes:
        pytest.skip("the layer's output dtype does not follow its input's")
    net, _, params, state = build(case)
    x = example_input(case, jax.random.key(2), dtype)
    # A dtype is decided when the program is traced: no need to compile it.
    y, _ = jax.eval_shape(lambda p, s, x: run(net, p, s, x), params, state, x)
    for leaf in jax.tree.leaves(y):
        assert leaf.dtype == dtype


def test_float64_gradients_match_numerical(case):
    if not case.grad_check:
        pytest.skip("not differentiable everywhere at random points")
    with jax.enable_x64(True):
        net = case.make()
        _, params, state = net.init(jax.random.key(1), case.input_shape)
        params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
        x = example_input(case, jax.random.key(2), jnp.float64)

        @jax.jit  # a few compiled programs, not one per operation
        def f(params, x):
            y, _ = run(net, params, state, x)
            return sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(y))

        floats = jax.tree.leaves(x)
        if all(jnp.issubdtype(a.dtype, jnp.floating) for a in floats):
            check_grads(f, (params, x), order=1, modes=["rev"], atol=1e-5, rtol=1e-5)
        else:
            check_grads(lambda p: f(p, x), (params,), order=1, modes=["rev"], atol=1e-5, rtol=1e-5)


def test_float32_reverse_mode_gradient_is_finite(case):
    # Training differentiates in float32 with jax.grad (reverse mode), which
    # some primitives support only in some forms; check_grads above runs in float64.
    net, _, params, state = build(case)
    x = example_input(case, jax.random.key(2))

    def f(params, x):
        y, _ = run(net, params, state, x)
        return sum(jnp.sum(leaf.astype(jnp.float32)) for leaf in jax.tree.leaves(y))

    floating = all(jnp.issubdtype(a.dtype, jnp.floating) for a in jax.tree.leaves(x))
    grads = jax.jit(jax.grad(f, argnums=(0, 1) if floating else 0))(params, x)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def _layer_constructors() -> set[str]:
    names = set()
    for name in dir(fn):
        obj = getattr(fn, name)
        if name.startswith("_") or not inspect.isfunction(obj):
            continue
        if inspect.signature(obj).return_annotation in ("Layer", fn.Layer):
            names.add(name)
    return names


def test_every_public_layer_is_registered():
    registered = {case.name for case in CASES}
    missing = _layer_constructors() - registered
    assert not missing, f"public layers missing from tests/registry: {sorted(missing)}"


def test_coverage_check_sees_the_layers():
    # Guards the coverage test itself: it must find the layers we know of.
    assert {"Dense", "Relu", "serial", "Lambda", "from_stax"} <= _layer_constructors()
