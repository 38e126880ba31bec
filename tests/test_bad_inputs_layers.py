"""Bad arguments given to a layer's init and apply, and to the layer adapters.

Every layer is a ``Layer(init, apply, name)``, and its constructor wraps both
functions in the checks tested here: integer seeds are keys, a forgotten
argument or ``None`` params/state are named up front, and params or state
that do not fit the layer are diagnosed (leaf path, expected, got) when
``apply`` fails.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.example_libraries import stax

import funcnet as fn

KEY = jax.random.key(0)
X = jnp.ones((2, 3))


def dense():
    net = fn.Dense(4)
    _, params, state = net.init(KEY, (None, 3))
    return net, params, state


# --------------------------------------------------------------------------
# Keys: one rule everywhere (a key, or an integer seed)


@pytest.mark.parametrize("seed", [0, 7, np.int32(7), jnp.int32(7)])
def test_init_takes_an_integer_seed_as_the_key_of_that_seed(seed):
    net = fn.Dense(4)
    out, params, _ = net.init(seed, (None, 3))
    _, want, _ = net.init(jax.random.key(int(seed)), (None, 3))
    assert out == (None, 4)
    np.testing.assert_array_equal(params["w"], want["w"])


def test_init_still_takes_typed_and_raw_keys():
    net = fn.Dense(4)
    assert net.init(jax.random.PRNGKey(0), (None, 3))[0] == (None, 4)
    assert net.init(KEY, (None, 3))[0] == (None, 4)


def test_init_takes_a_traced_seed_under_jit():
    net = fn.Dense(4)
    params = jax.jit(lambda seed: net.init(seed, (None, 3))[1])(3)
    np.testing.assert_array_equal(params["w"], net.init(3, (None, 3))[1]["w"])


def test_dropout_apply_takes_an_integer_seed_as_its_key():
    drop = fn.Dropout(0.5)
    x = jnp.ones((4, 8))
    y, _ = drop.apply({}, {}, x, train=True, key=42)
    want, _ = drop.apply({}, {}, x, train=True, key=jax.random.key(42))
    np.testing.assert_array_equal(y, want)


def test_a_seed_reaches_a_dropout_inside_a_model_and_under_vmap():
    net = fn.serial(fn.Dense(8), fn.Dropout(0.5))
    _, params, state = net.init(0, (None, 3))
    y, _ = net.apply(params, state, X, train=True, key=5)
    want, _ = net.apply(params, state, X, train=True, key=jax.random.key(5))
    np.testing.assert_array_equal(y, want)
    ys = jax.vmap(lambda k: net.apply(params, state, X, train=True, key=k)[0])(jnp.arange(2))
    np.testing.assert_array_equal(ys[1], net.apply(params, state, X, train=True, key=1)[0])


@pytest.mark.parametrize("bad", [0.5, "seed", None, True, jnp.ones(3)])
def test_init_rejects_what_is_not_a_key_or_seed(bad):
    with pytest.raises(
        fn.LayerTypeError,
        match=r"^Dense: init's key must be a PRNG key such as jax.random.key\(0\), or an "
        r"integer seed, got .*\. Pass jax.random.key\(seed\), or the integer seed itself\.$",
    ):
        fn.Dense(4).init(bad, (None, 3))


def test_apply_rejects_a_key_that_is_not_a_key_or_seed():
    with pytest.raises(
        fn.LayerTypeError,
        match=r"^Dropout: apply's key must be a PRNG key .*, got str 'a'\. Pass jax.random.key",
    ):
        fn.Dropout(0.5).apply({}, {}, X, train=True, key="a")  # type: ignore


# --------------------------------------------------------------------------
# init's arguments


def test_init_without_the_key_says_so():
    with pytest.raises(
        fn.LayerTypeError,
        match=r"^Dense: expected init\(key, input_shape\), got 1 argument: was the key left out\? "
        r"Call net.init\(key, input_shape\)",
    ):
        fn.Dense(4).init((None, 3))  # type: ignore


@pytest.mark.parametrize(
    "shape, message",
    [
        ((None, 3.5), r"dimension 1 of the input shape \(None, 3.5\) is float 3.5, not an integer"),
        ((None, 3.0), r"dimension 1 of the input shape \(None, 3.0\) is float 3.0, not an integer"),
        ((None, "3"), r"dimension 1 of the input shape \(None, '3'\) is str '3', not an integer"),
    ],
)
def test_init_names_a_size_that_is_not_an_integer(shape, message):
    with pytest.raises(fn.LayerTypeError, match="^Dense: " + message + r"\. Sizes are integers"):
        fn.Dense(4).init(KEY, shape)


def test_init_names_a_negative_size_and_the_layer_of_a_tuple_of_shapes():
    with pytest.raises(
        fn.LayerValueError,
        match=r"^parallel: dimension 1 of the input shape \(None, -1\) is -1, a negative size\.",
    ):
        fn.parallel(fn.Dense(2), fn.Dense(2)).init(KEY, ((None, 3), (None, -1)))


def test_init_given_the_array_instead_of_its_shape_says_pass_x_shape():
    with pytest.raises(
        fn.LayerTypeError,
        match=r"^Dense: init takes the input's shape, got an array of shape \(2, 3\)\. Pass x.shape",
    ):
        fn.Dense(4).init(KEY, X)


def test_numpy_integer_sizes_are_sizes():
    assert fn.Dense(4).init(KEY, (None, np.int64(3)))[0] == (None, 4)


# --------------------------------------------------------------------------
# apply's arguments, checked up front


def test_apply_without_state_names_the_missing_state():
    net, params, _ = dense()
    with pytest.raises(
        fn.LayerTypeError,
        match=r"^Dense: expected apply\(params, state, x\), got 2 arguments: was state left out\? "
        r"Call y, state = net.apply\(params, state, x\)",
    ):
        net.apply(params, X)


def test_apply_with_too_many_positional_arguments_says_key_and_train_are_keywords():
    net, params, state = dense()
    with pytest.raises(
        fn.LayerTypeError,
        match=r"^Dense: expected apply\(params, state, x\), got 4 arguments\. .*key and train "
        r"are keywords",
    ):
        net.apply(params, state, X, True)


def test_apply_still_takes_its_arguments_by_keyword():
    net, params, state = dense()
    y, _ = net.apply(params=params, state=state, x=X)
    np.testing.assert_array_equal(y, net.apply(params, state, X)[0])


@pytest.mark.parametrize("what", ["params", "state"])
def test_apply_with_none_params_or_state_names_it(what):
    net, params, state = dense()
    args = {"params": params, "state": state, what: None}
    with pytest.raises(
        fn.LayerTypeError,
        match=rf"^Dense: {what} is None; pass the {what} that init returned \({{}} for a layer "
        rf"without {what}\)",
    ):
        net.apply(args["params"], args["state"], X)


def test_a_stateless_layer_also_rejects_state_none_inside_a_model():
    net = fn.serial(fn.Dense(4), fn.Relu())
    _, params, state = net.init(KEY, (None, 3))
    with pytest.raises(fn.LayerTypeError, match=r"^serial\[1\]\.Relu: state is None"):
        net.apply(params, (state[0], None), X)


# --------------------------------------------------------------------------
# Params and state that do not fit: diagnosed when apply fails


def test_a_missing_leaf_is_named_with_expected_and_got():
    net, params, state = dense()
    with pytest.raises(
        fn.LayerValueError,
        match=r"^Dense: params\['b'\] \(shape \(4,\)\) is missing: for an input of shape "
        r"\(2, 3\), init makes params \{'b': \(4,\), 'w': \(3, 4\)\}, got \{'w': \(3, 4\)\}\. "
        r"Pass the params that this layer's own init returned",
    ) as info:
        net.apply({"w": params["w"]}, state, X)
    assert isinstance(info.value.__cause__, KeyError)  # the failure itself stays in the traceback


def test_a_leaf_of_the_wrong_shape_is_named_with_expected_and_got():
    net, params, state = dense()
    with pytest.raises(
        fn.LayerValueError,
        match=r"^Dense: params\['b'\] should have shape \(4,\), got \(5,\): for an input of shape",
    ):
        net.apply({**params, "b": jnp.zeros(5)}, state, X)


def test_a_none_leaf_is_named():
    net, params, state = dense()
    with pytest.raises(
        fn.LayerValueError, match=r"^Dense: params\['b'\] should have shape \(4,\), got None"
    ):
        net.apply({**params, "b": None}, state, X)


def test_a_whole_model_s_params_given_to_one_layer():
    net = fn.serial(fn.Dense(4), fn.Dense(1))
    _, params, _ = net.init(KEY, (None, 3))
    with pytest.raises(
        fn.LayerValueError,
        match=r"^Dense: params should be a dict, got tuple: for an input of shape \(2, 3\)",
    ):
        fn.Dense(4).apply(params, {}, X)


def test_missing_state_is_named_with_the_layer_path_inside_a_model():
    net = fn.serial(fn.Dense(4), fn.BatchNorm())
    _, params, state = net.init(KEY, (None, 3))
    with pytest.raises(
        fn.LayerValueError,
        match=r"^serial\[1\]\.BatchNorm: state\['mean'\] \(shape \(4,\)\) is missing: .*got \{\}",
    ):
        net.apply(params, (state[0], {}), X, train=True)


def test_the_diagnosis_also_runs_under_jit():
    net = fn.serial(fn.Dense(4), fn.Dense(1))
    _, params, state = net.init(KEY, (None, 3))
    bad = (params[0], {"w": params[1]["w"]})
    with pytest.raises(fn.LayerValueError, match=r"^serial\[1\]\.Dense: params\['b'\]"):
        jax.jit(lambda p: net.apply(p, state, X))(bad)


def test_a_failure_with_fitting_params_is_left_as_it_was():
    def broken(x):
        raise KeyError("missing")

    net = fn.Lambda(broken)
    with pytest.raises(KeyError, match="missing"):
        net.apply({}, {}, X)


def test_renaming_a_layer_renames_its_errors():
    renamed = fn.Dense(4)._replace(name="head")
    with pytest.raises(fn.LayerTypeError, match=r"^head: state is None"):
        renamed.apply({}, None, X)


# --------------------------------------------------------------------------
# Adapters and the gradient checker


def test_from_stax_rejects_what_is_not_a_stax_pair():
    with pytest.raises(
        TypeError,
        match=r"^from_stax: pair must be a stax layer, the pair \(init_fun, apply_fun\) that "
        r"stax.Dense\(4\) and the like return, got int 42\.",
    ):
        fn.from_stax(42)  # type: ignore
    assert fn.from_stax(stax.Dense(2)).init(0, (None, 3))[0] == (None, 2)


def test_custom_layer_rejects_what_is_not_a_function():
    with pytest.raises(
        TypeError,
        match=r"^custom_layer: apply_fn must be a function apply_fn\(params, x\) -> y, "
        r"got str 'nope'\.",
    ):
        fn.custom_layer("nope", lambda key, shape: {})  # type: ignore
    with pytest.raises(
        TypeError, match=r"^custom_layer: init_params must be a function .*, got the layer Dense\."
    ):
        fn.custom_layer(lambda p, x: x, fn.Dense(3))  # type: ignore


def test_custom_layer_without_init_params_applies_but_says_it_cannot_init():
    layer = fn.custom_layer(lambda p, x: 2 * x, None, name="Twice")
    np.testing.assert_array_equal(layer.apply({}, {}, X)[0], 2 * X)
    with pytest.raises(fn.LayerTypeError, match=r"^Twice: this custom_layer was built without"):
        layer.init(KEY, (None, 3))


def test_custom_vjp_layer_rejects_what_is_not_a_function():
    with pytest.raises(
        TypeError, match=r"^custom_vjp_layer: backward must be a function backward\(residuals, dy\)"
    ):
        fn.custom_vjp_layer(lambda p, x: (x, ()), None, lambda key, shape: {})  # type: ignore


@pytest.mark.parametrize(
    "bad, fix",
    [
        ("layer", r"got str 'layer'\. Pass the layer or model itself"),
        (
            fn.Dense,
            r"got function .*\. A layer constructor is a call \(fn.Dense\(3\), not fn.Dense\)",
        ),
    ],
)
def test_check_layer_grads_rejects_what_is_not_a_layer(bad, fix):
    with pytest.raises(
        TypeError, match=r"^check_layer_grads: layer must be a funcnet Layer .*" + fix
    ):
        fn.check_layer_grads(bad, {}, X)
