"""The training engine: chunks, loops, streams, validation, callbacks, non-finite losses."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import funcnet as fn
from funcnet._src.training.engine import ArrayEngine, Training, convolves, resolve_loop
from funcnet.callbacks import NonFinite

RNG = np.random.default_rng(0)
X = RNG.normal(size=(50, 3)).astype(np.float32)
Y = (X @ np.array([[1.0], [-2.0], [0.5]], np.float32) + 0.3).astype(np.float32)
NET = fn.serial(fn.Dense(8, "tanh"), fn.Dense(1))
OPT = optax.sgd(0.05)


def train(**kwargs):
    args = {"loss": "mse", "optimizer": OPT, "epochs": 3, "batch_size": 8, "key": 1, "verbose": 0}
    args.update(kwargs)
    x, y = args.pop("x", X), args.pop("y", Y)
    return fn.fit(args.pop("net", NET), x, y, **args)


def assert_same_params(a, b, **tol):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, **tol), a.params, b.params)


def test_chunks_and_python_loop_equal_one_scan_per_epoch():
    whole = train()
    assert_same_params(whole, train(steps_per_execution=2), rtol=1e-6, atol=1e-7)
    assert_same_params(whole, train(loop="python"), rtol=1e-5, atol=1e-6)
    assert whole.history == train().history


def test_the_partial_batch_compiles_once_across_epochs_and_calls():
    traces = []

    def counting_mse(p, t):
        traces.append(p.shape)
        return fn.mse(p, t)

    train(loss=counting_mse, epochs=4)
    train(loss=counting_mse, epochs=2)
    assert sorted(traces) == [(2, 1), (8, 1)]  # 50 = 6 x 8 + 2


def native_conv(x, w):
    return jax.lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def im2col_like(x, w):
    return x * jnp.sum(w, axis=(0, 1, 2))[None, None, None, :]  # no convolution primitive


def conv_net(forward):
    """A one-convolution model built without funcnet's Conv (so without its CPU kernels)."""

    def init(key, input_shape):
        shape = getattr(input_shape, "shape", input_shape)
        return (*shape[:-1], 2), {"w": jax.random.normal(key, (3, 3, 1, 2))}, {}

    def apply(params, state, x, *, key=None, train=False):
        return forward(x, params["w"]), state

    return fn.serial(fn.Layer(init, apply, "conv"), fn.Flatten(), fn.Dense(1))


def test_convolves_finds_native_convolutions_in_the_jaxpr_the_cpu_runs():
    x, w = jnp.zeros((1, 5, 5, 1)), jnp.zeros((3, 3, 1, 2))
    assert convolves(jax.make_jaxpr(native_conv)(x, w))
    assert not convolves(jax.make_jaxpr(im2col_like)(x, w))
    # Inside a scan, a nested jit and a gradient.
    nested = jax.jit(jax.grad(lambda w: jnp.sum(native_conv(x, w))))
    scanned = lambda w: jax.lax.scan(lambda c, _: (nested(c), None), w, length=2)[0]  # noqa: E731
    assert convolves(jax.make_jaxpr(scanned)(w))

    # Of a platform_dependent choice, only the branch the CPU takes counts.
    def on_cpu_im2col(x, w):
        return jax.lax.platform_dependent(x, w, cpu=im2col_like, default=native_conv)

    def on_cpu_native(x, w):
        return jax.lax.platform_dependent(x, w, cpu=native_conv, default=im2col_like)

    assert not convolves(jax.make_jaxpr(on_cpu_im2col)(x, w), "cpu")
    assert convolves(jax.make_jaxpr(on_cpu_im2col)(x, w), "cuda")
    assert convolves(jax.make_jaxpr(on_cpu_native)(x, w), "cpu")


