"""Transformer blocks, positions, weight tying and cached decoding (tiny sizes).

The generic contract tests run over the registry (tests/registry/transformer.py);
this file checks what is particular: one block against a numpy reference
written from the standard definitions, the masks, RoPE's relative-position
property, weight tying, compile size against depth, and cached decoding
equal to recomputing the prefix.
"""

from __future__ import annotations

import math

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet as fn
from funcnet._src.layers.attention import apply_rotary

IDS = jax.ShapeDtypeStruct((None, 8), jnp.int32)


def init(layer, input_shape, seed=0):
    """``layer``'s params and state, initialised by one compiled program (not op by op)."""
    return jax.jit(lambda key: layer.init(key, input_shape)[1:])(jax.random.key(seed))


# --------------------------------------------------------------------------
# A numpy reference of one block (Vaswani et al. 2017; pre-norm as GPT-2)


def np_layer_norm(x, p, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def np_rope(x, positions, base=10000.0):  # x [B, T, H, K]
    half = x.shape[-1] // 2
    angles = positions[:, None] * base ** (-np.arange(half) / half)[None, :]
    cos, sin = np.cos(angles)[None, :, None, :], np.sin(angles)[None, :, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)


def np_attention(x, p, *, causal, mask, rotary):
    q, k, v = (
        np.einsum("btd,dhk->bthk", x, p[r]["w"]) + p[r]["b"] for r in ("query", "key", "value")
    )
    t = x.shape[1]
    if rotary:
        q, k = np_rope(q, np.arange(t)), np_rope(k, np.arange(t))
    logits = np.einsum("bqhk,bshk->bhqs", q, k) / math.sqrt(q.shape[-1])
    allowed = np.ones((x.shape[0], 1, t, t), bool)
    if causal:
        allowed = allowed & np.tril(np.ones((t, t), bool))
    if mask is not None:
        allowed = allowed & mask[:, None, None, :]
    logits = np.where(allowed, logits, -np.inf)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    heads = np.einsum("bhqs,bshv->bqhv", weights, v)
    return np.einsum("bqhv,hvo->bqo", heads, p["output"]["w"]) + p["output"]["b"]


def np_ffn(x, p, kind):
    if kind == "gelu":
        erf = np.vectorize(math.erf)
        h = x @ p[0]["w"] + p[0]["b"]
        return (0.5 * h * (1 + erf(h / math.sqrt(2)))) @ p[1]["w"] + p[1]["b"]
    gate, up = x @ p[0][0]["w"], x @ p[0][1]["w"]
    return (gate / (1 + np.exp(-gate)) * up) @ p[2]["w"]


def np_block(x, p, *, norm_first, ffn, causal, mask, rotary):
    def attention(h):
        return np_attention(h, p["attention"], causal=causal, mask=mask, rotary=rotary)

    def feed_forward(h):
        return np_ffn(h, p["ffn"], ffn)

    if norm_first:
        x = x + attention(np_layer_norm(x, p["attention_norm"]))
        return x + feed_forward(np_layer_norm(x, p["ffn_norm"]))
    x = np_layer_norm(x + attention(x), p["attention_norm"])
    return np_layer_norm(x + feed_forward(x), p["ffn_norm"])


@pytest.mark.parametrize(
    "make, norm_first, ffn, causal, rotary",
    [
        (fn.TransformerDecoderBlock, True, "gelu", True, False),
        (fn.TransformerEncoderBlock, False, "swiglu", False, True),
    ],
    ids=["decoder-prenorm-gelu", "encoder-postnorm-swiglu-rotary"],
)
def test_block_matches_the_numpy_reference(make, norm_first, ffn, causal, rotary):
    block = make(8, 2, ffn=ffn, norm_first=norm_first, rotary=rotary, ffn_features=12)
    x = jax.random.normal(jax.random.key(2), (2, 5, 8))
    mask = jnp.array([[True] * 5, [True, True, True, False, False]])

    @jax.jit  # init, perturb and apply: one program
    def run(x, m):
        _, params, state = block.init(jax.random.key(0), ((None, 5, 8), (None, 5)))
        # Non-trivial norms: random scales and biases instead of ones and zeros.
        leaves, tree = jax.tree.flatten(params)
        keys = jax.random.split(jax.random.key(1), len(leaves))
        params = jax.tree.unflatten(
            tree, [a + 0.1 * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys)]
        )
        return params, block.apply(params, state, (x, m))[0]

    params, (y, mask_out) = run(x, mask)
    p64 = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    want = np_block(
        np.asarray(x, np.float64), p64, norm_first=norm_first, ffn=ffn, causal=causal,
        mask=np.asarray(mask), rotary=rotary,
    )  # fmt: skip
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(mask_out, mask)


