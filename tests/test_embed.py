"""Embedding: lookups, shapes, dtypes, out-of-range ids and the gradient of the table."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet as fn

ARANGE_TABLE = {"embedding": jnp.arange(15.0).reshape(5, 3)}


def test_lookup_known_answer():
    net = fn.Embedding(5, 3)
    ids = jnp.array([[0, 4, 2], [2, 2, 1]])
    y, state = net.apply(ARANGE_TABLE, {}, ids)
    np.testing.assert_array_equal(y, np.arange(15.0).reshape(5, 3)[np.asarray(ids)])
    assert state == {}


@pytest.mark.parametrize(
    ("input_shape", "expected"),
    [
        ((None, 7), (None, 7, 4)),
        ((None,), (None, 4)),
        (jax.ShapeDtypeStruct((None, 2, 3), jnp.int32), (None, 2, 3, 4)),
        (jax.ShapeDtypeStruct((8, 2), jnp.uint8), (8, 2, 4)),
    ],
)
def test_init_shapes(input_shape, expected):
    out_shape, params, state = fn.Embedding(10, 4).init(jax.random.key(0), input_shape)
    assert out_shape == expected
    assert jax.tree.map(jnp.shape, params) == {"embedding": (10, 4)}
    assert state == {}


def test_default_init_is_normal_with_stddev_0_05():
    _, params, _ = fn.Embedding(1000, 16).init(jax.random.key(0), (None, 1))
    table = np.asarray(params["embedding"])
    assert table.dtype == np.float32
    assert abs(table.mean()) < 0.002  # 5 standard errors of 0.05 / sqrt(16000)
    assert abs(table.std() - 0.05) < 0.002
    custom = fn.Embedding(3, 2, w_init=jax.nn.initializers.ones)
    np.testing.assert_array_equal(custom.init(jax.random.key(0), (None, 1))[1]["embedding"], 1.0)


def test_out_of_range_ids_give_nan_rows():
    net = fn.Embedding(5, 3)
    ids = jnp.array([[-1, 0, 5], [4, 100, 3]])
    for apply in (net.apply, jax.jit(net.apply)):
        y, _ = apply(ARANGE_TABLE, {}, ids)
        bad = np.array([[True, False, True], [False, True, False]])
        assert np.isnan(np.asarray(y)[bad]).all()
        np.testing.assert_array_equal(np.asarray(y)[~bad], np.arange(15.0).reshape(5, 3)[[0, 4, 3]])


def test_table_gradient_counts_repeated_ids_and_skips_out_of_range():
    net = fn.Embedding(5, 3)
    ids = jnp.array([[1, 1, 3], [-1, 1, 7]])
    weights = jnp.arange(1.0, 4.0)  # distinguishes the three features

    def loss(params):
        y, _ = net.apply(params, {}, ids)
        return jnp.sum(jnp.where(jnp.isnan(y), 0.0, y) * weights[None, None, :])

    grad = jax.grad(loss)(ARANGE_TABLE)["embedding"]
    expected = np.zeros((5, 3))
    expected[1] = 3 * np.arange(1.0, 4.0)  # id 1 appears three times
    expected[3] = np.arange(1.0, 4.0)
    np.testing.assert_array_equal(grad, expected)  # rows 0 (used for -1 and 7) get nothing


@pytest.mark.parametrize(
    ("kwargs", "table_dtype", "out_dtype"),
    [
        ({}, jnp.float32, jnp.float32),
        ({"dtype": jnp.bfloat16}, jnp.float32, jnp.bfloat16),
        ({"param_dtype": jnp.bfloat16}, jnp.bfloat16, jnp.bfloat16),
    ],
)
def test_output_dtype_follows_dtype_or_the_table(kwargs, table_dtype, out_dtype):
    net = fn.Embedding(4, 2, **kwargs)
    _, params, state = net.init(jax.random.key(0), (None, 3))
    assert params["embedding"].dtype == table_dtype
    y, _ = net.apply(params, state, jnp.array([[0, 1, 9]], jnp.int8))
    assert y.dtype == out_dtype
    assert np.isnan(np.asarray(y, np.float32)[0, 2]).all()


@pytest.mark.parametrize("id_dtype", [jnp.int8, jnp.uint8, jnp.int16, jnp.uint32])
def test_small_id_dtypes_with_a_table_larger_than_their_range(id_dtype):
    net = fn.Embedding(1000, 2)
    _, params, state = net.init(jax.random.key(0), jax.ShapeDtypeStruct((None, 2), id_dtype))
    y, _ = jax.jit(net.apply)(params, state, jnp.array([[1, 100]], id_dtype))
    np.testing.assert_array_equal(y[0], params["embedding"][jnp.array([1, 100])])
    if jnp.issubdtype(id_dtype, jnp.signedinteger):
        y, _ = net.apply(params, state, jnp.array([[-3, 1]], id_dtype))
        assert np.isnan(np.asarray(y)[0, 0]).all() and not np.isnan(np.asarray(y)[0, 1]).any()


ID_DTYPE_ERROR = (
    r"^Embedding: expected integer token ids, got dtype {} \(shape {}\)\. Embedding looks rows up "
    r"by integer id; if these floats are ids, cast with x\.astype\(jnp\.int32\)\.$"
)


def test_float_ids_are_rejected_in_apply():
    net = fn.Embedding(5, 3)
    with pytest.raises(fn.LayerTypeError, match=ID_DTYPE_ERROR.format("float32", r"\(2, 2\)")):
        net.apply(ARANGE_TABLE, {}, jnp.zeros((2, 2)))
    with pytest.raises(fn.LayerTypeError, match=ID_DTYPE_ERROR.format("bool", r"\(2,\)")):
        net.apply(ARANGE_TABLE, {}, jnp.array([True, False]))


def test_float_id_spec_is_rejected_in_init():
    spec = jax.ShapeDtypeStruct((None, 4), jnp.float32)
    with pytest.raises(fn.LayerTypeError, match=ID_DTYPE_ERROR.format("float32", r"\(None, 4\)")):
        fn.Embedding(5, 3).init(jax.random.key(0), spec)


def test_error_path_inside_serial():
    net = fn.serial(fn.Embedding(5, 3), fn.Dense(2))
    _, params, state = net.init(jax.random.key(0), (None, 4))
    with pytest.raises(
        fn.LayerTypeError, match=r"^serial\[0\]\.Embedding: expected integer token ids"
    ):
        net.apply(params, state, jnp.zeros((1, 4)))
    y, _ = net.apply(params, state, jnp.zeros((1, 4), jnp.int32))
    assert y.shape == (1, 4, 2)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0, 3), r"^Embedding: num_embeddings must be a positive integer, got 0\.$"),
        ((5, 2.0), r"^Embedding: features must be a positive integer, got 2\.0\.$"),
        ((True, 2), r"^Embedding: num_embeddings must be a positive integer, got True\.$"),
    ],
)
def test_bad_constructor_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        fn.Embedding(*args)


def test_rank_zero_shape_is_rejected():
    with pytest.raises(fn.LayerValueError, match=r"^Embedding: expected an input of rank >= 1"):
        fn.Embedding(5, 3).init(jax.random.key(0), ())
