"""funcnet models inside other libraries' code: as_function, to_keras, to_flax, to_equinox, to_haiku.

Each converter is checked against funcnet itself on one small model (Dense,
BatchNorm, Relu, Dense): the same forward pass, the same gradients with
respect to params and inputs, the same batch-norm state update, and three
steps of the other library's own training loop (Keras ``model.fit``, a Flax
``TrainState`` loop, an Equinox ``filter_value_and_grad`` loop, a Haiku
``transform_with_state`` loop) ending at the params and state of funcnet's
own ``make_train_step``. Each library's tests skip, with the reason, where it
is not installed (the test extra installs them all).
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # Keras picks its backend on first import

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import funcnet as fn

TOL = {"rtol": 1e-5, "atol": 1e-6}
STEPS = 3
LEARNING_RATE = 0.1


def assert_trees_close(got, expected):
    assert jax.tree.structure(got) == jax.tree.structure(expected)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), **TOL)


def grads_and_state(loss, params, x):
    """``loss(params, x) -> (value, new_state)``'s new state, param and input gradients, jitted."""

    @jax.jit
    def both(params, x):
        (_, new_state), grads = jax.value_and_grad(loss, has_aux=True)(params, x)
        return new_state, grads, jax.grad(lambda x: loss(params, x)[0])(x)

    return both(params, jnp.asarray(x))


@pytest.fixture(scope="module")
def setup():
    """The model, its init, a batch, and funcnet's own answers to compare with."""
    net = fn.serial(fn.Dense(4), fn.BatchNorm(), fn.Relu(), fn.Dense(1))
    _, params, state = net.init(jax.random.key(0), (None, 3))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3)).astype(np.float32)
    y = (x[:, :1] * 2 - x[:, 1:2]).astype(np.float32)

    def loss(params, x):
        out, new_state = net.apply(params, state, x, train=True)
        return jnp.mean((out - y) ** 2), new_state

    @jax.jit
    def answers(params, x):
        (_, new_state), param_grads = jax.value_and_grad(loss, has_aux=True)(params, x)
        input_grads = jax.grad(lambda x: loss(params, x)[0])(x)
        return new_state, param_grads, input_grads, net.apply(params, state, x)[0]

    train_state_update, param_grads, input_grads, eval_output = answers(params, x)
    optimizer = optax.sgd(LEARNING_RATE)
    ts = fn.TrainState(
        params, state, optimizer.init(params), jnp.zeros((), jnp.int32), jax.random.key(0)
    )
    step = fn.make_train_step(net, fn.mse, optimizer, donate=False)
    losses = []
    for _ in range(STEPS):
        ts, value = step(ts, (x, y))
        losses.append(float(value))
    return {
        "net": net, "params": params, "state": state, "x": x, "y": y,
        "eval": eval_output,
        "train_state_update": train_state_update,
        "param_grads": param_grads, "input_grads": input_grads,
        "trained": ts, "losses": losses, "optimizer": optimizer,
    }  # fmt: skip


@pytest.fixture(scope="module")
def dropout_net():
    net = fn.serial(fn.Dense(3), fn.Dropout(0.5))
    _, params, state = net.init(jax.random.key(1), (None, 3))
    return net, params, state


# --------------------------------------------------------------------------
# as_function


def test_as_function_is_apply_with_params_state_and_flags_bound(setup):
    s = setup
    f = fn.as_function(s["net"], s["params"], s["state"])
    np.testing.assert_allclose(f(s["x"]), s["eval"], **TOL)
    f_train = fn.as_function(s["net"], s["params"], s["state"], train=True, return_state=True)
    _, new_state = f_train(s["x"])
    assert_trees_close(new_state, s["train_state_update"])


def test_as_function_composes_with_vmap_grad_jacrev_hessian(setup):
    s = setup
    f = fn.as_function(s["net"], s["params"], s["state"])
    per_example = jax.vmap(lambda row: f(row[None])[0])(s["x"])
    np.testing.assert_allclose(per_example, s["eval"], **TOL)
    scalar = lambda row: f(row[None])[0, 0]  # noqa: E731
    row = jnp.asarray(s["x"][0])
    reference = lambda row: s["net"].apply(s["params"], s["state"], row[None])[0][0, 0]  # noqa: E731
    np.testing.assert_allclose(
        jax.jit(jax.grad(scalar))(row), jax.jit(jax.grad(reference))(row), **TOL
    )
    assert jax.eval_shape(jax.jacrev(lambda r: f(r[None])[0]), row).shape == (1, 3)
    # A smooth model, so the Hessian is not zero; check it against finite differences.
    smooth = fn.serial(fn.Dense(4), fn.Tanh(), fn.Dense(1))
    _, p, st = smooth.init(jax.random.key(2), (None, 3))
    g = fn.as_function(smooth, p, st)
    hessian = jax.jit(jax.hessian(lambda r: g(r[None])[0, 0]))(row)
    # Each column is the change of the gradient along one axis (central differences).
    grad = jax.jit(jax.vmap(jax.grad(lambda r: g(r[None])[0, 0])))
    h = 1e-2
    steps = h * jnp.eye(3)
    differences = (grad(row[None] + steps) - grad(row[None] - steps)) / (2 * h)
    assert float(jnp.abs(hessian).max()) > 1e-2
    np.testing.assert_allclose(hessian, differences, atol=2e-3)


