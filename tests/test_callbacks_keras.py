"""funcnet's Keras-named callbacks against Keras 3 itself (docs/keras.md, docs/training.md).

Where a callback's behaviour does not need a model (EarlyStopping's counting,
CSVLogger's file, TensorBoard's names, LearningRateScheduler's rates), the
Keras callback and funcnet's are driven with the same logs and compared;
one real ``model.fit`` in Keras and the same ``fit`` in funcnet compare the
epochs run and the hooks' calls. Keras runs on its JAX backend and the
comparisons are skipped without it; funcnet's own behaviour (resuming,
progress, argument errors) is tested either way.
"""

from __future__ import annotations

import csv
import functools
import math
import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # Keras picks its backend on first import

import jax
import numpy as np
import optax
import pytest

import funcnet as fn
from funcnet.callbacks import Run


def _keras():
    keras = pytest.importorskip(
        "keras", minversion="3.0", reason="Keras 3 is not installed: pip install -e '.[keras]'"
    )
    if keras.backend.backend() != "jax":
        pytest.skip(
            "Keras was imported earlier on another backend; these tests need KERAS_BACKEND=jax"
        )
    return keras


RNG = np.random.default_rng(0)
X = RNG.normal(size=(16, 2)).astype(np.float32)
Y = (X @ np.array([[1.0], [-2.0]], np.float32)).astype(np.float32)
NET = fn.Dense(1)
OPT = optax.sgd(0.05)
INJECTED = optax.inject_hyperparams(optax.sgd)(learning_rate=0.05)


def train(**kwargs):
    args = {"loss": "mse", "optimizer": OPT, "epochs": 3, "batch_size": 8, "key": 1, "verbose": 0}
    args.update(kwargs)
    return fn.fit(NET, X, Y, **args)


# --- EarlyStopping: the same logs, the same decisions as Keras -----------------------


class _FakeKerasModel:
    """What Keras's EarlyStopping touches: stop_training and the weights (the epoch, here)."""

    def __init__(self):
        self.stop_training = False
        self.epoch = -1
        self.restored = None

    def get_weights(self):
        return self.epoch

    def set_weights(self, weights):
        self.restored = weights


def _keras_early_stopping(keras, values, **options):
    callback = keras.callbacks.EarlyStopping(monitor="loss", **options)
    model = _FakeKerasModel()
    callback.set_model(model)
    callback.on_train_begin()
    run = 0
    for epoch, value in enumerate(values):
        model.epoch = epoch
        callback.on_epoch_end(epoch, {"loss": value})
        run = epoch + 1
        if model.stop_training:
            break
    callback.on_train_end()
    return run, model.restored


@functools.cache
def _base_state():
    return fn.init_train_state(fn.Dense(1), INJECTED, (None, 1))


def _funcnet_early_stopping(values, **options):
    callback = fn.EarlyStopping(monitor="loss", **options)
    base = _base_state()
    run = Run(train_state=base, history={}, epochs=len(values))
    callback.set_run(run)
    callback.on_train_begin()
    epochs = 0
    for epoch, value in enumerate(values):
        run.train_state = base._replace(params={"epoch": np.asarray(epoch)})
        callback.on_epoch_end(epoch, {"loss": value})
        epochs = epoch + 1
        if run.stop_training:
            break
    last = run.train_state.params["epoch"]
    callback.on_train_end()
    restored = int(run.train_state.params["epoch"])
    return epochs, (restored if options.get("restore_best_weights") else None), last


SEQUENCES = [
    [1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9],  # a plateau
    [1.0, 1.1, 1.2, 1.3, 1.4, 1.5],  # never better than the first
    [1.0, 0.8, 0.85, 0.79, 0.9, 0.95, 0.7, 0.71, 0.72, 0.73, 0.74],  # noisy
    [0.5, 0.49, 0.48, 0.47, 0.46, 0.45, 0.44, 0.43],  # slow steady gains
    [2.0, float("nan"), 1.0, 1.0, 1.0, 1.0],  # a NaN epoch is no improvement
] + [list(RNG.uniform(0, 1, size=12)) for _ in range(6)]