# --------------------------------------------------------------------------
# Masks


@pytest.fixture(scope="module")
def encoder():
    block = fn.TransformerEncoderBlock(8, 2)
    params, state = init(block, ((None, 6, 8), (None, 6)))
    return jax.jit(lambda x, mask: block.apply(params, state, (x, mask))[0][0])


def test_padding_does_not_change_the_real_tokens(encoder):
    x = jax.random.normal(jax.random.key(3), (2, 6, 8))
    mask = jnp.array([[True] * 6, [True] * 4 + [False] * 2])
    other = x.at[1, 4:].set(100.0)  # new values at the padding positions only
    y, y_other = encoder(x, mask), encoder(other, mask)
    np.testing.assert_allclose(y[1, :4], y_other[1, :4], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(y[0], y_other[0])
    # Without the mask the padding does leak in (the test can fail).
    no_mask = jnp.ones((2, 6), bool)
    assert not np.allclose(encoder(x, no_mask)[1, :4], encoder(other, no_mask)[1, :4])


def test_causal_and_padding_masks_compose():
    block = fn.TransformerDecoderBlock(8, 2)
    params, state = init(block, ((None, 6, 8), (None, 6)))
    run = jax.jit(lambda x, mask: block.apply(params, state, (x, mask))[0][0])
    x = jax.random.normal(jax.random.key(4), (1, 6, 8))
    mask = jnp.array([[True, False, True, True, True, True]])  # position 1 is padding
    y = run(x, mask)
    future = run(x.at[:, 4:].set(-3.0), mask)  # the future changes: the past does not
    np.testing.assert_allclose(y[:, :4], future[:, :4], rtol=1e-5, atol=1e-5)
    assert not np.allclose(y[:, 4:], future[:, 4:])
    padded = run(x.at[:, 1].set(50.0), mask)  # the padding changes: the others do not
    np.testing.assert_allclose(y[:, 2:], padded[:, 2:], rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------
# Positions


def test_rotary_scores_depend_on_the_distance_only():
    q = jax.random.normal(jax.random.key(5), (1, 1, 1, 8))
    k = jax.random.normal(jax.random.key(6), (1, 1, 1, 8))

    @jax.jit  # one program for every pair of positions
    def score_at(m, n):
        qm = apply_rotary(q, m[None], 10000.0)
        kn = apply_rotary(k, n[None], 10000.0)
        return jnp.sum(qm * kn)

    def score(m, n):
        return float(score_at(jnp.int32(m), jnp.int32(n)))

    base = score(3, 1)
    for shift in (1, 7, 40):
        assert score(3 + shift, 1 + shift) == pytest.approx(base, rel=1e-4, abs=1e-5)
    assert score(5, 1) != pytest.approx(base, rel=1e-3)  # another distance, another score
    # Rotation keeps norms: position is in the angle, not the size.
    rotated = jax.jit(lambda q: apply_rotary(q, jnp.array([9]), 1e4))(q)
    np.testing.assert_allclose(np.linalg.norm(rotated), np.linalg.norm(q), rtol=1e-5)


def test_sinusoids_are_the_papers():
    y, _ = jax.jit(lambda x: fn.SinusoidalPositions().apply({}, {}, x))(jnp.zeros((1, 4, 6)))
    t, i = np.arange(4)[:, None], np.arange(3)[None, :]
    angles = t / 10000 ** (2 * i / 6)
    want = np.stack([np.sin(angles), np.cos(angles)], -1).reshape(4, 6)
    np.testing.assert_allclose(y[0], want, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------
# Weight tying


def test_tied_embedding_holds_one_table_that_both_ends_train():
    body = fn.Dense(4)
    net = fn.tied_embedding(body, 10, 4)
    params, state = init(net, jax.ShapeDtypeStruct((None, 3), jnp.int32))
    tables = [a for a in jax.tree.leaves(params) if a.shape == (10, 4)]
    assert len(tables) == 1 and set(params) == {"embedding", "body"}
    ids = np.array([[1, 2, 2]])
    targets = np.array([[2, 3, 4]])  # host labels: the loss validates them while tracing

    def loss(logits):
        return fn.sparse_categorical_crossentropy(logits, targets, from_logits=True)

    def untied(table_in, table_out, params):
        h = body.apply(params["body"], {}, table_in[ids])[0]
        return loss(h @ table_out.T)

    @jax.jit  # both gradients in one program
    def gradients(params):
        tied = jax.grad(lambda p: loss(net.apply(p, state, ids)[0]))(params)["embedding"]
        table = params["embedding"]
        return tied, jax.grad(untied, argnums=(0, 1))(table, table, params)

    tied, (grad_in, grad_out) = gradients(params)
    np.testing.assert_allclose(tied, grad_in + grad_out, rtol=1e-5, atol=1e-7)
    assert np.abs(grad_in).sum() > 0 and np.abs(grad_out).sum() > 0
    assert np.abs(grad_out[7]).sum() > 0 and np.abs(grad_in[7]).sum() == 0  # id 7: output only


# --------------------------------------------------------------------------
# Depth does not grow the program


def _equations(jaxpr) -> int:
    count = 0
    for eqn in jaxpr.eqns:
        count += 1
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            count += _equations(sub)
    return count


def test_depth_does_not_grow_the_program():
    sizes = []
    for depth in (2, 8):
        lm = fn.TransformerLM(11, 8, depth, 2)
        _, params, state = jax.eval_shape(lambda k, lm=lm: lm.init(k, IDS), jax.random.key(0))
        ids = jax.ShapeDtypeStruct((2, 8), jnp.int32)
        jaxpr = jax.make_jaxpr(lambda p, x, lm=lm, s=state: lm.apply(p, s, x)[0])(params, ids)
        sizes.append(_equations(jaxpr.jaxpr))
    assert sizes[0] == sizes[1]


# --------------------------------------------------------------------------
# Cached decoding equals recomputing the prefix


@pytest.mark.parametrize(
    "positions",
    ["rotary", pytest.param("learned", marks=pytest.mark.slow),
     pytest.param("sinusoidal", marks=pytest.mark.slow)],
)  # fmt: skip
def test_cached_logits_equal_the_full_pass(positions):
    kw = dict(positions=positions, max_length=8, ffn="swiglu")
    lm = fn.TransformerLM(11, 8, 2, 2, **kw)
    decoder = fn.TransformerLM(11, 8, 2, 2, decode=True, **kw)
    params, state = init(lm, IDS)
    ids = jax.random.randint(jax.random.key(1), (2, 8), 0, 11)

    @jax.jit  # the full pass, the cached decoding and a step past the end: one program
    def run(p, x):
        full, _ = lm.apply(p, state, x)
        cached, cache = decode(p, x)
        beyond, _ = decoder.apply(p, cache, x[:, :1])
        return full, cached, beyond

    def decode(p, x):
        _, _, cache = decoder.init(jax.random.key(0), jax.ShapeDtypeStruct((2, 8), jnp.int32))
        prefix, cache = decoder.apply(p, cache, x[:, :3])  # a prompt of 3, then one at a time
        steps = [prefix]
        for t in range(3, 8):
            logits, cache = decoder.apply(p, cache, x[:, t : t + 1])
            steps.append(logits)
        return jnp.concatenate(steps, axis=1), cache

    full, cached, beyond = run(params, ids)
    np.testing.assert_allclose(cached, full, rtol=1e-4, atol=1e-5)
    # Past the end of the cache: NaN, not a silently clamped write.
    assert bool(jnp.isnan(beyond).all())


@pytest.fixture(scope="module")
def trained_shape_lm():
    lm = fn.TransformerLM(11, 8, 2, 2)
    params, state = init(lm, IDS, seed=3)
    return lm, params, state


def test_greedy_generation_equals_recomputing_the_prefix(trained_shape_lm):
    lm, params, state = trained_shape_lm
    decoder = fn.TransformerLM(11, 8, 2, 2, decode=True)
    prompt = jnp.array([[1, 2, 3], [4, 4, 5]])
    tokens = fn.generate(decoder, params, prompt, steps=5, temperature=0)

    @jax.jit
    def next_token(buffer, t):  # the whole prefix each step; later slots are causal-masked
        logits, _ = lm.apply(params, state, buffer)
        return jnp.argmax(logits[:, t - 1], axis=-1)

    buffer = jnp.zeros((2, 8), jnp.int32).at[:, :3].set(prompt)
    for t in range(3, 8):
        buffer = buffer.at[:, t].set(next_token(buffer, t))
    np.testing.assert_array_equal(tokens, buffer[:, 3:])


def test_sampling_is_reproducible_and_follows_the_key(trained_shape_lm):
    _, params, _ = trained_shape_lm
    decoder = fn.TransformerLM(11, 8, 2, 2, decode=True)
    prompt = jnp.array([[1, 2, 3]] * 4)
    a = fn.generate(decoder, params, prompt, steps=6, key=0, temperature=2.0)
    b = fn.generate(decoder, params, prompt, steps=6, key=0, temperature=2.0)
    c = fn.generate(decoder, params, prompt, steps=6, key=1, temperature=2.0)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (4, 6) and not np.array_equal(a, c)
    assert bool(((a >= 0) & (a < 11)).all())


# --------------------------------------------------------------------------
# Dropout, and the errors


def test_dropout_acts_only_in_training():
    block = fn.TransformerEncoderBlock(8, 2, dropout=0.5)
    params, state = init(block, (None, 4, 8))
    x = jax.random.normal(jax.random.key(7), (1, 4, 8))
    infer = jax.jit(lambda x: block.apply(params, state, x)[0])
    y1, y2 = infer(x), infer(x)
    np.testing.assert_array_equal(y1, y2)
    y_train = jax.jit(lambda x: block.apply(params, state, x, train=True, key=1)[0])(x)
    assert not np.allclose(y_train, y1)
    with pytest.raises(fn.LayerValueError, match="needs a key when train=True"):
        block.apply(params, state, x, train=True)


@pytest.mark.parametrize(
    "build, error, message",
    [
        (lambda: fn.TransformerEncoderBlock(10, 3), ValueError,
         r"TransformerEncoderBlock: num_heads \(3\) must divide features \(10\)"),
        (lambda: fn.TransformerDecoderBlock(8, 2, ffn="relu"), ValueError,
         "ffn must be 'gelu' or 'swiglu', got 'relu'"),
        (lambda: fn.MultiHeadAttention(2, 3, rotary=True), ValueError,
         "rotary=True rotates pairs of query/key features, so key_size must be even, got 3"),
        (lambda: fn.MultiHeadAttention(2, 4, decode=True), ValueError,
         "decode=True caches keys .* pass causal=True as well"),
        (lambda: fn.TransformerLM(11, 8, 2, 2, positions="learned"), ValueError,
         "positions='learned' needs max_length"),
        (lambda: fn.SinusoidalPositions().init(0, (None, 4, 5)), fn.LayerValueError,
         "the features must be even, got input shape"),
        (lambda: fn.TransformerDecoderBlock(8, 2, decode=True).init(0, (None, 4, 8)),
         fn.LayerValueError, "decode=True sizes its key/value cache at init"),
        (lambda: fn.TransformerEncoderBlock(8, 2).init(0, (None, 4, 6)), fn.LayerValueError,
         r"expected 8 features \(the block's features\)"),
        (lambda: fn.TransformerEncoderBlock(8, 2).apply(
            fn.TransformerEncoderBlock(8, 2).init(0, (None, 4, 8))[1], {},
            (jnp.ones((1, 4, 8)), jnp.ones((1, 4)))), fn.LayerTypeError,
         "expected a boolean padding mask"),
        (lambda: fn.PositionalEmbedding(4).init(0, (None, 6, 8)), fn.LayerValueError,
         "the table holds 4 positions, got sequences of length 6"),
    ],
)  # fmt: skip
def test_bad_arguments_are_named(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_generate_refuses_a_model_without_cache(trained_shape_lm):
    lm, params, _ = trained_shape_lm
    with pytest.raises(ValueError, match="keeps no key/value cache in its state"):
        fn.generate(lm, params, jnp.array([[1, 2]]), steps=2, temperature=0)
    decoder = fn.TransformerLM(11, 8, 2, 2, decode=True)
    with pytest.raises(ValueError, match="temperature > 0 needs a key"):
        fn.generate(decoder, params, jnp.array([[1, 2]]), steps=2)
    with pytest.raises(ValueError, match="prompt must be integer token ids"):
        fn.generate(decoder, params, jnp.array([1, 2]), steps=2, temperature=0)


@pytest.mark.slow
def test_language_model_float64_gradients_match_at_a_small_step():
    # The registry skips the whole LM's float64 check: at check_grads' default
    # eps finite differences miss by ~5e-5 relative; at 1e-6 they agree.
    from jax.test_util import check_grads

    with jax.enable_x64(True):
        lm = fn.TransformerLM(7, 8, 2, 2)
        _, params, state = lm.init(jax.random.key(1), jax.ShapeDtypeStruct((None, 4), jnp.int32))
        params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
        ids = jax.random.randint(jax.random.key(2), (3, 4), 0, 7)
        f = jax.jit(lambda p: jnp.sum(jnp.sin(lm.apply(p, state, ids)[0])))
        check_grads(f, (params,), order=1, modes=["rev"], atol=1e-5, rtol=1e-5, eps=1e-6)
