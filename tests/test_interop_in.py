"""Other libraries' modules as funcnet layers: from_flax, from_nnx, from_equinox, from_haiku, from_keras_layer.

Each section builds a small model with Dense, BatchNorm and Dropout in the
other library and checks that the funcnet layer computes the same numbers as
the library's own call: the forward pass in both modes, the gradients with
respect to params and inputs, the BatchNorm statistics after a training
step, and dropout under a given key where the library takes a key directly.
The shared tests then train each wrapped module inside fn.serial with fn.fit,
save and load its params, and read its summary.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # before Keras is first imported

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import funcnet as fn

X = jax.random.normal(jax.random.key(1), (6, 3))
DROPOUT_KEY = jax.random.key(7)


def close(a, b, tol=1e-5):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=tol, atol=tol), a, b)


def grads(forward, params, x):
    """Gradients of sum(forward(params, x)) with respect to params and x."""
    # Jitted: one compiled program instead of one per eager op of the backward pass.
    return jax.jit(jax.grad(lambda p, x: jnp.sum(forward(p, x) ** 2), argnums=(0, 1)))(params, x)


_JITTED = {}


def jitted(layer):
    """layer.apply under jax.jit, one per layer: one program per call signature instead of
    one per eager op."""
    if id(layer) not in _JITTED:
        _JITTED[id(layer)] = (layer, jax.jit(layer.apply, static_argnames="train"))
    return _JITTED[id(layer)][1]


def layer_grads(layer, params, state, x):
    return grads(lambda p, x: layer.apply(p, state, x)[0], params, x)


# --------------------------------------------------------------------------
# Flax Linen


@pytest.fixture(scope="module")
def linen():
    nn = pytest.importorskip("flax.linen", reason="from_flax needs Flax (pip install flax)")

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool = False):
            x = nn.Dense(5)(x)
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
            x = nn.Dropout(0.5, deterministic=not train)(x)
            return nn.Dense(2)(x)

    module = Block()
    layer = fn.from_flax(module)
    _, params, state = layer.init(jax.random.key(0), (None, 3))
    return nn, module, layer, params, state


def test_flax_forward_grads_and_batch_stats_equal_flax(linen):
    _, module, layer, params, state = linen
    variables = {"params": params, **state}
    close(jitted(layer)(params, state, X)[0], module.apply(variables, X))
    ours = layer_grads(layer, params, state, X)
    theirs = grads(lambda p, x: module.apply({"params": p, **state}, x), params, X)
    close(ours, theirs)
    y, new_state = jitted(layer)(params, state, X, train=True, key=DROPOUT_KEY)
    y_flax, updated = module.apply(
        variables, X, train=True, rngs={"dropout": DROPOUT_KEY}, mutable=["batch_stats"]
    )
    close(y, y_flax)  # the same dropout mask from the same key
    close(new_state, dict(updated))
    assert not np.allclose(new_state["batch_stats"]["BatchNorm_0"]["mean"], 0.0)


def test_flax_init_matches_flax_init_and_finds_the_deterministic_keyword(linen):
    nn = linen[0]

    class Drop(nn.Module):
        @nn.compact
        def __call__(self, x, deterministic: bool = True):
            return nn.Dropout(0.5)(nn.Dense(4)(x), deterministic=deterministic)

    layer = fn.from_flax(Drop())
    _, params, state = layer.init(jax.random.key(0), (None, 3))
    eval_y = jitted(layer)(params, state, X)[0]
    close(eval_y, Drop().apply({"params": params}, X))
    train_y = jitted(layer)(params, state, X, train=True, key=DROPOUT_KEY)[0]
    close(train_y, Drop().apply({"params": params}, X, False, rngs={"dropout": DROPOUT_KEY}))
    assert np.any(np.asarray(train_y) == 0.0) and not np.any(np.asarray(eval_y) == 0.0)


# --------------------------------------------------------------------------
# Flax NNX


@pytest.fixture(scope="module")
def nnx_model():
    nnx = pytest.importorskip("flax.nnx", reason="from_nnx needs Flax (pip install flax)")

    class Block(nnx.Module):
        def __init__(self, rngs):
            self.dense = nnx.Linear(3, 5, rngs=rngs)
            self.norm = nnx.BatchNorm(5, momentum=0.9, rngs=rngs)
            self.drop = nnx.Dropout(0.5, rngs=rngs)
            self.out = nnx.Linear(5, 2, rngs=rngs)

        def __call__(self, x):
            return self.out(self.drop(self.norm(self.dense(x))))

    layer = fn.from_nnx(Block)
    _, params, state = layer.init(jax.random.key(0), (None, 3))
    return nnx, Block, layer, params, state


def test_nnx_init_forward_grads_and_batch_stats_equal_nnx(nnx_model):
    nnx, Block, layer, params, state = nnx_model
    model = Block(nnx.Rngs(jax.random.key(0)))  # what init built from its key
    graphdef, nnx_params, rest = nnx.split(model, nnx.Param, ...)
    close(params, {".".join(map(str, p)): v for p, v in nnx.to_flat_state(nnx_params)})
    model.eval()
    close(jitted(layer)(params, state, X)[0], model(X))

    def nnx_forward(p, x):
        m = nnx.merge(graphdef, p, rest)
        m.eval()
        return m(x)

    ours = layer_grads(layer, params, state, X)
    d_params, d_x = grads(nnx_forward, nnx_params, X)
    close(ours[1], d_x)
    close(ours[0], {".".join(map(str, p)): v for p, v in nnx.to_flat_state(d_params)})
    model.train()
    model.drop.deterministic = True  # the statistics alone: NNX draws dropout from its own stream
    model(X)
    _, new_state = jitted(layer)(params, state, X, train=True, key=DROPOUT_KEY)
    close(new_state["norm.mean"], model.norm.mean[...])
    close(new_state["norm.var"], model.norm.var[...])


def test_nnx_dropout_follows_the_key_and_a_module_keeps_its_weights(nnx_model):
    nnx, _, layer, params, state = nnx_model
    a = jitted(layer)(params, state, X, train=True, key=DROPOUT_KEY)[0]
    b = jitted(layer)(params, state, X, train=True, key=DROPOUT_KEY)[0]
    c = jitted(layer)(params, state, X, train=True, key=jax.random.key(8))[0]
    close(a, b)
    assert not np.allclose(a, c)
    model = nnx.Linear(3, 2, rngs=nnx.Rngs(5))
    _, kept, _ = fn.from_nnx(model).init(jax.random.key(0), (None, 3))
    close(kept["kernel"], model.kernel[...])


# --------------------------------------------------------------------------
# Equinox


@pytest.fixture(scope="module")
def equinox():
    eqx = pytest.importorskip("equinox", reason="from_equinox needs Equinox (pip install equinox)")

    class Block(eqx.Module):
        dense: eqx.nn.Linear
        norm: eqx.nn.BatchNorm
        drop: eqx.nn.Dropout
        out: eqx.nn.Linear

        def __init__(self, key):
            k1, k2 = jax.random.split(key)
            self.dense = eqx.nn.Linear(3, 5, key=k1)
            self.norm = eqx.nn.BatchNorm(5, "batch", momentum=0.9, mode="ema")
            self.drop = eqx.nn.Dropout(0.5)
            self.out = eqx.nn.Linear(5, 2, key=k2)

        def __call__(self, x, state, *, key=None):
            x, state = self.norm(self.dense(x), state)
            return self.out(self.drop(x, key=key)), state

    model, eqx_state = eqx.nn.make_with_state(Block)(jax.random.key(0))
    layer = fn.from_equinox((model, eqx_state))
    _, params, state = layer.init(jax.random.key(0), (None, 3))
    return eqx, model, eqx_state, layer, params, state


def test_equinox_forward_grads_state_and_dropout_equal_equinox(equinox):
    eqx, model, eqx_state, layer, params, state = equinox

    def run(m, x, keys=None, inference=True):
        m = eqx.nn.inference_mode(m, inference)
        call = lambda x, k: m(x, eqx_state, key=k)  # noqa: E731
        return jax.vmap(
            call, in_axes=(0, None if keys is None else 0), out_axes=(0, None), axis_name="batch"
        )(x, keys)

    close(jitted(layer)(params, state, X)[0], run(model, X)[0])
    arrays, static = eqx.partition(model, eqx.is_inexact_array)
    d_params, d_x = grads(lambda a, x: run(eqx.combine(a, static), x)[0], arrays, X)
    ours = layer_grads(layer, params, state, X)
    close(ours[1], d_x)
    close(ours[0]["dense.weight"], d_params.dense.weight)
    y, new_state = jitted(layer)(params, state, X, train=True, key=DROPOUT_KEY)
    y_eqx, eqx_new = run(model, X, jax.random.split(DROPOUT_KEY, len(X)), inference=False)
    close(y, y_eqx)  # one key per example, split from the given key
    close(jax.tree.leaves(new_state["state"]), jax.tree.leaves(eqx_new))


def test_equinox_batched_module_and_factory(equinox):
    eqx = equinox[0]
    mlp = fn.from_equinox(lambda key: eqx.nn.MLP(3, 2, 4, 1, key=key))
    _, params, state = mlp.init(jax.random.key(3), (None, 3))
    reference = eqx.nn.MLP(3, 2, 4, 1, key=jax.random.key(3))
    close(mlp.apply(params, state, X)[0], jax.vmap(reference)(X))

    class Whole(eqx.Module):  # takes the whole batch: no vmap
        w: jax.Array

        def __call__(self, x):
            return x @ self.w

    whole = Whole(jnp.ones((3, 2)))
    layer = fn.from_equinox(whole, batched=True)
    _, p, s = layer.init(jax.random.key(0), (None, 3))
    close(layer.apply(p, s, X)[0], whole(X))


# --------------------------------------------------------------------------
# Haiku


@pytest.fixture(scope="module")
def haiku():
    hk = pytest.importorskip("haiku", reason="from_haiku needs Haiku (pip install dm-haiku)")

    def forward(x, is_training):
        x = hk.Linear(5)(x)
        x = hk.BatchNorm(True, True, 0.9)(x, is_training)
        if is_training:
            x = hk.dropout(hk.next_rng_key(), 0.5, x)
        return hk.Linear(2)(x)

    transformed = hk.transform_with_state(forward)
    layer = fn.from_haiku(forward)
    _, params, state = layer.init(jax.random.key(0), (None, 3))
    return hk, transformed, layer, params, state


def test_haiku_init_forward_grads_state_and_dropout_equal_haiku(haiku):
    _, transformed, layer, params, state = haiku
    hk_params, hk_state = transformed.init(jax.random.key(0), jnp.zeros((1, 3)), True)
    close((params, state), (hk_params, hk_state))
    close(jitted(layer)(params, state, X)[0], transformed.apply(params, state, None, X, False)[0])
    ours = layer_grads(layer, params, state, X)
    close(ours, grads(lambda p, x: transformed.apply(p, state, None, x, False)[0], params, X))
    y, new_state = jitted(layer)(params, state, X, train=True, key=DROPOUT_KEY)
    y_hk, hk_new = transformed.apply(params, state, DROPOUT_KEY, X, True)
    close((y, new_state), (y_hk, hk_new))


def test_haiku_transformed_pair_with_a_named_train_arg(haiku):
    hk, transformed = haiku[0], haiku[1]
    layer = fn.from_haiku(transformed, train_arg="is_training")
    _, params, state = layer.init(jax.random.key(0), (None, 3))
    y, _ = jitted(layer)(params, state, X, train=True, key=DROPOUT_KEY)
    close(y, transformed.apply(params, state, DROPOUT_KEY, X, True)[0])
    plain = hk.transform(lambda x: hk.Linear(2)(x))
    _, p, s = fn.from_haiku(plain).init(jax.random.key(0), (None, 3))
    assert s == {} and p["linear"]["w"].shape == (3, 2)


# --------------------------------------------------------------------------
# Keras


@pytest.fixture(scope="module")
def keras_model():
    keras = pytest.importorskip(
        "keras", reason="from_keras_layer needs Keras 3 (pip install keras)"
    )
    if keras.backend.backend() != "jax":
        pytest.skip("from_keras_layer needs KERAS_BACKEND=jax set before Keras is first imported")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(5),
            keras.layers.BatchNormalization(momentum=0.9),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(2),
        ]
    )
    layer = fn.from_keras_layer(model)
    _, params, state = layer.init(jax.random.key(0), (None, 3))
    return keras, model, layer, params, state


def test_keras_forward_grads_and_moving_statistics_equal_keras(keras_model):
    _, model, layer, params, state = keras_model
    trainable = [params[v.path] for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    with jax.numpy_rank_promotion("allow"):
        expected = model(X, training=False)
    close(jitted(layer)(params, state, X)[0], expected)

    def keras_forward(values, x):
        with jax.numpy_rank_promotion("allow"):  # Keras broadcasts implicitly
            return model.stateless_call(values, non_trainable, x, training=False)[0]

    ours = layer_grads(layer, params, state, X)
    d_values, d_x = grads(keras_forward, trainable, X)
    close(ours[1], d_x)
    close([ours[0][v.path] for v in model.trainable_variables], d_values)
    # Moving statistics from a training step: dropout comes after BatchNorm, so
    # they do not depend on the mask.
    _, new_state = jitted(layer)(params, state, X, train=True, key=DROPOUT_KEY)
    with jax.numpy_rank_promotion("allow"):
        _, keras_new = model.stateless_call(trainable, non_trainable, X, training=True)
    by_path = dict(zip([v.path for v in model.non_trainable_variables], keras_new))
    close(new_state, {path: by_path[path] for path in new_state})
    assert not np.allclose(new_state[next(iter(new_state))], non_trainable[0])


def test_keras_dropout_follows_the_key(keras_model):
    _, _, layer, params, state = keras_model
    a = jitted(layer)(params, state, X, train=True, key=DROPOUT_KEY)[0]
    b = jitted(layer)(params, state, X, train=True, key=DROPOUT_KEY)[0]
    c = jitted(layer)(params, state, X, train=True, key=jax.random.key(8))[0]
    close(a, b)
    assert not np.allclose(a, c)


# --------------------------------------------------------------------------
# Every library: inside fn.serial, trained by fit, saved, summarised


def test_every_library_in_one_model_trains_saves_and_summarises(tmp_path):
    nn = pytest.importorskip("flax.linen", reason="needs Flax")
    nnx = pytest.importorskip("flax.nnx", reason="needs Flax")
    eqx = pytest.importorskip("equinox", reason="needs Equinox")
    hk = pytest.importorskip("haiku", reason="needs Haiku")
    keras = pytest.importorskip("keras", reason="needs Keras 3")
    if keras.backend.backend() != "jax":
        pytest.skip("needs KERAS_BACKEND=jax set before Keras is first imported")
    # One model with a module of each library, so that fit compiles one program.
    net = fn.serial(
        fn.from_flax(nn.Dense(4)),
        fn.Relu(),
        fn.from_nnx(lambda rngs: nnx.Linear(4, 4, rngs=rngs)),
        fn.from_equinox(lambda key: eqx.nn.Linear(4, 4, key=key)),
        fn.Tanh(),
        fn.from_haiku(lambda x: hk.Linear(4)(x)),
        fn.from_keras_layer(keras.layers.Dense(4)),
        fn.Dense(1),
    )
    text = fn.summary(net, (None, 3))
    for row in ("serial[0].Dense  (None, 4)  16", "serial[2].Linear  (None, 4)  20",
                "serial[3].Linear  (None, 4)  20", "serial[5].haiku  (None, 4)  20"):  # fmt: skip
        assert " ".join(row.split()) in " ".join(text.split())
    x = np.asarray(jax.random.normal(jax.random.key(2), (32, 3)))
    y = x @ np.array([[1.0], [-2.0], [0.5]], np.float32)
    result = fn.fit(
        net, x, y, loss="mse", optimizer=optax.adam(0.02), epochs=30, batch_size=32, verbose=0
    )
    losses = result.history["loss"]
    assert losses[-1] < 0.3 * losses[0]
    fn.save(tmp_path / "params.safetensors", result.params)
    loaded = fn.load(tmp_path / "params.safetensors", like=result.params)
    close(loaded, result.params, tol=0)
    both = jax.jit(lambda a, b: [net.apply(p, result.state, x)[0] for p in (a, b)])
    close(*both(loaded, result.params))


@pytest.mark.parametrize("library", ["flax", "haiku", "equinox", "nnx", "keras"])
def test_stateful_modules_save_and_load_their_state(
    library, linen, haiku, equinox, nnx_model, keras_model, tmp_path
):
    state = {
        "flax": linen,
        "haiku": haiku,
        "equinox": equinox,
        "nnx": nnx_model,
        "keras": keras_model,
    }[library][-1]
    fn.save(tmp_path / "state.safetensors", state)
    close(fn.load(tmp_path / "state.safetensors", like=state), state, tol=0)


# --------------------------------------------------------------------------
# Bad inputs


def test_a_module_of_another_library_is_sent_to_its_converter(linen, nnx_model, equinox):
    nn, nnx, eqx = linen[0], nnx_model[0], equinox[0]
    with pytest.raises(
        TypeError,
        match=r"from_nnx: .* got Dense, a Flax Linen module: convert it with fn.from_flax",
    ):
        fn.from_nnx(nn.Dense(4))
    linear = nnx.Linear(3, 4, rngs=nnx.Rngs(0))
    with pytest.raises(
        TypeError, match=r"from_flax: .*got Linear, a Flax NNX module: convert it with fn.from_nnx"
    ):
        fn.from_flax(linear)
    with pytest.raises(
        TypeError,
        match=r"from_haiku: .*got Linear, an Equinox module: convert it with fn.from_equinox",
    ):
        fn.from_haiku(eqx.nn.Linear(3, 4, key=jax.random.key(0)))
    with pytest.raises(TypeError, match=r"from_equinox: .*got int 3\.$"):
        fn.from_equinox(3)
    with pytest.raises(TypeError, match=r"Pass an instance such as Dense\(\.\.\.\), not the class"):
        fn.from_flax(nn.Dense)


def test_bad_arguments_are_named_with_the_fix(linen, haiku, equinox, keras_model):
    nn, hk, eqx = linen[0], haiku[0], equinox[0]
    with pytest.raises(TypeError, match=r"from_flax: train_arg must be the name of the keyword"):
        fn.from_flax(nn.Dense(4), train_arg=True)
    with pytest.raises(TypeError, match=r"from_equinox: batched must be True .*got 'yes'\.$"):
        fn.from_equinox(lambda key: eqx.nn.Linear(3, 4, key=key), batched="yes")
    with pytest.raises(TypeError, match=r"from_haiku: .*got the Haiku module Linear, but Haiku"):
        fn.from_haiku(hk.Linear)
    with pytest.raises(
        TypeError,
        match=r"from_keras_layer: layer must be a Keras 3 layer .*got Dense, a Flax Linen",
    ):
        fn.from_keras_layer(nn.Dense(4))


@pytest.mark.parametrize(
    "fixture, what",
    [
        ("linen", "Flax module"),
        ("nnx_model", "NNX module"),
        ("equinox", "Equinox module"),
        ("haiku", "Haiku function"),
        ("keras_model", "Keras layer"),
    ],
)
def test_training_without_a_key_says_how_to_pass_one(fixture, what, request):
    *_, layer, params, state = request.getfixturevalue(fixture)
    with pytest.raises(
        fn.LayerTypeError,
        match=rf"the wrapped {what} draws random numbers when train=True .*key=jax.random.key\(0\)",
    ):
        layer.apply(params, state, X, train=True)