def test_as_function_in_a_scan_with_a_key_per_step(dropout_net):
    net, params, state = dropout_net
    f = fn.as_function(net, params, state, train=True, key=0)
    x = jnp.ones((2, 3))
    np.testing.assert_array_equal(f(x), f(x))  # one bound key: one mask

    def body(carry, key):
        return carry, f(x, key=key)

    keys = jax.random.split(jax.random.key(5), 4)
    _, ys = jax.lax.scan(body, 0, keys)
    # Each step used its own key, as net.apply would.
    expected = jax.vmap(lambda k: net.apply(params, state, x, train=True, key=k)[0])(keys)
    np.testing.assert_allclose(ys, expected)
    assert not np.array_equal(ys[0], ys[1])


def test_as_function_exports_with_a_symbolic_batch(setup):
    s = setup
    f = fn.as_function(s["net"], s["params"], s["state"])
    (batch,) = jax.export.symbolic_shape("b")
    exported = jax.export.export(jax.jit(f))(jax.ShapeDtypeStruct((batch, 3), jnp.float32))
    restored = jax.export.deserialize(exported.serialize())
    np.testing.assert_allclose(restored.call(s["x"]), s["eval"], **TOL)
    np.testing.assert_allclose(restored.call(s["x"][:5]), s["eval"][:5], **TOL)


def test_as_params_function_gives_funcnets_gradients(setup):
    s = setup
    f = fn.as_params_function(s["net"], s["state"], train=True, return_state=True)

    def loss(params):
        out, new_state = f(params, s["x"])
        return jnp.mean((out - s["y"]) ** 2), new_state

    grads, new_state = jax.jit(jax.grad(loss, has_aux=True))(s["params"])
    assert_trees_close(grads, s["param_grads"])
    assert_trees_close(new_state, s["train_state_update"])


def test_as_function_errors(setup, dropout_net):
    s = setup
    with pytest.raises(TypeError, match=r"as_function: net must be a funcnet Layer, got the "):
        fn.as_function(fn.Dense, s["params"], s["state"])
    with pytest.raises(TypeError, match=r"as_function: state must be the state that net.init"):
        fn.as_function(s["net"], s["params"], None)
    net, params, state = dropout_net
    f = fn.as_function(net, params, state, train=True)
    with pytest.raises(fn.LayerValueError, match=r"Dropout needs a key when train=True, and none"):
        f(jnp.ones((2, 3)))


# --------------------------------------------------------------------------
# Keras


@pytest.fixture(scope="module")
def keras():
    keras = pytest.importorskip(
        "keras", minversion="3.0", reason="Keras 3 is not installed: pip install -e '.[interop]'"
    )
    if keras.backend.backend() != "jax":
        pytest.skip("Keras was first imported on another backend; to_keras needs KERAS_BACKEND=jax")
    return keras


def test_to_keras_same_forward_gradients_and_state_update(setup, keras):
    s = setup
    layer = fn.to_keras(s["net"], params=s["params"], state=s["state"])
    np.testing.assert_allclose(layer(s["x"]), s["eval"], **TOL)
    assert len(layer.trainable_weights) == len(jax.tree.leaves(s["params"]))
    assert len(layer.non_trainable_weights) == len(jax.tree.leaves(s["state"]))
    trainable = [v.value for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]

    def loss(trainable, x):
        out, new_state = layer.stateless_call(trainable, non_trainable, x, training=True)
        return jnp.mean((out - s["y"]) ** 2), new_state

    new_state, grads, input_grads = grads_and_state(loss, trainable, s["x"])
    for got, expected in zip(grads, jax.tree.leaves(s["param_grads"])):
        np.testing.assert_allclose(got, expected, **TOL)
    for got, expected in zip(new_state, jax.tree.leaves(s["train_state_update"])):
        np.testing.assert_allclose(got, expected, **TOL)
    np.testing.assert_allclose(input_grads, s["input_grads"], **TOL)