OPTIONS = [
    {},
    {"patience": 1},
    {"patience": 3},
    {"patience": 2, "min_delta": 0.015},
    {"patience": 2, "mode": "max"},
    {"patience": 2, "baseline": 0.6},
    {"patience": 1, "start_from_epoch": 3},
    {"patience": 2, "restore_best_weights": True},
    {"patience": 0, "restore_best_weights": True, "baseline": 0.3},
    {"patience": 3, "restore_best_weights": True, "start_from_epoch": 2, "min_delta": 0.01},
]


@pytest.mark.parametrize(
    "options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "defaults"
)
def test_early_stopping_stops_and_restores_where_keras_does(options):
    keras = _keras()
    for values in SEQUENCES:
        theirs = _keras_early_stopping(keras, values, **options)
        ours = _funcnet_early_stopping(values, **options)
        assert ours[:2] == theirs, f"{values}: funcnet {ours[:2]}, Keras {theirs}"


def test_restore_best_weights_restores_even_when_training_ran_to_the_end():
    # Keras 3 restores the best epoch at the end of training, stopped early or not.
    epochs, restored, last = _funcnet_early_stopping(
        [0.5, 0.1, 0.4, 0.3], patience=5, restore_best_weights=True
    )
    assert (epochs, restored, int(last)) == (4, 1, 3)


def test_restore_best_is_an_alias_of_restore_best_weights():
    assert fn.EarlyStopping(restore_best=True).restore_best_weights
    assert fn.EarlyStopping(restore_best_weights=True).restore_best
    with pytest.raises(ValueError, match=r"^EarlyStopping: restore_best is another name"):
        fn.EarlyStopping(restore_best_weights=True, restore_best=False)


def test_early_stopping_verbose_says_what_keras_says(capsys):
    _funcnet_early_stopping([1.0, 1.0, 1.0], patience=1, verbose=1, restore_best_weights=True)
    out = capsys.readouterr().out
    assert "Epoch 2: early stopping" in out
    assert "Restoring model weights from the end of the best epoch: 1." in out


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        (
            {"patience": -1},
            ValueError,
            r"^EarlyStopping: patience must be an integer >= 0, got -1\.",
        ),
        (
            {"patience": 2.5},
            ValueError,
            r"^EarlyStopping: patience must be an integer >= 0, got 2\.5\.",
        ),
        ({"min_delta": "0.1"}, ValueError, r"^EarlyStopping: min_delta must be a finite number"),
        ({"baseline": "low"}, ValueError, r"^EarlyStopping: baseline must be a number or None"),
        ({"start_from_epoch": -2}, ValueError, r"^EarlyStopping: start_from_epoch must be"),
        ({"verbose": 2}, ValueError, r"^EarlyStopping: verbose must be 0 \(silent\) or 1"),
        (
            {"restore_best_weights": "yes"},
            TypeError,
            r"^EarlyStopping: restore_best_weights must be True or False",
        ),
        ({"monitor": 3}, TypeError, r"^EarlyStopping: monitor must be the name of a log"),
    ],
)
def test_early_stopping_checks_its_arguments(options, error, message):
    with pytest.raises(error, match=message):
        fn.EarlyStopping(**options)


# --- one real fit in Keras and in funcnet ---------------------------------------------


@pytest.fixture(scope="module")
def keras_fit(tmp_path_factory):
    """Keras's own EarlyStopping example (patience=3, no improvement: 4 epochs), with a LambdaCallback and a CSVLogger."""
    keras = _keras()
    folder = tmp_path_factory.mktemp("keras")
    events = []
    recorder = keras.callbacks.LambdaCallback(
        on_train_begin=lambda logs: events.append(("train_begin", dict(logs))),
        on_epoch_begin=lambda epoch, logs: events.append(("epoch_begin", epoch, dict(logs))),
        on_epoch_end=lambda epoch, logs: events.append(("epoch_end", epoch, sorted(logs))),
        on_train_end=lambda logs: events.append(("train_end", sorted(logs))),
    )
    model = keras.Sequential([keras.layers.Dense(10)])
    model.compile(keras.optimizers.SGD(learning_rate=0.0), loss="mse")
    x = np.arange(100, dtype=np.float32).reshape(5, 20)
    with jax.numpy_rank_promotion("allow"):  # Keras's Dense adds its bias by broadcasting
        history = model.fit(
            x, np.zeros((5, 10), np.float32), epochs=10, batch_size=1, shuffle=False, verbose=0,
            callbacks=[keras.callbacks.EarlyStopping(monitor="loss", patience=3), recorder,
                       keras.callbacks.CSVLogger(str(folder / "log.csv"))],
        )  # fmt: skip
    return len(history.history["loss"]), events, (folder / "log.csv").read_text()


