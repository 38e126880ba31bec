"""MultiHeadAttention: known answers against numpy, masks, causality, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet as fn


def np_attention(params, q_in, k_in, v_in, allowed=None):
    """softmax(q k^T / sqrt(d)) v per head, written directly in numpy (float64)."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    q_in, k_in, v_in = (np.asarray(a, np.float64) for a in (q_in, k_in, v_in))
    batch, tq, _ = q_in.shape
    tk = k_in.shape[1]
    heads = p["query"]["w"].shape[1]
    out = np.zeros((batch, tq, p["output"]["w"].shape[2]))
    for b in range(batch):
        for h in range(heads):
            q = q_in[b] @ p["query"]["w"][:, h, :] + p["query"].get("b", np.zeros((heads, 1)))[h]
            k = k_in[b] @ p["key"]["w"][:, h, :] + p["key"].get("b", np.zeros((heads, 1)))[h]
            v = v_in[b] @ p["value"]["w"][:, h, :] + p["value"].get("b", np.zeros((heads, 1)))[h]
            logits = q @ k.T / np.sqrt(q.shape[-1])
            if allowed is not None:
                logits = np.where(
                    np.broadcast_to(allowed, (batch, heads, tq, tk))[b, h], logits, -np.inf
                )
            weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
            weights /= weights.sum(axis=-1, keepdims=True)
            out[b] += (weights @ v) @ p["output"]["w"][h]
    return out + p["output"].get("b", 0.0)


# Test data comes from numpy's generator: eager jax.random would compile once per shape.
def normal(seed, shape):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def randomize(params, seed):
    """Non-zero biases too, so the reference checks them."""
    leaves, tree = jax.tree.flatten(params)
    return jax.tree.unflatten(tree, [normal(seed + i, a.shape) for i, a in enumerate(leaves)])


# One size of params for most tests (heads 2, key_size 3, features 4), so the
# eager random draws compile once; apply runs under jit, one compile per case.
H, K, D = 2, 3, 4


def make(input_shape=(None, 3, D), **kwargs):
    mha = fn.MultiHeadAttention(H, K, **kwargs)
    box = {}

    def init(key):  # shapes only: randomize draws the values, so nothing compiles here
        box["out"], params, _ = mha.init(key, input_shape)
        return params

    params = jax.eval_shape(init, jax.random.key(0))
    return mha, box["out"], randomize(params, 1)


def run(mha, params, x):
    return jax.jit(mha.apply)(params, {}, x)[0]


def close(a, b):
    np.testing.assert_allclose(np.asarray(a, np.float64), b, rtol=1e-5, atol=1e-5)


def test_self_attention_matches_numpy():
    mha, out_shape, params = make((None, 5, D))
    x = normal(2, (2, 5, D))
    assert out_shape == (None, 5, D)
    close(run(mha, params, x), np_attention(params, x, x, x))


def test_cross_attention_with_separate_keys_and_values_matches_numpy():
    mha = fn.MultiHeadAttention(3, 2, value_size=4, out_features=6)
    shapes = ((None, 2, 5), (None, 3, 4), (None, 3, 7))
    out_shape, params, _ = mha.init(jax.random.key(0), shapes)
    assert out_shape == (None, 2, 6)
    assert jax.tree.map(jnp.shape, params) == {
        "query": {"w": (5, 3, 2), "b": (3, 2)},
        "key": {"w": (4, 3, 2), "b": (3, 2)},
        "value": {"w": (7, 3, 4), "b": (3, 4)},
        "output": {"w": (3, 4, 6), "b": (6,)},
    }
    params = randomize(params, 1)
    q, k, v = normal(2, (2, 2, 5)), normal(3, (2, 3, 4)), normal(4, (2, 3, 7))
    close(run(mha, params, (q, k, v)), np_attention(params, q, k, v))


def test_query_and_key_value_pair_uses_one_tensor_for_keys_and_values():
    mha, _, params = make(((None, 2, D), (None, 5, D)), use_bias=False)
    assert "b" not in params["query"] and "b" not in params["output"]
    q, kv = normal(1, (1, 2, D)), normal(2, (1, 5, D))
    close(run(mha, params, (q, kv)), np_attention(params, q, kv, kv))


def test_init_is_glorot_with_matrix_fans_and_zero_biases():
    _, params, _ = fn.MultiHeadAttention(H, K).init(jax.random.key(0), (None, 3, D))
    # fans of the [D, H*K] matrix; Keras's fans of the 3-D kernel would give sqrt(6 / 20).
    limit = np.sqrt(6 / (D + H * K))
    w = np.abs(np.asarray(params["query"]["w"]))
    assert w.max() <= limit and w.max() > np.sqrt(6 / 20)
    assert not np.any(params["output"]["b"]) and not np.any(params["key"]["b"])


