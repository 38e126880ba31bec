"""Keras layer options funcnet gained: checked against Keras itself.

``Dropout(noise_shape=)`` and the spatial dropouts, ``GroupNorm(axis=)`` and
``RMSNorm(axis=)``, and sequence masks carried past Dense, Dropout and the
other layers Keras lets a mask pass through (``fn.pass_mask``), directly and
through ``fn.from_keras``.
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

keras = pytest.importorskip("keras", minversion="3.0", reason="the options are Keras's")
if keras.backend.backend() != "jax":
    pytest.skip(
        "Keras was imported on another backend; set KERAS_BACKEND=jax", allow_module_level=True
    )

L = keras.layers
TOL = {"rtol": 1e-5, "atol": 1e-5}
RNG = np.random.default_rng(0)


def fine_tune(net, params, state, x, y, epochs, batch_size=8):
    """A few fn.fit epochs from the converted weights; returns the FitResult."""
    opt = optax.adam(1e-2)
    # fit donates its train state's buffers: give it copies.
    params, state = jax.tree.map(jnp.array, (params, state))
    start = fn.TrainState(
        params, state, opt.init(params), jnp.zeros((), jnp.int32), jax.random.key(0)
    )
    return fn.fit(net, x, y, loss="mse", optimizer=opt, epochs=epochs, batch_size=batch_size,
                  train_state=start, verbose=0)  # fmt: skip


def keras_weights_randomised(layer_or_model) -> None:
    """Trained-looking weights, so a scale applied to the wrong axis would show."""
    for w in layer_or_model.weights:
        w.assign(RNG.normal(1.0, 0.5, size=w.shape).astype(np.float32))


# --------------------------------------------------------------------------
# GroupNorm(axis=) and RMSNorm(axis=) against Keras's layers


NORMS = {
    # id: (Keras layer, funcnet layer, input shape, funcnet params from Keras weights)
    "group-axis1": (
        lambda: L.GroupNormalization(2, axis=1, epsilon=1e-3),
        lambda: fn.GroupNorm(2, axis=1, epsilon=1e-3),
        (3, 4, 5),
        lambda w: {"scale": w["gamma"], "bias": w["beta"]},
    ),
    "group-axis-2-rank4": (
        lambda: L.GroupNormalization(3, axis=-2),
        lambda: fn.GroupNorm(3, axis=-2),
        (2, 3, 6, 2),
        lambda w: {"scale": w["gamma"], "bias": w["beta"]},
    ),
    "rms-axes12": (
        lambda: L.RMSNormalization(axis=[1, 2], epsilon=1e-6),
        lambda: fn.RMSNorm(axis=(1, 2), epsilon=1e-6),
        (3, 4, 5),
        lambda w: {"scale": w["scale"]},
    ),
}


@pytest.fixture(
    scope="module",
    params=[pytest.param(k, marks=pytest.mark.slow) if "rank4" in k else k for k in sorted(NORMS)],
)
def norm_pair(request):
    make_keras, make_funcnet, shape, to_params = NORMS[request.param]
    x = RNG.normal(size=shape).astype(np.float32) * 3 + 1
    with jax.numpy_rank_promotion("allow"):
        twin = make_keras()
        twin.build(shape)
        keras_weights_randomised(twin)
    weights = {w.name: jnp.asarray(w.numpy()) for w in twin.weights}
    net = make_funcnet()
    _, init_params, state = net.init(jax.random.key(0), (None, *shape[1:]))
    params = to_params(weights)
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, init_params)
    return twin, net, params, state, x


def test_norm_over_a_non_last_axis_equals_keras_forward_and_gradient(norm_pair):
    twin, net, params, state, x = norm_pair
    probe = jnp.asarray(RNG.normal(size=x.shape).astype(np.float32))
    names = [w.name for w in twin.trainable_variables]

    def keras_loss(weights, x):
        with jax.numpy_rank_promotion("allow"):
            y, _ = twin.stateless_call([weights[n] for n in names], [], x)
        return jnp.sum(y * probe), y

    def funcnet_loss(params, x):
        y, _ = net.apply(params, state, x)
        return jnp.sum(y * probe), y

    keras_weights = {"gamma": params.get("scale"), "beta": params.get("bias")}
    if "scale" in names:
        keras_weights = {"scale": params["scale"]}
    (_, want), (want_dw, want_dx) = jax.jit(jax.value_and_grad(keras_loss, (0, 1), has_aux=True))(
        keras_weights, x
    )
    (_, got), (got_dp, got_dx) = jax.jit(jax.value_and_grad(funcnet_loss, (0, 1), has_aux=True))(
        params, x
    )
    np.testing.assert_allclose(got, want, **TOL)
    np.testing.assert_allclose(got_dx, want_dx, **TOL)
    renamed = {"gamma": "scale", "beta": "bias", "scale": "scale"}
    for name, grad in want_dw.items():
        np.testing.assert_allclose(got_dp[renamed[name]], grad, **TOL)


def test_default_axes_are_unchanged_bit_for_bit():
    x = jnp.asarray(RNG.normal(size=(2, 3, 4)).astype(np.float32))
    for default, explicit in (
        (fn.GroupNorm(2), fn.GroupNorm(2, axis=-1)),
        (fn.GroupNorm(2), fn.GroupNorm(2, axis=2)),
        (fn.RMSNorm(), fn.RMSNorm(axis=-1)),
    ):
        _, params, state = default.init(jax.random.key(0), (None, 3, 4))
        params = jax.tree.map(lambda p: p + jnp.arange(p.shape[-1], dtype=p.dtype), params)
        want, _ = default.apply(params, state, x)
        got, _ = explicit.apply(params, state, x)
        assert bool((got == want).all())


def test_rms_norm_over_a_middle_axis_equals_keras_ops():
    # Keras's layer cannot scale a middle axis (its scale broadcasts from the
    # right), so the unscaled normalization is compared with Keras's op.
    x = RNG.normal(size=(2, 3, 4)).astype(np.float32)
    net = fn.RMSNorm(axis=1, use_scale=False)
    _, params, state = net.init(jax.random.key(0), (None, 3, 4))
    with jax.numpy_rank_promotion("allow"):
        want = keras.ops.rms_normalization(x, scale=None, axis=1, epsilon=1e-6)
    np.testing.assert_allclose(net.apply(params, state, x)[0], want, **TOL)


def test_norm_axis_errors_name_the_axis():
    with pytest.raises(TypeError, match=r"^GroupNorm: axis must be an integer \(the channel"):
        fn.GroupNorm(2, axis=(1, 2))
    with pytest.raises(ValueError, match=r"GroupNorm: axis=0 must name distinct non-batch axes"):
        fn.GroupNorm(2, axis=0).init(jax.random.key(0), (None, 4))
    with pytest.raises(
        ValueError, match=r"num_groups=3 must divide the number of channels \(axis 1"
    ):
        fn.GroupNorm(3, axis=1).init(jax.random.key(0), (None, 4, 3))


# --------------------------------------------------------------------------
# Dropout(noise_shape=) and the spatial dropouts


RATE = 0.5
DROPOUTS = {
    # id: (funcnet layer, Keras layer, input shape, axes one decision is shared along)
    "noise-shape": (
        lambda: fn.Dropout(RATE, noise_shape=(None, 1, None)),
        lambda: L.Dropout(RATE, noise_shape=(None, 1, None)),
        (16, 5, 8),
        (1,),
    ),
    "spatial1d": (
        lambda: fn.SpatialDropout1D(RATE),
        lambda: L.SpatialDropout1D(RATE),
        (16, 5, 8),
        (1,),
    ),
    "spatial2d": (
        lambda: fn.SpatialDropout2D(RATE),
        lambda: L.SpatialDropout2D(RATE),
        (16, 3, 4, 8),
        (1, 2),
    ),
    "spatial3d": (
        lambda: fn.SpatialDropout3D(RATE),
        lambda: L.SpatialDropout3D(RATE),
        (16, 2, 3, 2, 8),
        (1, 2, 3),
    ),
}


def assert_whole_slices_dropped(y, shared_axes):
    """Every slice along ``shared_axes`` is all zero or all ``1 / (1 - rate)`` (x is ones);
    both occur."""
    y = np.asarray(y)
    zero = (y == 0).all(axis=shared_axes)
    kept = (y == 1 / (1 - RATE)).all(axis=shared_axes)
    assert (zero | kept).all(), "a slice was partly dropped"
    assert zero.any() and kept.any()


@pytest.mark.parametrize("which", sorted(DROPOUTS))
def test_dropout_drops_whole_broadcast_slices_as_keras(which):
    make, make_keras, shape, shared = DROPOUTS[which]
    net, x = make(), jnp.ones(shape)
    _, params, state = net.init(jax.random.key(0), (None, *shape[1:]))
    with jax.numpy_rank_promotion("allow"):
        twin = make_keras()
        keras_inference = np.asarray(twin(x, training=False))
        keras_training = np.asarray(twin(x, training=True))
    # Inference: the identity, as Keras.
    np.testing.assert_array_equal(net.apply(params, state, x)[0], keras_inference)
    np.testing.assert_array_equal(keras_inference, x)
    # Training: the structure of Keras's own output, and funcnet's.
    assert_whole_slices_dropped(keras_training, shared)
    eager, _ = net.apply(params, state, x, train=True, key=jax.random.key(3))
    assert_whole_slices_dropped(eager, shared)

    @jax.jit
    def jitted(x, key):
        return net.apply(params, state, x, train=True, key=key)[0]

    np.testing.assert_array_equal(jitted(x, jax.random.key(3)), eager)


def test_channels_first_spatial_dropout_converts_to_its_keras_meaning():
    with jax.numpy_rank_promotion("allow"):
        twin = L.SpatialDropout2D(RATE, data_format="channels_first")
        model = keras.Sequential([keras.Input((8, 3, 4)), twin])
        x = jnp.ones((16, 8, 3, 4))
        assert_whole_slices_dropped(twin(x, training=True), (2, 3))  # Keras: axis 1 channels
    net, params, state = fn.from_keras(model)
    y, _ = net.apply(params, state, x, train=True, key=0)
    assert_whole_slices_dropped(y, (2, 3))


def test_a_single_int_entry_of_noise_shape_and_default_dropout_are_kept():
    x = jnp.ones((4, 6))
    # No noise_shape: the mask Dropout always drew, bit for bit.
    got, _ = fn.Dropout(0.5).apply({}, {}, x, train=True, key=jax.random.key(1))
    keep = jax.random.bernoulli(jax.random.key(1), 0.5, x.shape)
    np.testing.assert_array_equal(got, jnp.where(keep, 2.0, 0.0))
    # An int entry equal to the size counts as None; 1 shares along the batch.
    y, _ = fn.Dropout(0.5, noise_shape=(1, 6)).apply({}, {}, x, train=True, key=2)
    assert bool((y == y[:1]).all())


def test_dropout_noise_shape_errors():
    with pytest.raises(ValueError, match=r"^Dropout: noise_shape must be a tuple of positive"):
        fn.Dropout(0.5, noise_shape=(None, 0))
    with pytest.raises(ValueError, match=r"^Dropout: noise_shape must be a tuple"):
        fn.Dropout(0.5, noise_shape="batch")
    with pytest.raises(ValueError, match=r"noise_shape=\(None, 1\) has 2 entries but the input"):
        fn.Dropout(0.5, noise_shape=(None, 1)).init(jax.random.key(0), (None, 3, 4))
    with pytest.raises(
        ValueError, match=r"does not broadcast to the input shape \(2, 4\): entry 1"
    ):
        fn.Dropout(0.5, noise_shape=(None, 3)).apply({}, {}, jnp.ones((2, 4)), train=True, key=0)
    with pytest.raises(ValueError, match=r"^SpatialDropout2D: data_format='channels_first' is "
                       r"not supported.*x\.transpose\(0, 2, 3, 1\).*noise_shape=\(None, None, 1, 1\)"):  # fmt: skip
        fn.SpatialDropout2D(0.5, data_format="channels_first")
    with pytest.raises(ValueError, match=r"SpatialDropout1D: expected an input of rank 3"):
        fn.SpatialDropout1D(0.5).init(jax.random.key(0), (None, 4))


# --------------------------------------------------------------------------
# from_keras: the options convert, predict as Keras and train with fit


@pytest.fixture(scope="module")
def options_model():
    keras.utils.set_random_seed(0)
    seq = keras.Input((6, 4), name="seq")
    img = keras.Input((4, 4, 3), name="img")
    with jax.numpy_rank_promotion("allow"):
        a = L.GroupNormalization(2, axis=1)(seq)
        a = L.RMSNormalization(axis=[1, 2])(a)
        a = L.SpatialDropout1D(0.3)(a)
        a = L.Dropout(0.2, noise_shape=(None, 1, 4))(a)
        b = L.SpatialDropout2D(0.3)(img)
        b = L.SpatialDropout2D(0.3, data_format="channels_first")(b)
        b = L.Reshape((4, 4, 3, 1))(b)
        b = L.SpatialDropout3D(0.3)(b)
        merged = L.Concatenate()([L.Flatten()(a), L.Flatten()(b)])
        model = keras.Model([seq, img], L.Dense(1)(merged))
        for layer in model.layers:
            if "normalization" in layer.name:
                keras_weights_randomised(layer)
    xs = (
        RNG.normal(size=(8, 6, 4)).astype(np.float32),
        RNG.normal(size=(8, 4, 4, 3)).astype(np.float32),
    )
    return model, xs


def test_from_keras_converts_the_options_predicts_as_keras_and_trains(options_model):
    model, xs = options_model
    net, params, state = fn.from_keras(model)
    with jax.numpy_rank_promotion("allow"):
        want = model.predict(list(xs), verbose=0)
    np.testing.assert_allclose(fn.predict(net, params, state, xs), want, **TOL)
    # Training draws the dropout masks: two keys, two outputs; inference is unchanged.
    y1, y2 = jax.jit(  # one compiled program, not one per eager op
        lambda params, state: [net.apply(params, state, xs, train=True, key=k)[0] for k in (1, 2)]
    )(params, state)
    assert not np.allclose(y1, y2)
    targets = np.asarray(want) + 1.0
    result = fine_tune(net, params, state, xs, targets, epochs=4)
    before = fn.mse(fn.predict(net, params, state, xs), targets)
    after = fn.mse(fn.predict(net, result.params, result.state, xs), targets)
    assert after < before


def test_from_keras_refuses_rms_normalization_scaling_other_axes():
    with jax.numpy_rank_promotion("allow"):
        model = keras.Sequential([keras.Input((4, 4)), L.RMSNormalization(axis=1, name="n")])
    with pytest.raises(ValueError, match=r"layer 'n' \(RMSNormalization\): axis=\[1\] is not "
                       r"supported\. Keras's RMSNormalization lines its scale up with the input's last axes"):  # fmt: skip
        fn.from_keras(model)


# --------------------------------------------------------------------------
# Sequence masks past Dense and Dropout


LENGTHS = np.array([7, 4, 2, 5])


@pytest.fixture(scope="module")
def masked_model():
    keras.utils.set_random_seed(1)
    with jax.numpy_rank_promotion("allow"):
        model = keras.Sequential([
            keras.Input((7,), dtype="int32"),
            L.Embedding(20, 8, mask_zero=True),
            L.Dense(6, activation="tanh"),
            L.Dropout(0.3),
            L.LayerNormalization(),
            L.LSTM(5),
            L.Dense(1),
        ])  # fmt: skip
    ids = RNG.integers(1, 20, size=(4, 7)).astype(np.int32)
    ids = ids * (np.arange(7)[None] < LENGTHS[:, None])  # right-padded with id 0
    with jax.numpy_rank_promotion("allow"):
        want = model.predict(ids, verbose=0)
    return model, ids, want


def test_mask_travels_past_dense_and_dropout_to_the_lstm_as_in_keras(masked_model):
    model, ids, want = masked_model
    net, params, state = fn.from_keras(model)
    got = fn.predict(net, params, state, ids)
    np.testing.assert_allclose(got, want, **TOL)

    @jax.jit  # the unpadded sequences and the changed padding: one compiled program
    def alone_and_repadded(params, state):
        alone = [net.apply(params, state, ids[i : i + 1, :n])[0] for i, n in enumerate(LENGTHS)]
        return alone, net.apply(params, state, np.maximum(ids, 1))[0]

    alone, repadded = alone_and_repadded(params, state)
    for i, y in enumerate(alone):  # each sequence alone, unpadded: the same answer
        np.testing.assert_allclose(y, want[i : i + 1], **TOL)
    # The padding is really skipped: changing padded steps' ids would show otherwise.
    assert not np.allclose(got, repadded, **TOL)
    result = fine_tune(net, params, state, ids, want + 1.0, epochs=3, batch_size=4)
    before = fn.mse(got, want + 1.0)
    after = fn.mse(fn.predict(net, result.params, result.state, ids), want + 1.0)
    assert after < before


def test_pass_mask_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"^pass_mask: expected the shapes of \(x, mask\)"):
        fn.pass_mask(fn.Dense(2)).init(jax.random.key(0), (None, 3, 4))
    with pytest.raises(ValueError, match=r"^pass_mask: expected the pair \(x, mask\), got"):
        fn.pass_mask(fn.Dense(2)).apply(
            {"w": jnp.ones((4, 2)), "b": jnp.zeros(2)}, {}, jnp.ones((1, 3, 4))
        )
    with pytest.raises(ValueError, match=r"Flatten returns \(None, 12\), which does not keep"):
        fn.pass_mask(fn.Flatten()).init(jax.random.key(0), ((None, 3, 4), (None, 3)))


def test_from_keras_still_names_a_layer_that_reads_the_mask():
    with jax.numpy_rank_promotion("allow"):
        model = keras.Sequential([keras.Input((7,), dtype="int32"), L.Embedding(20, 8, mask_zero=True),
                                  L.Dense(4), L.BatchNormalization(name="norm")])  # fmt: skip
    with pytest.raises(ValueError, match=r"'norm' \(BatchNormalization\): a sequence mask .* "
                       r"past Activation, Dense, Dropout"):  # fmt: skip
        fn.from_keras(model)