@pytest.mark.slow  # Keras compiles its model: about 8 s
def test_fit_runs_the_epochs_and_hooks_keras_runs(keras_fit, tmp_path):
    epochs, events, keras_csv = keras_fit
    ours = []
    recorder = fn.LambdaCallback(
        on_train_begin=lambda logs: ours.append(("train_begin", dict(logs))),
        on_epoch_begin=lambda epoch, logs: ours.append(("epoch_begin", epoch, dict(logs))),
        on_epoch_end=lambda epoch, logs: ours.append(("epoch_end", epoch, sorted(logs))),
        on_train_end=lambda logs: ours.append(("train_end", sorted(logs))),
    )
    x = np.arange(100, dtype=np.float32).reshape(5, 20)
    result = fn.fit(
        fn.Dense(10), x, np.zeros((5, 10), np.float32), loss="mse", optimizer=optax.sgd(0.0),
        epochs=10, batch_size=1, shuffle=False, verbose=0,  # sgd(0.0), unshuffled: equal losses
        callbacks=[fn.EarlyStopping(monitor="loss", patience=3), recorder,
                   fn.CSVLogger(tmp_path / "log.csv")],
    )  # fmt: skip
    assert len(result.history["loss"]) == epochs == 4
    assert ours == events
    ours_csv = (tmp_path / "log.csv").read_text()
    # The same columns, epochs and NA cells (the loss values differ: other initial weights).
    strip = lambda text: [row[:1] + row[2:] for row in csv.reader(text.splitlines())]  # noqa: E731
    assert strip(ours_csv) == strip(keras_csv)
    assert ours_csv.splitlines()[0] == keras_csv.splitlines()[0] == "epoch,loss,val_loss"


# --- CSVLogger: Keras's file, byte for byte ----------------------------------------------


def _drive(callback, epochs_logs, set_up):
    set_up(callback)
    callback.on_train_begin()
    for epoch, logs in enumerate(epochs_logs):
        callback.on_epoch_end(epoch, logs)
    callback.on_train_end()


LOGS = [
    [{"loss": 0.5, "mae": 0.25}, {"loss": 0.125, "mae": 0.1}],
    [{"val_loss": 0.75, "loss": 0.5, "accuracy": 0.5, "val_accuracy": 1 / 3}],
]


@pytest.mark.parametrize("separator", [",", ";"])
def test_csv_logger_writes_the_file_keras_writes(tmp_path, separator):
    keras = _keras()
    base = _base_state()
    for i, logs in enumerate(LOGS):
        for append in (False, True):
            theirs, ours = tmp_path / f"keras{i}.csv", tmp_path / f"funcnet{i}.csv"
            kc = keras.callbacks.CSVLogger(str(theirs), separator=separator, append=append)
            fc = fn.CSVLogger(ours, separator=separator, append=append)
            _drive(kc, logs, lambda c: None)
            _drive(fc, logs, lambda c: c.set_run(Run(train_state=base, history={}, epochs=2)))
            assert ours.read_bytes() == theirs.read_bytes()


def test_csv_logger_in_fit_logs_the_history(tmp_path):
    path = tmp_path / "run.csv"
    result = train(validation_data=(X[:4], Y[:4]), callbacks=[fn.CSVLogger(path)])
    rows = list(csv.DictReader(path.open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert [float(r["val_loss"]) for r in rows] == result.history["val_loss"]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda d: fn.CSVLogger(42), TypeError, r"^CSVLogger: filename must be a non-empty path"),
        (lambda d: fn.CSVLogger(""), TypeError, r"^CSVLogger: filename must be a non-empty path"),
        (lambda d: fn.CSVLogger(d), IsADirectoryError, r"^CSVLogger: filename .* is a directory"),
        (
            lambda d: fn.CSVLogger(d / "no" / "log.csv"),
            FileNotFoundError,
            r"^CSVLogger: the directory of .* does not exist",
        ),
        (
            lambda d: fn.CSVLogger(d / "log.csv", separator=",,"),
            ValueError,
            r"^CSVLogger: separator must be one character",
        ),
        (
            lambda d: fn.CSVLogger(d / "log.csv", append="yes"),
            TypeError,
            r"^CSVLogger: append must be True or False",
        ),
    ],
)
def test_csv_logger_checks_its_arguments(tmp_path, call, error, message):
    with pytest.raises(error, match=message):
        call(tmp_path)


