"""custom_vjp_layer and check_layer_grads: hand-written backward passes and their checks."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet as fn

KEY = jax.random.key(0)


def scale_layer(
    backward_factor: float = 1.0, x_factor: float = 1.0, name: str = "Scale"
) -> fn.Layer:
    """``y = x * s``; the backward's dparams and dx are scaled by the given factors."""

    def forward(params, x):
        s = params["s"].astype(x.dtype)
        return x * s[None, :], (x, s)

    def backward(residuals, dy):
        x, s = residuals
        return {"s": backward_factor * jnp.sum(dy * x, axis=0)}, x_factor * dy * s[None, :]

    def init_params(key, shape):
        return {"s": jax.random.normal(key, shape[-1:])}

    return fn.custom_vjp_layer(forward, backward, init_params, name=name)


def x_of(*shape, seed=1, dtype=jnp.float32):
    return jax.random.normal(jax.random.key(seed), shape, dtype)


def test_init_infers_the_output_shape_and_gives_init_params_the_shape():
    seen = []

    def init_params(key, shape):
        seen.append(shape)
        return {"s": jnp.ones(shape[-1:])}

    layer = fn.custom_vjp_layer(
        lambda p, x: (jnp.concatenate([x, x], axis=-1), ()), lambda r, dy: (None, None), init_params
    )
    out_shape, _, state = layer.init(KEY, (None, 3))
    assert out_shape == (None, 6) and seen == [(None, 3)] and state == {}


def test_the_backward_is_what_grad_uses():
    layer = scale_layer(backward_factor=3.0, x_factor=-2.0)
    _, params, state = layer.init(KEY, (None, 2))
    x = x_of(4, 2)
    y, _ = layer.apply(params, state, x)
    np.testing.assert_allclose(y, np.asarray(x) * np.asarray(params["s"])[None, :], rtol=1e-6)

    def loss(params, x):
        return jnp.sum(layer.apply(params, state, x)[0])

    dparams, dx = jax.grad(loss, argnums=(0, 1))(params, x)
    np.testing.assert_allclose(dparams["s"], 3.0 * np.sum(np.asarray(x), axis=0), rtol=1e-5)
    np.testing.assert_allclose(dx, -2.0 * np.broadcast_to(params["s"], (4, 2)), rtol=1e-6)


def test_works_under_jit_vmap_and_inside_serial():
    net = fn.serial(fn.Dense(3), scale_layer(), jnp.tanh, fn.Dense(1))
    reference = fn.serial(
        fn.Dense(3), fn.custom_layer(lambda p, x: x * p["s"][None, :], None), jnp.tanh, fn.Dense(1)
    )
    _, params, state = net.init(KEY, (None, 2))
    x = x_of(5, 2)

    def loss(net, params, x):
        return jnp.sum(net.apply(params, state, x)[0] ** 2)

    xs = jnp.stack([x, 2 * x])
    grad = jax.grad(loss, argnums=1)

    @jax.jit  # every gradient below in one compiled program, not one per op or per check
    def gradients(params, x, xs):
        return {
            "want": grad(reference, params, x),
            "got": grad(net, params, x),
            # Per-example gradients: vmap of grad.
            "per_example": jax.vmap(lambda xi: grad(net, params, xi[None]))(x),
            # grad of vmap over an extra axis.
            "got_v": jax.grad(lambda p: jnp.sum(jax.vmap(lambda xi: loss(net, p, xi))(xs)))(params),
            "want_v": jax.grad(lambda p: loss(reference, p, x) + loss(reference, p, 2 * x))(params),
        }

    g = gradients(params, x, xs)
    want, got, per_example, got_v, want_v = (
        g[k] for k in ("want", "got", "per_example", "got_v", "want_v")
    )
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), got, want)
    # Per-example gradients, summed, equal the batch gradient.
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a.sum(0), b, rtol=1e-5, atol=1e-6),
        per_example,
        want,
    )
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), got_v, want_v)


