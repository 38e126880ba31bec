"""Generic tests over every registered layer: the contract of funcnet.core.

Every case's first configuration runs by default for the init/apply shape,
jit == eager, vmap, train=False, dtype and finite float32 gradient checks;
further configurations of a constructor run with ``-m slow`` (tests/registry).

The float64 numerical gradient check runs by default only for the layers whose
gradient is not plain JAX autodiff of standard primitives (``FLOAT64_BY_DEFAULT``):
custom_vjp layers, the convolution and pooling CPU kernels (im2col, tap slices),
recurrent scans (and the masked ones behind Masking/pass_mask), rematerialised and
scanned combinators (remat, repeat), attention and the Transformer blocks, and the
other libraries' wrappers. For the rest (dense, activations, shape layers, norms,
dropout, embeddings, plain combinators) a wrong gradient would be a bug in JAX
itself; their float64 check runs with ``-m slow`` (CI runs both), and their
float32 gradient is still checked finite by default.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

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


class Built(NamedTuple):
    """A case's layer, initialised once, with its forward compiled once."""

    net: Any
    out_shape: Any
    params: Any
    state: Any
    # jax.jit of (apply(params, state, x) at train=False, float32 gradient finite per leaf)
    forward: Callable[..., Any]


_BUILT: dict[str, Built] = {}


def build(case: Case) -> Built:
    """The case's layer, initialised once per case (params are immutable arrays, safe to share)."""
    if case.label not in _BUILT:
        net = case.make()
        # Eager init: its small per-operation programs are shared by every case
        # (a compiled init is one program per case, dearer in total).
        out_shape, params, state = net.init(jax.random.key(1), case.input_shape)
        # One program shared by the jit-equals-eager, train=False, vmap and float32
        # gradient tests: the forward and whether its gradient is finite.
        forward = jax.jit(lambda p, s, x: (run(net, p, s, x), gradient_is_finite(net, p, s, x)))
        _BUILT[case.label] = Built(net, out_shape, params, state, forward)
    return _BUILT[case.label]


def run(net, params, state, x, **kwargs):
    return net.apply(params, state, x, **kwargs)


def gradient_is_finite(net, params, state, x):
    """Whether jax.grad (reverse mode, float32, as training uses) is finite everywhere."""

    def f(params, x):
        y, _ = run(net, params, state, x)
        return sum(jnp.sum(leaf.astype(jnp.float32)) for leaf in jax.tree.leaves(y))

    floating = all(jnp.issubdtype(a.dtype, jnp.floating) for a in jax.tree.leaves(x))
    grads = jax.grad(f, argnums=(0, 1) if floating else 0)(params, x)
    return [jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]


@pytest.fixture(
    params=[pytest.param(c, marks=pytest.mark.slow) if c.slow else c for c in CASES],
    ids=[c.label for c in CASES],
)
def case(request):
    return request.param


# Constructors whose float64 gradient check runs by default (see the module docstring).
FLOAT64_BY_DEFAULT = {
    "custom_vjp_layer",
    "Conv",
    "ConvTranspose",
    "MaxPool",
    "AvgPool",
    "SimpleRNN",
    "LSTM",
    "GRU",
    "Bidirectional",
    "Masking",
    "pass_mask",
    "remat",
    "repeat",
    "MultiHeadAttention",
    "TransformerEncoderBlock",
    "TransformerDecoderBlock",
    "TransformerLM",
    "tied_embedding",
    "from_stax",
    "from_flax",
    "from_nnx",
    "from_equinox",
    "from_haiku",
    "from_keras_layer",
}


@pytest.fixture(
    params=[
        pytest.param(c, marks=pytest.mark.slow) if c.slow or c.name not in FLOAT64_BY_DEFAULT else c
        for c in CASES
    ],
    ids=[c.label for c in CASES],
)
def grad_case(request):
    return request.param


def test_float64_rule_names_registered_layers():
    # A renamed constructor must not silently drop out of the default float64 check.
    assert FLOAT64_BY_DEFAULT <= {case.name for case in CASES}


def test_init_shape_equals_apply_shape(case):
    net, out_shape, params, state, _ = build(case)
    x = example_input(case, jax.random.key(2))
    y, _ = jax.eval_shape(lambda p, s, x: run(net, p, s, x), params, state, x)
    got = jax.tree.map(lambda a: a.shape, y)
    assert (
        jax.tree.map(lambda s: concrete(s), out_shape, is_leaf=lambda s: isinstance(s, tuple))
        == got
    )