# --- TensorBoard: Keras's names, in event files TensorBoard reads ---------------------


class _FakeSummary:
    """Records what Keras's TensorBoard callback writes (its summary module is TensorFlow's)."""

    def __init__(self):
        self.written = []

    def create_file_writer(self, directory):
        summary = self

        class Writer:
            def as_default(self):
                summary.current = os.path.basename(directory)
                return self

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

        return Writer()

    def scalar(self, name, value, step):
        self.written.append((self.current, name, step, float(value)))


def _events(folder):
    accumulators = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator",
        reason="tensorboard reads the event files back: pip install -e '.[test]'",
    )
    found = []
    for kind in sorted(p.name for p in folder.iterdir()):
        reader = accumulators.EventAccumulator(str(folder / kind))
        reader.Reload()
        for tag in reader.Tags()["scalars"]:
            found += [(kind, tag, e.step, e.value) for e in reader.Scalars(tag)]
    return sorted(found), reader


def test_tensorboard_writes_what_keras_writes(tmp_path):
    keras = _keras()
    pytest.importorskip("tensorboardX", reason="pip install -e '.[tensorboard]'")
    logs = [
        {"loss": 0.5, "accuracy": 0.25, "val_loss": 0.75, "val_accuracy": 0.125},
        {"loss": 0.25, "accuracy": 0.5, "val_loss": 0.5, "val_accuracy": 0.375},
    ]
    theirs = keras.callbacks.TensorBoard(log_dir=str(tmp_path / "keras"), write_graph=False)

    class Model:
        optimizer = keras.optimizers.SGD(learning_rate=0.05)

    theirs.set_model(Model())
    theirs._summary_module = _FakeSummary()
    for epoch, epoch_logs in enumerate(logs):
        theirs.on_epoch_end(epoch, epoch_logs)
    ours = fn.TensorBoard(tmp_path / "funcnet")
    base = _base_state()
    ours.set_run(Run(train_state=base, history={}, epochs=2))
    ours.on_train_begin()
    for epoch, epoch_logs in enumerate(logs):
        ours.on_epoch_end(epoch, epoch_logs)
    ours.on_train_end()
    written, _ = _events(tmp_path / "funcnet")
    expected = sorted(theirs._summary_module.written)
    assert [w[:3] for w in written] == [e[:3] for e in expected]
    np.testing.assert_allclose([w[3] for w in written], [e[3] for e in expected], rtol=1e-6)


def test_tensorboard_in_fit_logs_the_history_and_histograms(tmp_path):
    pytest.importorskip("tensorboardX", reason="pip install -e '.[tensorboard]'")
    result = train(
        validation_data=(X[:4], Y[:4]), callbacks=[fn.TensorBoard(tmp_path, histogram_freq=2)]
    )
    written, reader = _events(tmp_path)
    assert {kind for kind, *_ in written} == {"train", "validation"}
    train_loss = [v for kind, tag, _, v in written if (kind, tag) == ("train", "epoch_loss")]
    val_loss = [v for kind, tag, _, v in written if (kind, tag) == ("validation", "epoch_loss")]
    np.testing.assert_allclose(train_loss, result.history["loss"], rtol=1e-6)
    np.testing.assert_allclose(val_loss, result.history["val_loss"], rtol=1e-6)
    reader = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    train_events = reader.EventAccumulator(str(tmp_path / "train"), size_guidance={"histograms": 0})
    train_events.Reload()
    assert sorted(train_events.Tags()["histograms"]) == ["params/b", "params/w"]
    assert [e.step for e in train_events.Histograms("params/w")] == [0, 2]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda d: fn.TensorBoard(None),
            TypeError,
            r"^TensorBoard: log_dir must be a non-empty path",
        ),
        (
            lambda d: fn.TensorBoard(d / "f.txt" / "logs"),
            NotADirectoryError,
            r"^TensorBoard: log_dir .* cannot be a directory: .* is a file",
        ),
        (
            lambda d: fn.TensorBoard(d, histogram_freq=-1),
            ValueError,
            r"^TensorBoard: histogram_freq must be an integer >= 0",
        ),
        (
            lambda d: fn.TensorBoard(d, update_freq="batch"),
            ValueError,
            r"^TensorBoard: update_freq must be 'epoch', got 'batch'",
        ),
        (
            lambda d: fn.TensorBoard(d, update_freq=100),
            ValueError,
            r"^TensorBoard: update_freq must be 'epoch', got 100",
        ),
    ],
)
def test_tensorboard_checks_its_arguments(tmp_path, call, error, message):
    (tmp_path / "f.txt").write_text("")
    with pytest.raises(error, match=message):
        call(tmp_path)