def test_mask_matches_numpy_and_masked_keys_do_not_matter():
    mha, _, params = make(((None, 3, D), (None, 5, D), (None, 5, D), (None, 1, 1, 5)))
    q, kv = normal(2, (2, 3, D)), normal(3, (2, 5, D))
    # A padding mask: example 0 has 3 valid keys, example 1 has 5.
    mask = (jnp.arange(5).reshape(1, 5) < jnp.array([[3], [5]]))[:, None, None, :]
    y = run(mha, params, (q, kv, kv, mask))
    close(y, np_attention(params, q, kv, kv, np.asarray(mask)))
    padded = kv.at[0, 3:].set(100.0)
    np.testing.assert_allclose(run(mha, params, (q, padded, padded, mask)), y, atol=1e-6)


def test_per_head_mask_broadcasts():
    mha, _, params = make()
    x = normal(2, (1, 3, D))
    eye = jnp.eye(3, dtype=bool).reshape(1, 1, 3, 3)
    mask = jnp.asarray(np.random.default_rng(3).random((1, H, 3, 3)) < 0.6) | eye
    close(run(mha, params, (x, x, x, mask)), np_attention(params, x, x, x, np.asarray(mask)))


def test_fully_masked_query_attends_uniformly_without_nan():
    mha, _, params = make()
    x = normal(2, (1, 3, D))
    mask = jnp.zeros((1, 1, 3, 3), bool)
    y = run(mha, params, (x, x, x, mask))
    p = jax.tree.map(np.asarray, params)
    uniform = sum(
        (np.asarray(x[0]) @ p["value"]["w"][:, h] + p["value"]["b"][h]).mean(axis=0)
        @ p["output"]["w"][h]
        for h in range(H)
    )
    close(y[0], np.stack([uniform + p["output"]["b"]] * 3))
    grads = jax.jit(jax.grad(lambda p: mha.apply(p, {}, (x, x, x, mask))[0].sum()))(params)
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))


def test_causal_matches_lower_triangular_mask_and_ignores_the_future():
    mha, _, params = make((None, 5, D), causal=True)
    x = normal(2, (2, 5, D))
    y = run(mha, params, x)
    tril = np.tril(np.ones((5, 5), bool))[None, None]
    close(y, np_attention(params, x, x, x, tril))
    y2 = run(mha, params, x.at[:, 3].add(10.0))
    np.testing.assert_allclose(y2[:, :3], y[:, :3], atol=1e-6)
    assert not np.allclose(y2[:, 3:], y[:, 3:])


def test_causal_and_mask_combine():
    mha, _, params = make(causal=True)
    x = normal(2, (1, 3, D))
    mask = jnp.array([True, False, True]).reshape(1, 1, 1, 3)
    allowed = np.tril(np.ones((3, 3), bool)) & np.array([True, False, True])
    close(run(mha, params, (x, x, x, mask)), np_attention(params, x, x, x, allowed[None, None]))


def test_bfloat16_keeps_dtype_and_stays_close_to_float32():
    mha, _, params = make()
    x = normal(1, (2, 3, D))
    y16 = run(mha, params, x.astype(jnp.bfloat16))
    assert y16.dtype == jnp.bfloat16
    np.testing.assert_allclose(y16.astype(jnp.float32), run(mha, params, x), rtol=0.05, atol=0.1)


def test_dtype_argument_sets_the_computation_dtype():
    mha, _, params = make(dtype=jnp.bfloat16)
    assert params["query"]["w"].dtype == jnp.float32
    assert run(mha, params, jnp.ones((1, 3, D))).dtype == jnp.bfloat16


# ----------------------------------------------------------------------------- errors


def init(mha, shape):
    return mha.init(jax.random.key(0), shape)


def test_key_and_value_lengths_must_match():
    mha = fn.MultiHeadAttention(1, 2)
    with pytest.raises(fn.LayerValueError, match=r"key length 5 .* value length 4"):
        init(mha, ((None, 3, 2), (None, 5, 2), (None, 4, 2)))
    _, params, _ = init(mha, ((None, 3, 2), (None, 5, 2), (None, 5, 2)))
    with pytest.raises(
        fn.LayerValueError,
        match=r"^MultiHeadAttention: the key and value lengths differ: key length 5",
    ):
        mha.apply(params, {}, (jnp.ones((1, 3, 2)), jnp.ones((1, 5, 2)), jnp.ones((1, 4, 2))))


def test_batch_sizes_must_match():
    mha = fn.MultiHeadAttention(1, 2)
    _, params, _ = init(mha, ((None, 3, 2), (None, 5, 2)))
    with pytest.raises(fn.LayerValueError, match=r"batch sizes differ: 2, 3, 3"):
        mha.apply(params, {}, (jnp.ones((2, 3, 2)), jnp.ones((3, 5, 2))))


def test_feature_mismatch_against_init():
    mha = fn.MultiHeadAttention(1, 2)
    _, params, _ = init(mha, ((None, 3, 2), (None, 5, 4)))
    with pytest.raises(
        fn.LayerValueError, match=r"expected the key with 4 features .* got shape \(1, 5, 3\)"
    ):
        mha.apply(params, {}, (jnp.ones((1, 3, 2)), jnp.ones((1, 5, 3))))
    with pytest.raises(fn.LayerValueError, match=r"expected the query with 2 features"):
        mha.apply(params, {}, jax.numpy.ones((1, 3, 4)))


