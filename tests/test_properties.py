"""Property-based tests over layer hyperparameters and input shapes (hypothesis).

For random constructor arguments and input shapes, every layer either

* builds, and ``init``'s output shape equals the shape ``apply`` produces
  (``jax.eval_shape``, with ``train`` False and True, at two batch sizes),
  and the state keeps its structure and shapes; or
* raises one of funcnet's documented clear errors: a ``ValueError`` or
  ``TypeError`` from the constructor, or a ``LayerError`` from ``init``,
  whose message starts with the layer's name.

Nothing else: no crash from inside JAX, no shape that ``init`` promises and
``apply`` breaks. The examples are few and derandomized, so the file is fast
and the same on every run.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import funcnet as fn
from funcnet._src.core import is_shape

SETTINGS = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)

small = st.integers(1, 4)
padding = st.sampled_from(["SAME", "VALID", "same"])


def outcome(name: str, make: Any, input_shape: Any, dtype: Any = jnp.float32) -> str:
    """Builds, inits and applies a layer; checks the property; says how it ended."""
    try:
        layer = make()
    except (ValueError, TypeError) as error:
        assert str(error).startswith(f"{name}: "), error
        event("constructor error")
        return "constructor error"
    box = {}

    def init(key):  # traced: shapes only, so no op compiles for each new shape
        box["out"], params, state = layer.init(key, input_shape)
        return params, state

    try:
        params, state = jax.eval_shape(init, jax.random.key(0))
    except fn.LayerError as error:
        assert str(error).startswith(f"{name}: "), error
        event("init error")
        return "init error"
    expected = jax.tree.leaves(box["out"], is_leaf=is_shape)
    for batch in (1, 3):
        spec = jax.tree.map(
            lambda shape, b=batch: jax.ShapeDtypeStruct(
                tuple(b if d is None else d for d in shape), dtype
            ),
            input_shape,
            is_leaf=is_shape,
        )
        for train in (False, True):
            y, new_state = jax.eval_shape(
                lambda p, s, x, t=train: layer.apply(p, s, x, key=jax.random.key(1), train=t),
                params,
                state,
                spec,
            )
            got = [tuple(leaf.shape) for leaf in jax.tree.leaves(y)]
            want = [tuple(batch if d is None else d for d in shape) for shape in expected]
            assert got == want, (name, input_shape, train, got, want)
            assert jax.tree.structure(new_state) == jax.tree.structure(state)
            assert jax.tree.map(lambda a: a.shape, new_state) == jax.tree.map(
                lambda a: a.shape, state
            )
    event("ok")
    return "ok"


@SETTINGS
@given(
    units=st.integers(-1, 5),
    features=small,
    middle=st.lists(small, max_size=2),
    activation=st.sampled_from([None, "relu", "tanh", "softmax"]),
    use_bias=st.booleans(),
)
def test_dense(units, features, middle, activation, use_bias):
    outcome(
        "Dense",
        lambda: fn.Dense(units, activation, use_bias=use_bias),
        (None, *middle, features),
    )


@SETTINGS
@given(
    rank=st.integers(1, 2),
    data=st.data(),
    transpose=st.booleans(),
)
def test_conv_and_conv_transpose(rank, data, transpose):
    kernel = tuple(data.draw(st.lists(small, min_size=rank, max_size=rank)))
    strides = data.draw(st.integers(1, 3))
    dilation = data.draw(st.integers(1, 2))
    pad = data.draw(
        padding
        | st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), min_size=rank, max_size=rank)
    )
    spatial = data.draw(st.lists(st.integers(1, 6), min_size=rank, max_size=rank))
    channels, features = data.draw(small), data.draw(small)
    if transpose:
        name = "ConvTranspose"

        def make():
            return fn.ConvTranspose(features, kernel, strides, pad, dilation=dilation)
    else:
        name = "Conv"
        groups = data.draw(st.integers(1, 2))

        def make():
            return fn.Conv(
                features, kernel, strides, pad, dilation=dilation, feature_group_count=groups
            )

    outcome(name, make, (None, *spatial, channels))


@SETTINGS
@given(rank=st.integers(1, 2), data=st.data(), kind=st.sampled_from(["MaxPool", "AvgPool"]))
def test_pools(rank, data, kind):
    window = tuple(data.draw(st.lists(small, min_size=rank, max_size=rank)))
    strides = data.draw(st.none() | st.integers(1, 3))
    pad = data.draw(
        padding
        | st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), min_size=rank, max_size=rank)
    )
    spatial = data.draw(st.lists(st.integers(1, 6), min_size=rank, max_size=rank))
    layer = getattr(fn, kind)
    outcome(kind, lambda: layer(window, strides, pad), (None, *spatial, data.draw(small)))


@SETTINGS
@given(
    kind=st.sampled_from(["GlobalAvgPool", "GlobalMaxPool", "Flatten"]),
    shape=st.lists(small, min_size=0, max_size=3),
)
def test_global_pools_and_flatten(kind, shape):
    outcome(kind, getattr(fn, kind), (None, *shape))


@SETTINGS
@given(
    kind=st.sampled_from(["BatchNorm", "LayerNorm", "RMSNorm"]),
    shape=st.lists(small, min_size=1, max_size=3),
    epsilon=st.sampled_from([1e-3, 1e-6, 0.0, -1.0]),
)
def test_norms(kind, shape, epsilon):
    layer = getattr(fn, kind)
    outcome(kind, lambda: layer(epsilon=epsilon), (None, *shape))


@SETTINGS
@given(
    num_groups=st.integers(0, 4), channels=st.integers(1, 8), spatial=st.lists(small, max_size=2)
)
def test_group_norm(num_groups, channels, spatial):
    outcome("GroupNorm", lambda: fn.GroupNorm(num_groups), (None, *spatial, channels))


@SETTINGS
@given(
    rate=st.sampled_from([0.0, 0.3, 0.99, 1.0, -0.1]),
    shape=st.lists(small, min_size=1, max_size=3),
)
def test_dropout(rate, shape):
    outcome("Dropout", lambda: fn.Dropout(rate), (None, *shape))


@SETTINGS
@given(shape=st.lists(small, min_size=1, max_size=3), data=st.data())
def test_reshape(shape, data):
    size = 1
    for d in shape:
        size *= d
    first = data.draw(st.sampled_from([d for d in range(1, size + 1) if size % d == 0] + [-1, 0]))
    target = (first, -1) if first != -1 else (-1, data.draw(small))
    outcome("Reshape", lambda: fn.Reshape(target), (None, *shape))


@SETTINGS
@given(num=st.integers(0, 10), features=st.integers(0, 4), shape=st.lists(small, max_size=2))
def test_embedding(num, features, shape):
    outcome("Embedding", lambda: fn.Embedding(num, features), (None, *shape), jnp.int32)


@SETTINGS
@given(
    kind=st.sampled_from(["SimpleRNN", "LSTM", "GRU"]),
    units=st.integers(0, 4),
    time=small,
    features=small,
    return_sequences=st.booleans(),
    return_state=st.booleans(),
)
def test_recurrent(kind, units, time, features, return_sequences, return_state):
    layer = getattr(fn, kind)
    outcome(
        kind,
        lambda: layer(units, return_sequences=return_sequences, return_state=return_state),
        (None, time, features),
    )


@SETTINGS
@given(
    heads=st.integers(0, 3),
    key_size=small,
    time=small,
    features=small,
    causal=st.booleans(),
    out_features=st.none() | small,
)
def test_attention(heads, key_size, time, features, causal, out_features):
    outcome(
        "MultiHeadAttention",
        lambda: fn.MultiHeadAttention(heads, key_size, out_features=out_features, causal=causal),
        (None, time, features),
    )


@SETTINGS
@given(
    width=small,
    depth=st.integers(1, 3),
    features=small,
)
def test_combinators_thread_shapes(width, depth, features):
    block = fn.serial(fn.Dense(width), fn.Relu())
    outcome(
        "serial",
        lambda: fn.serial(
            fn.repeat(fn.residual(fn.serial(fn.Dense(features), fn.Tanh())), depth),
            fn.fanout(2),
            fn.parallel(block, fn.Identity()),
            fn.fan_in_concat(),
        ),
        (None, features),
    )