# --- LearningRateScheduler ----------------------------------------------------------------


def _keras_schedule_rates(keras, schedule, epochs, rate):
    callback = keras.callbacks.LearningRateScheduler(schedule)

    class Model:
        optimizer = keras.optimizers.SGD(learning_rate=rate)

    callback.set_model(Model())
    rates = []
    for epoch in range(epochs):
        callback.on_epoch_begin(epoch)
        logs = {"loss": 0.0}  # not empty: Keras's on_epoch_end replaces empty logs by a new dict
        callback.on_epoch_end(epoch, logs)
        rates.append(logs["learning_rate"])
    return rates


def test_learning_rate_scheduler_sets_the_rates_keras_sets():
    keras = _keras()

    def schedule(epoch, lr):  # Keras's own example: 0.01, kept 10 epochs, then decayed
        return lr if epoch < 10 else lr * math.exp(-0.1)

    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=0.01)
    result = train(optimizer=opt, epochs=15, callbacks=[fn.LearningRateScheduler(schedule)])
    theirs = _keras_schedule_rates(keras, schedule, 15, 0.01)
    np.testing.assert_allclose(result.history["learning_rate"], theirs, rtol=1e-6)
    assert round(result.history["learning_rate"][-1], 5) == 0.00607  # Keras's docstring
    assert float(result.opt_state.hyperparams["learning_rate"]) == pytest.approx(theirs[-1])


def test_learning_rate_scheduler_takes_keras_older_one_argument_schedule(capsys):
    result = train(
        optimizer=INJECTED,
        epochs=2,
        callbacks=[fn.LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1), verbose=1)],
    )
    assert result.history["learning_rate"] == pytest.approx([0.1, 0.05])
    assert (
        "Epoch 2: LearningRateScheduler setting learning rate to 0.05." in capsys.readouterr().out
    )


def test_learning_rate_scheduler_changes_the_training():
    fixed = train(optimizer=INJECTED, epochs=2)
    frozen = train(
        optimizer=INJECTED, epochs=2, callbacks=[fn.LearningRateScheduler(lambda e, lr: 0.0)]
    )
    initial = fn.init_train_state(NET, INJECTED, (None, 2), key=1)
    jax.tree.map(np.testing.assert_array_equal, frozen.params, initial.params)
    assert not np.allclose(fixed.params["w"], initial.params["w"])


@pytest.mark.parametrize(
    ("schedule", "error", "message"),
    [
        (
            0.1,
            TypeError,
            r"^LearningRateScheduler: schedule must be a function schedule\(epoch, lr\)",
        ),
        (
            lambda: 0.1,
            TypeError,
            r"^LearningRateScheduler: schedule must take \(epoch, lr\) \(or just epoch\); it takes 0 required",
        ),
        (
            lambda a, b, c: 0.1,
            TypeError,
            r"^LearningRateScheduler: schedule must take \(epoch, lr\) .* it takes 3 required",
        ),
    ],
)
def test_learning_rate_scheduler_checks_its_schedule(schedule, error, message):
    with pytest.raises(error, match=message):
        fn.LearningRateScheduler(schedule)


