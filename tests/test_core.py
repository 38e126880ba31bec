"""The layer protocol: adapters, error paths, summaries."""

import traceback

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.example_libraries import stax

import funcnet as fn
from funcnet._src.core import infer_output_shape


def test_plain_function_becomes_a_parameterless_layer(key):
    net = fn.serial(fn.Dense(4), jax.nn.tanh)
    out_shape, params, state = net.init(key, (None, 2))
    assert out_shape == (None, 4)
    assert params[1] == {} and state == ({}, {})
    x = jnp.ones((3, 2))
    y, _ = net.apply(params, state, x)
    np.testing.assert_allclose(y, jnp.tanh(x @ params[0]["w"] + params[0]["b"][None, :]), rtol=1e-6)


def test_stax_layers_inside_serial_match_stax(key):
    stax_init, stax_apply = stax.serial(stax.Dense(5), stax.Relu, stax.Dense(2))
    net = fn.serial(fn.from_stax((stax_init, stax_apply)), fn.Tanh())
    out_shape, params, state = net.init(key, (None, 3))
    assert out_shape == (None, 2)
    x = jax.random.normal(key, (4, 3))
    y, _ = net.apply(params, state, x)
    with jax.numpy_rank_promotion("allow"):
        expected = jnp.tanh(stax_apply(params[0], x))
    np.testing.assert_allclose(y, expected, rtol=1e-6)


def test_stax_dense_and_relu_adapt_one_by_one(key):
    net = fn.serial(fn.from_stax(stax.Dense(4)), fn.from_stax(stax.Relu), fn.Dense(1))
    out_shape, params, state = net.init(key, (None, 2))
    assert out_shape == (None, 1)
    y, _ = net.apply(params, state, -jnp.ones((3, 2)))
    assert y.shape == (3, 1)


def test_stax_pair_given_directly_is_rejected_with_the_fix():
    with pytest.raises(TypeError, match=r"stax \(init_fun, apply_fun\).*funcnet.from_stax"):
        fn.serial(stax.Dense(3))


def test_uncalled_constructor_is_rejected_with_the_fix():
    with pytest.raises(TypeError, match=r"Relu\(\), not Relu"):
        fn.serial(fn.Dense(2), 3)


def test_custom_layer_infers_its_output_shape(key):
    def apply(params, x):
        return jnp.concatenate([x @ params["w"], x], axis=-1)

    layer = fn.custom_layer(apply, lambda k, shape: {"w": jnp.ones((shape[-1], 2))}, name="Cat")
    out_shape, params, _ = layer.init(key, (None, 3))
    assert out_shape == (None, 5)
    y, _ = layer.apply(params, {}, jnp.ones((2, 3)))
    np.testing.assert_array_equal(y, [[3, 3, 1, 1, 1]] * 2)


def test_infer_output_shape_keeps_none_dimensions():
    assert infer_output_shape(lambda x: x.reshape(x.shape[0], -1), (None, 2, 3)) == (None, 6)
    assert infer_output_shape(lambda x: x.sum(0), (None, 4)) == (4,)
    assert infer_output_shape(lambda xs: xs[0] + xs[1], ((None, 2), (None, 2))) == (None, 2)


def test_shape_dtype_struct_input_is_accepted(key):
    spec = jax.ShapeDtypeStruct((None, 3), jnp.int32)
    out_shape, _, _ = fn.Lambda(lambda x: x * 2).init(key, spec)
    assert out_shape == (None, 3)


def test_error_inside_serial_names_the_path_and_shapes(key):
    net = fn.serial(fn.Dense(4), fn.Relu(), fn.Dense(2))
    _, params, state = net.init(key, (None, 3))
    with pytest.raises(
        fn.LayerValueError,
        match=r"^serial\[0\]\.Dense: expected input with last dimension 3 .* got input of shape \(5, 7\)",
    ):
        net.apply(params, state, jnp.ones((5, 7)))