def test_wrong_rank():
    mha = fn.MultiHeadAttention(1, 2)
    with pytest.raises(
        fn.LayerValueError,
        match=r"expected the query as \[batch, length, features\] \(rank 3\), got shape \(None, 4\)\. For a single token use x\[:, None, :\]",
    ):
        init(mha, (None, 4))
    _, params, _ = init(mha, (None, 3, 4))
    with pytest.raises(
        fn.LayerValueError,
        match=r"expected the key as \[batch, length, features\].*got shape \(2, 4\)",
    ):
        mha.apply(params, {}, (jnp.ones((2, 3, 4)), jnp.ones((2, 4))))


def test_unknown_features_and_bad_input_forms():
    mha = fn.MultiHeadAttention(1, 2)
    with pytest.raises(
        fn.LayerValueError, match=r"the query's feature dimension must be known at init"
    ):
        init(mha, (None, 3, None))
    with pytest.raises(
        fn.LayerValueError,
        match=r"expected x \[batch, T, D\] for self-attention, .*got a tuple of 5",
    ):
        init(mha, ((None, 3, 2),) * 5)
    with pytest.raises(
        fn.LayerValueError, match=r"the key must be one shape such as \(None, 4, 3\)"
    ):
        init(mha, ((None, 3, 2), "kv"))


def test_mask_of_the_wrong_shape_or_dtype():
    mha = fn.MultiHeadAttention(2, 2)
    q = (None, 3, 2)
    message = (
        r"expected a mask of shape \[batch \? or 1, heads 2 or 1, query length 3 or 1, "
        r"key length 4 or 1\], got \(None, 4\)\. A padding mask over keys of shape \[batch, Tk\] "
        r"becomes mask\[:, None, None, :\]"
    )
    with pytest.raises(fn.LayerValueError, match=message):
        init(mha, (q, (None, 4, 2), (None, 4, 2), (None, 4)))
    with pytest.raises(fn.LayerTypeError, match=r"expected a boolean mask, got dtype float32"):
        init(mha, (q, (None, 4, 2), (None, 4, 2), jax.ShapeDtypeStruct((1, 1, 3, 4), jnp.float32)))
    _, params, _ = init(mha, (q, (None, 4, 2), (None, 4, 2), (None, 1, 3, 4)))
    x, kv = jnp.ones((1, 3, 2)), jnp.ones((1, 4, 2))
    with pytest.raises(
        fn.LayerValueError,
        match=r"expected a mask of shape \[batch 1 or 1, heads 2 or 1, .*got \(1, 3, 3, 4\)",
    ):
        mha.apply(params, {}, (x, kv, kv, jnp.ones((1, 3, 3, 4), bool)))
    with pytest.raises(
        fn.LayerTypeError,
        match=r"expected a boolean mask \(True = may attend\), got dtype int32\. Convert a 0/1 mask with mask\.astype\(bool\)",
    ):
        mha.apply(params, {}, (x, kv, kv, jnp.ones((1, 1, 3, 4), jnp.int32)))


def test_integer_input_is_refused():
    mha = fn.MultiHeadAttention(1, 2)
    _, params, _ = init(mha, (None, 3, 2))
    with pytest.raises(
        fn.LayerTypeError,
        match=r"^MultiHeadAttention: expected floating-point input, got dtype int32",
    ):
        mha.apply(params, {}, jnp.ones((1, 3, 2), jnp.int32))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"num_heads": 0, "key_size": 2},
            ValueError,
            r"^MultiHeadAttention: num_heads must be a positive integer, got 0\.$",
        ),
        (
            {"num_heads": 1, "key_size": 2.0},
            ValueError,
            r"^MultiHeadAttention: key_size must be a positive integer, got 2\.0\.$",
        ),
        (
            {"num_heads": 1, "key_size": 2, "value_size": -1},
            ValueError,
            r"value_size must be a positive integer or None, got -1",
        ),
        (
            {"num_heads": 1, "key_size": 2, "out_features": True},
            ValueError,
            r"out_features must be a positive integer or None, got True",
        ),
        (
            {"num_heads": 1, "key_size": 2, "causal": 1},
            TypeError,
            r"^MultiHeadAttention: causal must be True or False, got 1\.$",
        ),
    ],
)
def test_bad_constructor_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        fn.MultiHeadAttention(**kwargs)


def test_error_path_inside_serial():
    net = fn.serial(fn.Dense(4), fn.MultiHeadAttention(1, 2, name="attn"))
    with pytest.raises(
        fn.LayerValueError,
        match=r"^serial\[1\]\.attn: expected the query as \[batch, length, features\]",
    ):
        net.init(jax.random.key(0), (None, 3))