@pytest.mark.parametrize(
    ("returned", "error", "message"),
    [
        (
            "0.1",
            TypeError,
            r"^LearningRateScheduler: schedule\(0, 0\.05.*\) returned str: '0\.1'; it must return the new learning rate as a number\.",
        ),
        (None, TypeError, r"^LearningRateScheduler: schedule\(0, .*\) returned NoneType"),
        (
            float("nan"),
            ValueError,
            r"^LearningRateScheduler: schedule\(0, .*\) returned nan; a learning rate must be a finite number >= 0\.",
        ),
        (-0.1, ValueError, r"^LearningRateScheduler: schedule\(0, .*\) returned -0\.1"),
    ],
)
def test_a_schedule_returning_a_non_rate_stops_before_training(returned, error, message):
    with pytest.raises(error, match=message):
        train(optimizer=INJECTED, callbacks=[fn.LearningRateScheduler(lambda e, lr: returned)])


def test_learning_rate_scheduler_and_reduce_lr_on_plateau_work_together():
    # As in Keras: the schedule sets each epoch's rate, the plateau callback lowers it after.
    schedule = fn.LearningRateScheduler(lambda epoch, lr: 0.04 if epoch == 0 else lr)
    plateau = fn.ReduceLROnPlateau("loss", factor=0.5, patience=0, min_delta=10.0)
    for callbacks in ([schedule, plateau], [plateau, schedule]):
        result = train(optimizer=INJECTED, epochs=3, callbacks=callbacks)
        assert result.history["learning_rate"] == pytest.approx([0.04, 0.04, 0.02])


def test_learning_rate_scheduler_needs_an_injected_rate():
    with pytest.raises(
        ValueError,
        match=r"^LearningRateScheduler needs an optimizer whose learning rate is injected",
    ):
        train(callbacks=[fn.LearningRateScheduler(lambda e, lr: lr)])


# --- LambdaCallback ----------------------------------------------------------------------


def test_lambda_callback_refuses_batch_hooks_and_unknown_names():
    with pytest.raises(
        ValueError,
        match=r"^LambdaCallback: on_train_batch_end is not supported: fit runs each epoch",
    ):
        fn.LambdaCallback(on_train_batch_end=lambda batch, logs: None)
    with pytest.raises(
        TypeError, match=r"^LambdaCallback: unknown hook 'on_epoch_ned'; the hooks are"
    ):
        fn.LambdaCallback(on_epoch_ned=print)
    with pytest.raises(
        TypeError, match=r"^LambdaCallback: on_epoch_end must be a function, got str"
    ):
        fn.LambdaCallback(on_epoch_end="print")


def test_objects_with_keras_style_hooks_get_on_epoch_begin():
    calls = []

    class KerasStyle:  # not a fn.Callback: hooks with Keras's signatures
        def on_epoch_begin(self, epoch, logs):
            calls.append(("begin", epoch, dict(logs)))

        def on_epoch_end(self, epoch, logs):
            calls.append(("end", epoch))

    train(epochs=2, callbacks=[KerasStyle()])
    assert calls == [("begin", 0, {}), ("end", 0), ("begin", 1, {}), ("end", 1)]


# --- BackupAndRestore ----------------------------------------------------------------------


class PreemptedError(Exception):
    pass


def _interrupt_at(epoch):
    def begin(e, logs):
        if e == epoch:
            raise PreemptedError(f"preempted at epoch {e}")

    return fn.LambdaCallback(on_epoch_begin=begin)


def test_backup_and_restore_resumes_an_interrupted_run_exactly(tmp_path):
    uninterrupted = train(epochs=5)
    backup = fn.BackupAndRestore(tmp_path / "backup")
    with pytest.raises(PreemptedError):
        train(epochs=5, callbacks=[backup, _interrupt_at(3)])
    assert fn.CheckpointManager(tmp_path / "backup").steps() == [3]
    begun = []
    resumed = train(
        epochs=5,
        callbacks=[backup, fn.LambdaCallback(on_epoch_begin=lambda e, logs: begun.append(e))],
    )
    assert begun == [3, 4]  # only the epochs the interrupted run had not done
    jax.tree.map(np.testing.assert_array_equal, resumed.params, uninterrupted.params)
    assert resumed.history["loss"] == uninterrupted.history["loss"]
    assert not (tmp_path / "backup").exists()  # delete_checkpoint: removed after the fit