def test_auto_loop_uses_python_steps_only_for_native_convolutions_on_cpu():
    on_cpu = jax.default_backend() == "cpu"
    x, y = jnp.zeros((8, 5, 5, 1)), jnp.zeros((8, 1))
    native = ArrayEngine(
        engine_spec(conv_net(native_conv)), x, y, like=start(conv_net(native_conv), x), **PLAN
    )
    assert native.loop == ("python" if on_cpu else "scan") and native.chunk == 1
    rewritten = ArrayEngine(
        engine_spec(conv_net(im2col_like)), x, y, like=start(conv_net(im2col_like), x), **PLAN
    )
    assert rewritten.loop == "scan" and rewritten.chunk == 2
    # funcnet's own Conv chooses im2col on the CPU by default: the scan.
    conv = fn.serial(fn.Conv(2, (3, 3)), fn.Flatten(), fn.Dense(1))
    assert ArrayEngine(engine_spec(conv), x, y, like=start(conv, x), **PLAN).loop == "scan"
    dense = ArrayEngine(engine_spec(NET), X[:8], Y[:8], like=start(NET, X), **PLAN)
    assert dense.loop == "scan"
    assert resolve_loop("python", lambda: 1 / 0) == "python"  # an explicit loop traces nothing
    # fit trains the same either way.
    conv_x = RNG.normal(size=(8, 5, 5, 1)).astype(np.float32)
    args = {"net": conv_net(native_conv), "x": conv_x, "y": Y[:8], "batch_size": 4}
    assert_same_params(train(**args), train(**args, loop="scan"), rtol=1e-5, atol=1e-6)


PLAN = {"batch_size": 4, "shuffle": False, "steps_per_execution": None, "loop": "auto"}


def engine_spec(net):
    return Training(net, fn.mse, OPT)


def start(net, x):
    return fn.init_train_state(net, OPT, jax.ShapeDtypeStruct((None, *x.shape[1:]), x.dtype), key=0)


def test_a_stream_of_batches_trains_like_the_arrays():
    batches = [(X[i : i + 10], Y[i : i + 10]) for i in range(0, 50, 10)]
    from_arrays = train(batch_size=10, shuffle=False)
    from_list = train(x=batches, y=None)
    assert_same_params(from_arrays, from_list, rtol=1e-5, atol=1e-6)

    def endless():
        while True:
            yield from batches

    from_generator = train(x=endless(), y=None, steps_per_epoch=5)
    assert_same_params(from_arrays, from_generator, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(from_list.history["loss"], from_arrays.history["loss"], rtol=1e-5)


def test_a_stream_may_end_with_a_smaller_batch():
    batches = [(X[:16], Y[:16]), (X[16:32], Y[16:32]), (X[32:40], Y[32:40])]
    result = train(x=batches, y=None, epochs=2)
    assert int(result.train_state.step) == 6


def test_a_stream_whose_batches_change_shape_mid_epoch_is_rejected():
    batches = [(X[:16], Y[:16]), (X[16:24], Y[16:24]), (X[24:40], Y[24:40])]
    with pytest.raises(
        ValueError,
        match=r"^fit: batch 2 of epoch 1 has shapes \(8, 3\) float32, \(8, 1\) float32 but earlier "
        r"batches had \(16, 3\) float32, \(16, 1\) float32\. Every batch must have the same shapes, "
        r"except a smaller last batch",
    ):
        train(x=batches, y=None)


def test_stream_errors():
    with pytest.raises(
        ValueError, match=r"^fit: a one-shot iterator of batches can be read only once"
    ):
        train(x=iter([(X, Y)]), y=None, epochs=2)
    with pytest.raises(ValueError, match=r"^fit: the iterable of batches is empty"):
        train(x=[], y=None)
    with pytest.raises(
        ValueError,
        match=r"^fit: batch 1 of epoch 1 is an array of shape \(50, 3\); a stream must yield \(x, y\) pairs",
    ):
        train(x=[X], y=None)
    with pytest.raises(ValueError, match=r"^fit: y is missing"):
        train(y=None)
    with pytest.raises(ValueError, match=r"^fit: validation_split needs in-memory arrays"):
        train(x=[(X, Y)], y=None, validation_split=0.2)


def test_validation_data_is_evaluated_each_epoch():
    xv, yv = X[:10], Y[:10]
    result = train(validation_data=(xv, yv), metrics=[fn.mae])
    assert set(result.history) == {"loss", "mae", "val_loss", "val_mae"}
    final = fn.evaluate(NET, result.params, result.state, xv, yv, loss="mse", metrics=[fn.mae])
    assert result.history["val_loss"][-1] == pytest.approx(final["loss"], rel=1e-5)
    assert result.history["val_mae"][-1] == pytest.approx(final["mae"], rel=1e-5)


def test_validation_split_holds_out_the_last_examples():
    split = train(validation_split=0.2, shuffle=False, epochs=1)
    manual = train(x=X[:40], y=Y[:40], validation_data=(X[40:], Y[40:]), shuffle=False, epochs=1)
    assert split.history == manual.history
    with pytest.raises(ValueError, match=r"^fit: validation_split must be in \(0, 1\)"):
        train(validation_split=1.5)
    with pytest.raises(
        ValueError, match=r"^fit: give validation_data or validation_split, not both"
    ):
        train(validation_split=0.2, validation_data=(X, Y))


def test_user_callbacks_get_epoch_and_logs():
    seen = []

    class Recorder:
        def on_epoch_end(self, epoch, logs):
            seen.append(("object", epoch, round(logs["loss"], 6)))

    result = train(callbacks=[Recorder(), lambda epoch, logs: seen.append(("function", epoch))])
    losses = [round(v, 6) for v in result.history["loss"]]
    assert [s for s in seen if s[0] == "object"] == [("object", i, losses[i]) for i in range(3)]
    assert [s for s in seen if s[0] == "function"] == [("function", i) for i in range(3)]
    with pytest.raises(TypeError, match=r"^a callback must be a funcnet.Callback"):
        train(callbacks=[3])


def test_early_stopping_stops_and_restores_the_best_params():
    kept = {}

    class Keep(fn.Callback):
        def on_epoch_end(self, epoch, logs):
            kept[epoch] = jax.device_get(self.run.train_state.params)

    # A validation set the model cannot fit: its loss rises as training fits y.
    val = (X[:10], -Y[:10])
    stop = fn.EarlyStopping("val_loss", patience=1, restore_best=True)
    result = train(epochs=30, validation_data=val, callbacks=[Keep(), stop])
    history = result.history["val_loss"]
    assert len(history) < 30 and result.stop_reason.startswith(
        "EarlyStopping: val_loss did not improve"
    )
    best = int(np.argmin(history))
    jax.tree.map(np.testing.assert_array_equal, result.params, kept[best])
    with pytest.raises(ValueError, match=r"^EarlyStopping: monitor 'val_loss' is not in the logs"):
        train(callbacks=[fn.EarlyStopping()])


def test_reduce_lr_on_plateau_lowers_the_injected_rate():
    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=0.05)
    plateau = fn.ReduceLROnPlateau("loss", factor=0.5, patience=0, min_delta=10.0)
    result = train(optimizer=opt, epochs=3, callbacks=[plateau])
    # min_delta=10 means no epoch counts as an improvement after the first.
    assert float(result.opt_state.hyperparams["learning_rate"]) == pytest.approx(0.05 * 0.5**2)
    # Each epoch's rate is logged, as it was during that epoch.
    assert result.history["learning_rate"] == pytest.approx([0.05, 0.05, 0.025])
    with pytest.raises(
        ValueError, match=r"^ReduceLROnPlateau needs an optimizer whose learning rate is injected"
    ):
        train(callbacks=[fn.ReduceLROnPlateau("loss")])