def test_cotangents_are_cast_to_the_primal_dtype():
    layer = fn.custom_vjp_layer(
        lambda p, x: (2 * x, ()),
        lambda r, dy: (None, 2 * dy.astype(jnp.float32)),
        lambda key, shape: {},
    )
    x = x_of(2, 3, dtype=jnp.bfloat16)
    dx = jax.grad(lambda x: jnp.sum(layer.apply({}, {}, x)[0]).astype(jnp.float32))(x)
    assert dx.dtype == jnp.bfloat16
    np.testing.assert_array_equal(dx.astype(jnp.float32), np.full((2, 3), 2.0))


def test_integer_inputs_and_none_cotangents():
    # A lookup table with a hand-written scatter-add backward; ids get no cotangent.
    def forward(params, ids):
        return params["table"][ids], ids

    def backward(ids, dy):
        return {"table": jnp.zeros((4, 2), dy.dtype).at[ids].add(dy)}, None

    lookup = fn.custom_vjp_layer(forward, backward, lambda key, shape: {"table": jnp.ones((4, 2))})
    spec = jax.ShapeDtypeStruct((None,), jnp.int32)
    out_shape, params, _ = lookup.init(KEY, spec)
    assert out_shape == (None, 2)
    ids = jnp.array([0, 2, 2])
    grads = jax.grad(lambda p: jnp.sum(lookup.apply(p, {}, ids)[0]))(params)
    np.testing.assert_array_equal(grads["table"], [[1, 1], [0, 0], [2, 2], [0, 0]])


def test_forward_and_backward_errors_name_the_layer():
    init = lambda key, shape: {}  # noqa: E731
    bad_forward = fn.custom_vjp_layer(lambda p, x: x, lambda r, dy: (None, dy), init, name="Bad")
    with pytest.raises(
        fn.LayerTypeError,
        match=re.escape(
            "Bad: forward must return a pair (y, residuals), got ArrayImpl. Return (y, ()) when "
            "backward needs no residuals."
        ),
    ):
        bad_forward.apply({}, {}, jnp.ones(2))

    def grad_of(layer, params, x):
        return jax.grad(lambda p, x: jnp.sum(layer.apply(p, {}, x)[0]), argnums=(0, 1))(params, x)

    single = fn.custom_vjp_layer(lambda p, x: (x, ()), lambda r, dy: dy, init, name="Bad")
    with pytest.raises(
        fn.LayerTypeError,
        match=re.escape("Bad: backward must return a pair (dparams, dx), got ArrayImpl."),
    ):
        grad_of(single, {}, jnp.ones(2))

    params = {"s": jnp.ones(3)}
    unsummed = fn.custom_vjp_layer(
        lambda p, x: (x * p["s"][None, :], x), lambda x, dy: ({"s": dy * x}, dy), init, name="Bad"
    )
    with pytest.raises(
        fn.LayerValueError,
        match=re.escape(
            "Bad: backward returned dparams['s'] of shape (2, 3), expected (3,), the shape of "
            "params['s']. Sum over the axes that the forward broadcast."
        ),
    ):
        grad_of(unsummed, params, jnp.ones((2, 3)))
    wrong_tree = fn.custom_vjp_layer(
        lambda p, x: (x * p["s"][None, :], ()), lambda r, dy: ({"t": dy[0]}, dy), init, name="Bad"
    )
    with pytest.raises(
        fn.LayerValueError,
        match=re.escape(
            "Bad: backward returned dparams with structure PyTreeDef({'t': *}), expected the "
            "structure of params, PyTreeDef({'s': *})."
        ),
    ):
        grad_of(wrong_tree, params, jnp.ones((2, 3)))
    wrong_dx = fn.custom_vjp_layer(
        lambda p, x: (x, ()), lambda r, dy: (None, dy[0]), init, name="Bad"
    )
    with pytest.raises(
        fn.LayerValueError,
        match=re.escape(
            "Bad: backward returned dx of shape (3,), expected (2, 3), the shape of x."
        ),
    ):
        grad_of(wrong_dx, {}, jnp.ones((2, 3)))


# --------------------------------------------------------------------------
# check_layer_grads


def test_check_passes_for_a_correct_backward_in_a_model():
    net = fn.serial(fn.Dense(3), scale_layer(), jnp.tanh)
    _, params, _ = net.init(KEY, (None, 2))
    report = fn.check_layer_grads(net, params, x_of(4, 2))
    assert report.ok and report.failures == ()
    assert set(report.errors) == {"autodiff", "numerical"}
    assert set(report.errors["numerical"]) == {
        "params[0]['b']",
        "params[0]['w']",
        "params[1]['s']",
        "x",
    }
    assert max(report.errors["autodiff"].values()) < 1e-12
    assert max(report.errors["numerical"].values()) < 1e-7
    assert str(report).startswith("gradient check ok: worst ")