def test_error_in_nested_serial_names_the_whole_path(key):
    inner = fn.serial(fn.Dense(4), fn.Dense(2), name="block")
    net = fn.serial(fn.Dense(3), inner)
    _, params, state = net.init(key, (None, 3))
    bad = (params[0], (params[1][0], {"w": jnp.ones((5, 2)), "b": jnp.ones(2)}))
    with pytest.raises(
        fn.LayerValueError, match=r"^serial\[1\]\.block\[1\]\.Dense: expected input"
    ):
        net.apply(bad, state, jnp.ones((1, 3)))


def test_foreign_exception_gets_the_layer_path(key):
    net = fn.serial(fn.Dense(3), lambda x: x.reshape(7, -1))
    with pytest.raises(fn.LayerTypeError, match=r"^serial\[1\]\.Lambda: TypeError: cannot reshape"):
        net.init(key, (None, 2))


def _lookup_missing(x):
    table = {"present": x}
    return table["missing"]  # the user's bug: this line must reach the traceback


def _formatted(error: BaseException) -> str:
    return "".join(traceback.format_exception(error))


@pytest.mark.parametrize("stage", ["init", "apply"])
def test_a_bug_two_combinators_deep_keeps_the_users_line_in_the_traceback(key, stage):
    net = fn.serial(fn.Dense(2), fn.serial(_lookup_missing))
    # The same structure without the bug, for params to apply the buggy one with.
    _, params, state = fn.serial(fn.Dense(2), fn.serial(fn.Identity())).init(key, (None, 3))
    path = r"^serial\[1\]\.serial\[0\]\._lookup_missing: KeyError: 'missing'$"
    with pytest.raises(fn.LayerValueError, match=path) as raised:
        if stage == "init":
            net.init(key, (None, 3))
        else:
            net.apply(params, state, jnp.ones((1, 3)))
    assert isinstance(raised.value.__cause__, KeyError)
    text = _formatted(raised.value)
    assert 'return table["missing"]  # the user\'s bug' in text
    assert "in _lookup_missing" in text
    # One link however deep: the user's KeyError, then the error with the whole path.
    assert text.count("The above exception was the direct cause") == 1


def test_funcnets_own_checks_show_their_message_once(key):
    net = fn.serial(fn.serial(fn.Dense(4)))
    _, params, state = net.init(key, (None, 3))
    with pytest.raises(
        fn.LayerValueError, match=r"^serial\[0\]\.serial\[0\]\.Dense: expected"
    ) as raised:
        net.apply(params, state, jnp.ones((5, 7)))
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert _formatted(raised.value).count("expected input with last dimension 3") == 1


def test_params_from_another_model_are_rejected(key):
    net = fn.serial(fn.Dense(2), fn.Dense(2))
    _, params, state = net.init(key, (None, 2))
    with pytest.raises(
        fn.LayerValueError, match=r"^serial: expected params as a tuple of 2 entries"
    ):
        net.apply(params[:1], state, jnp.ones((1, 2)))


def test_init_rejects_a_shape_without_batch_axis(key):
    with pytest.raises(fn.LayerValueError, match=r"^Dense: expected an input of rank >= 1"):
        fn.Dense(2).init(key, ())


def test_init_rejects_a_non_shape(key):
    with pytest.raises(
        fn.LayerValueError, match=r"^Dense: expected one input shape such as \(None, 3\)"
    ):
        fn.Dense(2).init(key, "(None, 3)")


def test_summary_lists_nested_layers_with_counts():
    net = fn.serial(fn.Dense(8), fn.serial(fn.Dense(4), fn.Relu(), name="block"), fn.Dense(1))
    table = fn.summary(net, (None, 3))
    lines = table.splitlines()
    assert lines[0].split() == ["Layer", "Output", "shape", "Params"]
    assert "serial[1].block" in table and "(None, 4)" in table
    assert any(
        line.split()[0] == "serial[1].block[0].Dense" and line.endswith("36") for line in lines
    )
    assert lines[-1] == "Total params: 73"  # 3*8+8 + 8*4+4 + 4*1+1


def test_summary_of_a_single_layer():
    table = fn.summary(fn.Dense(2), (None, 3))
    assert "Dense" in table and "(None, 2)" in table and table.endswith("Total params: 8")