def test_a_nan_loss_stops_training_and_keeps_the_last_finite_params():
    y = Y[:10].copy()
    y[5] = np.nan  # the third batch of two
    result = train(x=X[:10], y=y, batch_size=2, shuffle=False, epochs=4)
    assert result.stop_reason == (
        "TerminateOnNaN: non-finite loss at epoch 1, step 3 of that epoch; "
        "kept the params from before that step"
    )
    assert result.nonfinite == NonFinite(epoch=0, step=2, what="loss")
    before = train(x=X[:4], y=Y[:4], batch_size=2, shuffle=False, epochs=1)
    assert_same_params(result, before, rtol=0, atol=0)
    assert int(result.train_state.step) == 2


def nan_gradient_loss(p, t):
    """Finite (zero) for targets above 100, but with NaN gradients there: sqrt at 0."""
    flagged = t > 100
    root = jnp.sqrt(jnp.where(flagged, p - p, 1.0))  # the inner where keeps other rows finite
    return jnp.mean(jnp.where(flagged, root, (p - t) ** 2))


@pytest.mark.parametrize("loop", ["scan", "python"])
def test_a_nan_gradient_under_a_finite_loss_stops_training_too(loop):
    y = Y[:10].copy()
    y[5] = 1000.0  # the third batch of two
    result = train(x=X[:10], y=y, loss=nan_gradient_loss, batch_size=2, shuffle=False, loop=loop)
    assert result.stop_reason == (
        "TerminateOnNaN: non-finite gradient at epoch 1, step 3 of that epoch; "
        "kept the params from before that step"
    )
    assert result.nonfinite == NonFinite(epoch=0, step=2, what="gradient")
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(result.params))
    before = train(x=X[:4], y=Y[:4], loss=nan_gradient_loss, batch_size=2, shuffle=False, epochs=1)
    assert_same_params(result, before, rtol=0, atol=0)