def test_check_names_the_wrong_path():
    net = fn.serial(fn.Dense(3), scale_layer(backward_factor=2.0), jnp.tanh)
    _, params, _ = net.init(KEY, (None, 2))
    x = x_of(4, 2)
    with pytest.raises(
        fn.GradCheckError,
        match=r"gradient check mismatch: worst params\[1\]\['s'\] against (autodiff|numerical), "
        r"max abs error",
    ) as info:
        fn.check_layer_grads(net, params, x)
    report = info.value.report
    assert set(report.failures) == {("autodiff", "params[1]['s']"), ("numerical", "params[1]['s']")}
    # The wrong factor doubles the true gradient, so the error is the gradient itself.
    with jax.enable_x64(True):
        true = jax.grad(
            lambda p: jnp.sum(
                fn.serial(
                    fn.Dense(3), fn.custom_layer(lambda p, x: x * p["s"][None, :], None), jnp.tanh
                ).apply(p, ((), (), ()), x.astype(jnp.float64))[0]
                * _default_cotangent((4, 3))
            )
        )(jax.tree.map(lambda a: a.astype(jnp.float64), params))
    np.testing.assert_allclose(
        report.errors["autodiff"]["params[1]['s']"], np.abs(true[1]["s"]).max(), rtol=1e-8
    )

    wrong_dx = fn.serial(fn.Dense(3), scale_layer(x_factor=0.5))
    _, params, _ = wrong_dx.init(KEY, (None, 2))
    report = fn.check_layer_grads(wrong_dx, params, x, raise_on_error=False)
    # dx is wrong and so is everything upstream of it (the first Dense's params).
    assert report.worst[1] in {"x", "params[0]['w']", "params[0]['b']"}
    assert ("autodiff", "x") in report.failures and (
        "autodiff",
        "params[1]['s']",
    ) not in report.failures


def _default_cotangent(shape):
    # check_layer_grads draws its cotangent from numpy's default_rng(0) when none is given.
    return np.random.default_rng(0).standard_normal(shape)


def test_check_with_a_reference_rule_and_explicit_cotangent():
    straight_through = fn.custom_vjp_layer(
        lambda p, x: (jnp.round(x), ()), lambda r, dy: (None, dy), lambda key, shape: {}
    )
    x = x_of(3, 4)
    report = fn.check_layer_grads(straight_through, {}, x, numerical=False, raise_on_error=False)
    assert report.failures == (("autodiff", "x"),)  # autodiff of round is zero
    v = jnp.arange(12.0).reshape(3, 4)
    report = fn.check_layer_grads(
        straight_through, {}, x, numerical=False, cotangent=v, raise_on_error=False
    )
    assert report.errors["autodiff"]["x"] == 11.0  # the largest |v - 0|
    ok = fn.check_layer_grads(straight_through, {}, x, reference=lambda p, x: x, numerical=False)
    assert ok.ok and set(ok.errors) == {"reference"}


def test_check_handles_tuple_and_integer_inputs():
    net = fn.serial(fn.parallel(scale_layer(), fn.Dense(2)), fn.fan_in_sum())
    _, params, _ = net.init(KEY, ((None, 2), (None, 3)))
    report = fn.check_layer_grads(net, params, (x_of(2, 2), x_of(2, 3, seed=2)))
    assert {"x[0]", "x[1]"} <= set(report.errors["numerical"])

    lookup = fn.custom_vjp_layer(
        lambda p, ids: (p["t"][ids], ids),
        lambda ids, dy: ({"t": jnp.zeros((4, 2), dy.dtype).at[ids].add(dy)}, None),
        lambda key, shape: {"t": jax.random.normal(key, (4, 2))},
    )
    _, params, _ = lookup.init(KEY, jax.ShapeDtypeStruct((None,), jnp.int32))
    report = fn.check_layer_grads(lookup, params, jnp.array([1, 3, 3]))
    assert set(report.errors["numerical"]) == {"params['t']"}