def test_jit_equals_eager(case):
    net, _, params, state, forward = build(case)
    x = example_input(case, jax.random.key(2))
    # The one eager run of the case (each operation compiles its own program).
    eager, _ = run(net, params, state, x)
    (jitted, _), _ = forward(params, state, x)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), eager, jitted)


def test_vmap_over_extra_axis_equals_separate_calls(case):
    net, _, params, state, forward = build(case)
    xs = [example_input(case, jax.random.key(i)) for i in range(2)]
    stacked = jax.tree.map(lambda *a: np.stack(a), *xs)  # numpy: no program to compile
    # Both compiled (eager vmap would compile every operation); the single calls
    # reuse the case's forward program.
    mapped = jax.jit(jax.vmap(lambda x: run(net, params, state, x)[0]))(stacked)
    for i, x in enumerate(xs):
        (single, _), _ = forward(params, state, x)
        jax.tree.map(
            lambda a, b, i=i: np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-5),
            mapped,
            single,
        )


def test_train_false_leaves_state_unchanged(case):
    _, _, params, state, forward = build(case)
    x = example_input(case, jax.random.key(2))
    (_, new_state), _ = forward(params, state, x)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    jax.tree.map(np.testing.assert_array_equal, new_state, state)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["float32", "bfloat16"])
def test_float_dtype_is_preserved(case, dtype):
    if not case.float_dtypes:
        pytest.skip("the layer's output dtype does not follow its input's")
    net, _, params, state, _ = build(case)
    x = example_input(case, jax.random.key(2), dtype)
    # A dtype is decided when the program is traced: no need to compile it.
    y, _ = jax.eval_shape(lambda p, s, x: run(net, p, s, x), params, state, x)
    for leaf in jax.tree.leaves(y):
        assert leaf.dtype == dtype


GRAD_EPS = 1e-4  # jax.test_util.check_grads' default step
GRAD_TOL = 1e-5


def _random_like(rng, tree):
    return jax.tree.map(lambda a: np.asarray(rng.randn(*np.shape(a)), dtype=a.dtype), tree)


def _inner(xs, ys):
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(xs), jax.tree.leaves(ys)))


def test_float64_gradients_match_numerical(grad_case):
    """jax.test_util.check_grads(order=1, modes=["rev"]), as one compiled program.

    check_grads runs its vjp, tangent arithmetic and inner products eagerly (a
    dozen or more programs per case); here the same check -- one random direction,
    central differences with its step, its tolerances -- compiles once.
    """
    case = grad_case
    if not case.grad_check:
        pytest.skip("not differentiable everywhere at random points")
    net, _, params32, state, _ = build(case)
    x32 = example_input(case, jax.random.key(2))
    with jax.enable_x64(True):
        # The case's float32 params and input, cast in numpy (no program to compile).
        params = jax.tree.map(lambda a: np.asarray(a, np.float64), params32)
        x = jax.tree.map(
            lambda a: np.asarray(a, np.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a,
            x32,
        )
        floating = all(jnp.issubdtype(a.dtype, jnp.floating) for a in jax.tree.leaves(x))

        def f(args):
            params, x = args if floating else (args, x_fixed)
            y, _ = run(net, params, state, x)
            return sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(y))

        x_fixed = x
        args = (params, x) if floating else params
        rng = np.random.RandomState(0)
        tangent = _random_like(rng, args)

        @jax.jit
        def check(args, tangent):
            value, grad = jax.value_and_grad(f)(args)
            step = jax.tree.map(lambda t: GRAD_EPS * t, tangent)
            up = f(jax.tree.map(jnp.add, args, step))
            down = f(jax.tree.map(jnp.subtract, args, step))
            numerical = (up - down) * (0.5 / GRAD_EPS)
            return value, f(args), _inner(tangent, grad), numerical

        value, expected_value, analytic, numerical = check(args, tangent)
        cotangent = rng.randn()
        np.testing.assert_allclose(value, expected_value, atol=GRAD_TOL, rtol=GRAD_TOL)
        np.testing.assert_allclose(
            analytic * cotangent, numerical * cotangent, atol=GRAD_TOL, rtol=GRAD_TOL
        )


def test_float32_reverse_mode_gradient_is_finite(case):
    # Training differentiates in float32 with jax.grad (reverse mode), which
    # some primitives support only in some forms; the check above runs in float64.
    _, _, params, state, forward = build(case)
    x = example_input(case, jax.random.key(2))
    _, finite = forward(params, state, x)
    assert all(bool(ok) for ok in finite)


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