def test_huge_but_finite_gradients_are_not_taken_for_non_finite_ones():
    # Gradients of 1e20 are finite, though their squared norm (1e40) is not a float32.
    result = train(loss=lambda p, t: 1e20 * jnp.mean(p), optimizer=optax.sgd(1e-24), epochs=2)
    assert result.stop_reason is None and int(result.train_state.step) == 2 * 7


def test_a_skipped_step_leaves_the_batchnorm_statistics_alone():
    net = fn.serial(fn.Dense(4), fn.BatchNorm(), fn.Dense(1))
    x = X[:4]
    y = np.full((4, 1), 1000.0, np.float32)  # every step has NaN gradients
    result = train(net=net, x=x, y=y, loss=nan_gradient_loss, batch_size=4, on_nonfinite="skip")
    initial = fn.init_train_state(net, OPT, (None, 3), key=1)
    jax.tree.map(np.testing.assert_array_equal, result.state, initial.state)
    assert int(result.train_state.step) == 0


def test_skip_mode_skips_non_finite_updates_and_goes_on():
    y = Y[:10].copy()
    y[5] = np.nan
    result = train(x=X[:10], y=y, batch_size=2, shuffle=False, epochs=4, on_nonfinite="skip")
    assert result.stop_reason is None and len(result.history["loss"]) == 4
    assert int(result.train_state.step) == 4 * 4
    assert all(np.isfinite(v) for v in result.history["loss"])
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(result.params))


def test_progress_bar_shows_epochs_and_loss(capsys):
    train(verbose=1, metrics=["mae"])
    err = capsys.readouterr().err
    assert "epoch 3/3" in err and "loss:" in err and "mae:" in err


def test_dropout_and_batchnorm_runs_are_bitwise_reproducible():
    net = fn.serial(fn.Dense(16), fn.BatchNorm(), fn.Relu(), fn.Dropout(0.3), fn.Dense(1))
    a, b = train(net=net, epochs=2), train(net=net, epochs=2)
    jax.tree.map(np.testing.assert_array_equal, (a.params, a.state), (b.params, b.state))
    c = train(net=net, epochs=2, key=2)
    assert not np.array_equal(a.params[0]["w"], c.params[0]["w"])


def test_labels_outside_the_model_classes_are_rejected_before_compiling():
    net = fn.Dense(3)
    labels = np.arange(50) % 5
    with pytest.raises(
        ValueError,
        match=r"^fit: labels must be class indices in \[0, 3\) .* found labels from 0 to 4",
    ):
        train(net=net, y=labels, loss=fn.sparse_categorical_crossentropy)


def test_option_errors():
    with pytest.raises(ValueError, match=r"^fit: loop must be one of auto, scan, python"):
        train(loop="fast")
    with pytest.raises(ValueError, match=r"^fit: on_nonfinite must be one of stop, skip, ignore"):
        train(on_nonfinite="pause")
    with pytest.raises(ValueError, match=r"^fit: steps_per_execution must be a positive integer"):
        train(steps_per_execution=0)
    with pytest.raises(ValueError, match=r"^fit: verbose must be 0, 1, 2 or 'auto'"):
        train(verbose=3)


def test_the_train_step_donates_the_old_state():
    ts = fn.init_train_state(NET, OPT, (None, 3), key=0)
    step = fn.make_train_step(NET, fn.mse, OPT)
    new, _ = step(ts, (X, Y))
    assert ts.params[0]["w"].is_deleted() and not new.params[0]["w"].is_deleted()


def test_bad_keys_and_modes_are_named():
    with pytest.raises(
        TypeError,
        match=r"^init_train_state: key must be a jax.random.key\(...\) or an integer seed, got str",
    ):
        fn.init_train_state(NET, OPT, (None, 3), key="seed")
    with pytest.raises(
        ValueError, match=r"^EarlyStopping: mode must be 'min', 'max' or 'auto', got 'best'"
    ):
        fn.EarlyStopping(mode="best")
    with pytest.raises(ValueError, match=r"^ReduceLROnPlateau: factor must be in \(0, 1\)"):
        fn.ReduceLROnPlateau(factor=2.0)