def test_to_keras_trains_under_model_fit_like_funcnets_step(setup, keras):
    s = setup
    layer = fn.to_keras(s["net"], params=s["params"], state=s["state"])
    model = keras.Sequential([keras.Input((3,)), layer])
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE), loss="mse")
    seen = []
    history = model.fit(
        s["x"], s["y"], batch_size=len(s["x"]), epochs=STEPS, shuffle=False, verbose=0,
        callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(e))],
    )  # fmt: skip
    assert seen == list(range(STEPS))
    np.testing.assert_allclose(history.history["loss"], s["losses"], rtol=1e-5)
    values = lambda tree: jax.tree.map(lambda v: v.value, tree)  # noqa: E731
    assert_trees_close(values(layer.params), s["trained"].params)
    assert_trees_close(values(layer.state), s["trained"].state)
    # The caller's params were copied, not handed to Keras, which donates its
    # buffers: reading them would raise "Array has been deleted".
    for leaf in jax.tree.leaves(s["params"]):
        np.asarray(leaf)


def test_to_keras_dropout_gets_keras_keys_in_training_only(keras, dropout_net):
    net, params, state = dropout_net
    layer = fn.to_keras(net, params=params, state=state, seed=3)
    x = np.ones((4, 3), np.float32)
    np.testing.assert_allclose(layer(x), net.apply(params, state, x)[0], **TOL)
    first, second = np.asarray(layer(x, training=True)), np.asarray(layer(x, training=True))
    assert (first == 0).any() and not np.array_equal(first, second)


def test_to_keras_builds_new_weights_from_the_input_shape(keras):
    keras.utils.set_random_seed(0)
    layer = fn.to_keras(fn.Dense(2), (None, 3))
    assert [tuple(w.shape) for w in layer.trainable_weights] == [(2,), (3, 2)]
    assert layer(np.ones((5, 3), np.float32)).shape == (5, 2)


def test_to_keras_errors(setup, keras):
    s = setup
    with pytest.raises(TypeError, match=r"to_keras: params was given without state; pass both"):
        fn.to_keras(s["net"], params=s["params"])
    with pytest.raises(TypeError, match=r"to_keras: give input_shape \(batch included"):
        fn.to_keras(s["net"])
    with pytest.raises(TypeError, match=r"to_keras: input_shape must be funcnet's input shape"):
        fn.to_keras(s["net"], "(None, 3)")


# --------------------------------------------------------------------------
# Flax Linen


@pytest.fixture(scope="module")
def flax():
    return pytest.importorskip("flax", reason="Flax is not installed: pip install -e '.[interop]'")


def test_to_flax_same_forward_gradients_and_state_update(setup, flax):
    s = setup
    module = fn.to_flax(s["net"])
    variables = module.init(jax.random.key(0), s["x"])
    assert jax.tree.structure(variables["params"]["funcnet"]) == jax.tree.structure(s["params"])
    variables = {"params": {"funcnet": s["params"]}, "batch_stats": {"funcnet_state": s["state"]}}
    np.testing.assert_allclose(module.apply(variables, s["x"]), s["eval"], **TOL)

    def loss(params, x):
        out, updates = module.apply(
            {**variables, "params": params}, x, train=True, mutable=["batch_stats"]
        )
        return jnp.mean((out - s["y"]) ** 2), updates

    updates, grads, input_grads = grads_and_state(loss, variables["params"], s["x"])
    assert_trees_close(grads["funcnet"], s["param_grads"])
    assert_trees_close(updates["batch_stats"]["funcnet_state"], s["train_state_update"])
    np.testing.assert_allclose(input_grads, s["input_grads"], **TOL)


def test_to_flax_trains_in_a_flax_train_state_loop_like_funcnets_step(setup, flax):
    from flax.training import train_state

    s = setup
    module = fn.to_flax(s["net"])

    class TrainState(train_state.TrainState):
        batch_stats: dict

    ts = TrainState.create(
        apply_fn=module.apply, params={"funcnet": s["params"]}, tx=s["optimizer"],
        batch_stats={"funcnet_state": s["state"]},
    )  # fmt: skip

    @jax.jit
    def step(ts, x, y, key):
        def loss(params):
            out, updates = ts.apply_fn(
                {"params": params, "batch_stats": ts.batch_stats}, x, train=True,
                mutable=["batch_stats"], rngs={"dropout": key},
            )  # fmt: skip
            return jnp.mean((out - y) ** 2), updates

        (value, updates), grads = jax.value_and_grad(loss, has_aux=True)(ts.params)
        return ts.apply_gradients(grads=grads).replace(batch_stats=updates["batch_stats"]), value

    for i in range(STEPS):
        ts, value = step(ts, s["x"], s["y"], jax.random.key(i))
        np.testing.assert_allclose(value, s["losses"][i], rtol=1e-5)
    assert_trees_close(ts.params["funcnet"], s["trained"].params)
    assert_trees_close(ts.batch_stats["funcnet_state"], s["trained"].state)