def test_backup_and_restore_keeps_the_backup_when_asked(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    train(
        callbacks=[fn.BackupAndRestore(tmp_path, delete_checkpoint=False, double_checkpoint=True)]
    )
    assert fn.CheckpointManager(tmp_path).steps() == [2, 3]
    train(epochs=4, callbacks=[fn.BackupAndRestore(tmp_path)])
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]  # only the backup is deleted


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda d: fn.BackupAndRestore(""),
            TypeError,
            r"^BackupAndRestore: backup_dir must be a non-empty path",
        ),
        (
            lambda d: fn.BackupAndRestore(d, save_freq=10),
            ValueError,
            r"^BackupAndRestore: save_freq must be 'epoch', got 10\. fit runs each epoch",
        ),
        (
            lambda d: fn.BackupAndRestore(d / "f.txt"),
            NotADirectoryError,
            r"^BackupAndRestore: backup_dir .* cannot be a directory",
        ),
        (
            lambda d: fn.BackupAndRestore(d, delete_checkpoint=None),
            TypeError,
            r"^BackupAndRestore: delete_checkpoint must be True or False",
        ),
        (
            lambda d: train(checkpoint=d, callbacks=[fn.BackupAndRestore(d)]),
            ValueError,
            r"^fit: BackupAndRestore backs up to and resumes from its backup_dir; give it, or checkpoint=/resume=, not both",
        ),
        (
            lambda d: train(callbacks=[fn.BackupAndRestore(d), fn.BackupAndRestore(d)]),
            ValueError,
            r"^fit: give at most one BackupAndRestore",
        ),
    ],
)
def test_backup_and_restore_checks_its_arguments(tmp_path, call, error, message):
    (tmp_path / "f.txt").write_text("")
    with pytest.raises(error, match=message):
        call(tmp_path)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere"
)
def test_an_unwritable_directory_is_refused_when_the_callback_is_built(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        for build, name in [
            (lambda: fn.CSVLogger(locked / "log.csv"), "CSVLogger: filename's directory"),
            (lambda: fn.TensorBoard(locked / "logs"), "TensorBoard: log_dir"),
            (lambda: fn.BackupAndRestore(locked / "backup"), "BackupAndRestore: backup_dir"),
        ]:
            with pytest.raises(PermissionError, match=rf"^{name} .* is not writable"):
                build()
    finally:
        locked.chmod(0o700)


# --- the progress bar -----------------------------------------------------------------------


def test_the_bar_says_it_is_compiling_then_ends_with_the_epoch_and_reason(capsys):
    stop = fn.EarlyStopping(monitor="loss", patience=2)
    # sgd(0.0) and no shuffling: every epoch's loss is the same number, to the
    # last bit (shuffled batches would sum in another order, a last-bit "improvement").
    result = fn.fit(
        fn.Dense(1), X, Y, loss="mse", optimizer=optax.sgd(0.0), epochs=100, batch_size=8,
        shuffle=False, callbacks=[stop], verbose=1,
    )  # fmt: skip
    err = capsys.readouterr().err
    assert len(result.history["loss"]) == 3
    first = err.index("compiling")
    assert first < err.index("epoch 1/100")
    reason = "EarlyStopping: loss did not improve for 2 epochs (best"
    assert f"stopped at epoch 3/100: {reason}" in err
    # The bar itself ends on the stop, not at 3% with the running epoch's name.
    assert "stopped at epoch 3/100:" in err.splitlines()[-1]
    assert err.rstrip().endswith(")")
    last_bar = [line for line in err.replace("\r", "\n").splitlines() if "step" in line][-1]
    assert last_bar.startswith("stopped at epoch 3/100")


def test_one_line_per_epoch_ends_with_the_stop(capsys):
    train(
        optimizer=optax.sgd(0.0),
        epochs=50,
        shuffle=False,  # the same loss every epoch, to the last bit
        verbose=2,
        callbacks=[fn.EarlyStopping("loss", patience=1)],
    )
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1].startswith("Epoch 2/50 - loss:")
    assert captured.err.strip().startswith(
        "stopped at epoch 2/50: EarlyStopping: loss did not improve for 1 epoch (best"
    )