def test_ignore_mode_applies_every_update():
    y = Y[:10].copy()
    y[5] = np.nan
    result = train(x=X[:10], y=y, batch_size=2, shuffle=False, epochs=2, on_nonfinite="ignore")
    assert result.stop_reason is None and int(result.train_state.step) == 10
    assert not np.all(np.isfinite(result.params[0]["w"]))
    clean = train(on_nonfinite="ignore")
    assert_same_params(clean, train(), rtol=0, atol=0)


# --------------------------------------------------------------------------
# One owner of the run: read-only logs, callbacks' own logs, typed non-finite steps


def test_callbacks_get_read_only_logs():
    class Mutator(fn.Callback):
        def on_epoch_end(self, epoch, logs):
            logs["loss"] = 0.0

    with pytest.raises(TypeError, match="does not support item assignment"):
        train(callbacks=[Mutator()], epochs=1)


def test_logs_a_callback_adds_reach_every_callback_the_history_and_the_checkpoint(tmp_path):
    seen = []

    class Doubler(fn.Callback):
        def epoch_logs(self, epoch, logs):
            return {"double_loss": 2 * logs["loss"]}

    class Recorder(fn.Callback):
        def on_epoch_end(self, epoch, logs):
            # The history holds this epoch already, as the checkpoint saved after it does.
            seen.append((dict(logs), {k: list(v) for k, v in self.run.history.items()}))

    # The recorder comes first: the order of callbacks does not matter any more.
    result = train(callbacks=[Recorder(), Doubler()], epochs=2, checkpoint=tmp_path)
    assert result.history["double_loss"] == [2 * v for v in result.history["loss"]]
    assert seen[-1] == ({k: v[-1] for k, v in result.history.items()}, result.history)
    info = fn.checkpoint_info(fn.CheckpointManager(tmp_path).latest())
    assert info.history == result.history and "double_loss" in info.metadata["metrics"]


def test_a_callback_may_not_log_a_name_already_logged():
    class Clash(fn.Callback):
        def epoch_logs(self, epoch, logs):
            return {"loss": 0.0}

    with pytest.raises(
        ValueError,
        match=r"^fit: the callback Clash logs 'loss', which is already in the logs \(loss\); "
        r"return it under another name from epoch_logs\.$",
    ):
        train(callbacks=[Clash()], epochs=1)


def test_the_run_owns_the_train_state_callbacks_see_and_replace():
    states = []

    class Freeze(fn.Callback):
        def on_train_begin(self):
            self.start = jax.device_get(self.run.train_state.params)

        def on_epoch_end(self, epoch, logs):
            states.append(int(self.run.train_state.step))
            # Put back the first params: the next epoch starts from them.
            params = jax.tree.map(jnp.asarray, self.start)
            self.run.train_state = self.run.train_state._replace(params=params)

    result = train(callbacks=[Freeze()], epochs=2, shuffle=False)
    assert states == [7, 14]
    one = train(epochs=1, shuffle=False)
    assert result.history["loss"][1] == pytest.approx(one.history["loss"][0], rel=1e-6)


def test_skip_mode_reports_the_first_non_finite_step():
    y = Y[:10].copy()
    y[7] = np.nan  # the fourth batch of two
    result = train(x=X[:10], y=y, batch_size=2, shuffle=False, epochs=2, on_nonfinite="skip")
    assert result.stop_reason is None and result.nonfinite == NonFinite(0, 3, "loss")
    assert train(epochs=1).nonfinite is None


# --------------------------------------------------------------------------
# Models are not kept alive by funcnet's caches


def test_a_model_is_garbage_collected_after_fit_predict_and_evaluate():
    import gc
    import weakref

    def use_a_model():
        net = fn.serial(fn.Dense(4, "tanh"), fn.Dense(1))
        result = train(net=net, epochs=1, validation_data=(X[:5], Y[:5]))
        fn.predict(net, result.params, result.state, X)
        fn.evaluate(net, result.params, result.state, X, Y, loss="mse")
        fn.fit_many(net, X, Y, loss="mse", optimizer=OPT, seeds=2, epochs=1)
        return weakref.ref(net.apply), weakref.ref(net.init)

    apply, init = use_a_model()
    gc.collect()
    assert apply() is None and init() is None


def test_a_cached_program_serves_the_same_model_again():
    traces = []

    def counting_mse(p, t):
        traces.append(1)
        return fn.mse(p, t)

    train(loss=counting_mse, epochs=1, batch_size=25)
    train(loss=counting_mse, epochs=1, batch_size=25)
    assert len(traces) == 1