def test_to_flax_dropout_draws_from_the_dropout_stream(flax, dropout_net):
    net, params, _ = dropout_net
    module = fn.to_flax(net)
    variables = {"params": {"funcnet": params}}  # stateless: no batch_stats
    x = jnp.ones((4, 3))
    np.testing.assert_allclose(module.apply(variables, x), net.apply(params, ({}, {}), x)[0])
    a = module.apply(variables, x, train=True, rngs={"dropout": jax.random.key(0)})
    b = module.apply(variables, x, train=True, rngs={"dropout": jax.random.key(0)})
    c = module.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)})
    np.testing.assert_array_equal(a, b)
    assert (np.asarray(a) == 0).any() and not np.array_equal(a, c)


def test_to_flax_errors(setup, flax, dropout_net):
    s = setup
    module = fn.to_flax(s["net"])
    variables = {"params": {"funcnet": s["params"]}, "batch_stats": {"funcnet_state": s["state"]}}
    with pytest.raises(ValueError, match=r"mutable=\['batch_stats'\]\) and keep the updated"):
        module.apply(variables, s["x"], train=True)
    with pytest.raises(ValueError, match=r"but the variables given to apply have no 'batch_stats'"):
        module.apply({"params": variables["params"]}, s["x"])
    with pytest.raises(ValueError, match=r"to_flax: the variables given to apply have no params"):
        module.apply({"params": {}}, s["x"])
    with pytest.raises(ValueError, match=r"to_flax: state_collection must be the name of a Flax"):
        fn.to_flax(s["net"], state_collection="params")
    net, params, _ = dropout_net
    with pytest.raises(fn.LayerValueError, match=r"rngs=\{'dropout': key\}"):
        fn.to_flax(net).apply({"params": {"funcnet": params}}, jnp.ones((2, 3)), train=True)


# --------------------------------------------------------------------------
# Equinox


@pytest.fixture(scope="module")
def eqx():
    return pytest.importorskip(
        "equinox", reason="Equinox is not installed: pip install -e '.[interop]'"
    )


def equinox_model(eqx, setup):
    """The converted model, with funcnet's params (to_equinox inits its own from a key)."""
    model, state = fn.to_equinox(setup["net"], (None, 3), key=0)
    return eqx.tree_at(lambda m: m.params, model, setup["params"]), state


def test_to_equinox_same_forward_gradients_and_state_update(setup, eqx):
    s = setup
    model, state = fn.to_equinox(s["net"], (None, 3), key=jax.random.key(0))
    assert_trees_close(model.params, s["params"])  # the same key: the same init
    y, state = eqx.nn.inference_mode(model)(s["x"], state)
    np.testing.assert_allclose(y, s["eval"], **TOL)
    # Equinox refuses a state used twice; each call below gets its own copy.
    leaves, treedef = jax.tree.flatten(state)

    def loss(model, x):
        out, new_state = model(x, jax.tree.unflatten(treedef, leaves))
        return jnp.mean((out - s["y"]) ** 2), new_state

    @eqx.filter_jit
    def both(model, x):
        (_, new_state), grads = eqx.filter_value_and_grad(loss, has_aux=True)(model, x)
        return new_state.get(model.state_index), grads, jax.grad(lambda x: loss(model, x)[0])(x)

    new_state, grads, input_grads = both(model, jnp.asarray(s["x"]))
    assert_trees_close(grads.params, s["param_grads"])
    assert_trees_close(new_state, s["train_state_update"])
    np.testing.assert_allclose(input_grads, s["input_grads"], **TOL)


def test_to_equinox_trains_in_a_filter_grad_loop_like_funcnets_step(setup, eqx):
    s = setup
    model, state = equinox_model(eqx, s)
    optimizer = s["optimizer"]
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))

    @eqx.filter_jit
    def step(model, state, opt_state, x, y, key):
        def loss(model, state):
            out, state = model(x, state, key=key)
            return jnp.mean((out - y) ** 2), state

        (value, state), grads = eqx.filter_value_and_grad(loss, has_aux=True)(model, state)
        updates, opt_state = optimizer.update(grads, opt_state, model)
        return eqx.apply_updates(model, updates), state, opt_state, value

    for i in range(STEPS):
        model, state, opt_state, value = step(model, state, opt_state, s["x"], s["y"], i)
        np.testing.assert_allclose(value, s["losses"][i], rtol=1e-5)
    assert_trees_close(model.params, s["trained"].params)
    assert_trees_close(state.get(model.state_index), s["trained"].state)


def test_to_equinox_errors(setup, eqx, dropout_net):
    model, _ = fn.to_equinox(setup["net"], (None, 3), key=0)
    with pytest.raises(TypeError, match=r"to_equinox: the model is called as y, state = model"):
        model(setup["x"])
    net, _, _ = dropout_net
    model, state = fn.to_equinox(net, (None, 3), key=0)
    with pytest.raises(fn.LayerValueError, match=r"model\(x, state, key=jax.random.key\(0\)\)"):
        model(jnp.ones((2, 3)), state)
    with pytest.raises(TypeError, match=r"to_equinox: net must be a funcnet Layer"):
        fn.to_equinox("Dense", (None, 3), key=0)


# --------------------------------------------------------------------------
# Haiku


@pytest.fixture(scope="module")
def hk():
    return pytest.importorskip(
        "haiku", reason="dm-haiku is not installed: pip install -e '.[interop]'"
    )


def haiku_tree(tree, module="funcnet"):
    """funcnet's tree as Haiku names its leaves: ``{module: {"0.w": ..., ...}}``."""
    paths = jax.tree_util.tree_leaves_with_path(tree)
    name = lambda path: jax.tree_util.keystr(path, simple=True, separator=".")  # noqa: E731
    return {module: {name(path): leaf for path, leaf in paths}} if paths else {}


def test_to_haiku_same_forward_gradients_and_state_update(setup, hk):
    s = setup
    Model = fn.to_haiku(s["net"])
    f = hk.transform_with_state(lambda x, is_training=False: Model()(x, is_training))
    params, state = f.init(jax.random.key(0), s["x"])
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, haiku_tree(s["params"]))
    params, state = haiku_tree(s["params"]), haiku_tree(s["state"])
    np.testing.assert_allclose(f.apply(params, state, None, s["x"])[0], s["eval"], **TOL)

    def loss(params, x):
        out, new_state = f.apply(params, state, None, x, is_training=True)
        return jnp.mean((out - s["y"]) ** 2), new_state

    new_state, grads, input_grads = grads_and_state(loss, params, s["x"])
    assert_trees_close(grads, haiku_tree(s["param_grads"]))
    assert_trees_close(new_state, haiku_tree(s["train_state_update"]))
    np.testing.assert_allclose(input_grads, s["input_grads"], **TOL)


def test_to_haiku_trains_in_a_transform_loop_like_funcnets_step(setup, hk):
    s = setup
    Model = fn.to_haiku(s["net"])
    f = hk.transform_with_state(lambda x, is_training=False: Model()(x, is_training))
    params, state = haiku_tree(s["params"]), haiku_tree(s["state"])
    optimizer = s["optimizer"]
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params, state, opt_state, x, y, key):
        def loss(params):
            out, state_ = f.apply(params, state, key, x, is_training=True)
            return jnp.mean((out - y) ** 2), state_

        (value, new_state), grads = jax.value_and_grad(loss, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_state, opt_state, value

    for i in range(STEPS):
        params, state, opt_state, value = step(
            params, state, opt_state, s["x"], s["y"], jax.random.key(i)
        )
        np.testing.assert_allclose(value, s["losses"][i], rtol=1e-5)
    assert_trees_close(params, haiku_tree(s["trained"].params))
    assert_trees_close(state, haiku_tree(s["trained"].state))


def test_to_haiku_dropout_uses_the_rng_of_apply(hk, dropout_net):
    net, params, _ = dropout_net
    f = hk.transform(lambda x, is_training=False: fn.to_haiku(net)()(x, is_training))
    x = jnp.ones((4, 3))
    hparams = haiku_tree(params)
    np.testing.assert_allclose(f.apply(hparams, None, x), net.apply(params, ({}, {}), x)[0])
    a = f.apply(hparams, jax.random.key(0), x, is_training=True)
    assert (np.asarray(a) == 0).any()
    assert not np.array_equal(a, f.apply(hparams, jax.random.key(1), x, is_training=True))
    with pytest.raises(fn.LayerValueError, match=r"pass one to the transformed function's apply"):
        f.apply(hparams, None, x, is_training=True)
    with pytest.raises(TypeError, match=r"to_haiku: net must be a funcnet Layer"):
        fn.to_haiku(None)
