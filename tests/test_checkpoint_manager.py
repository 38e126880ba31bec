"""CheckpointManager (keep the last N and the best) and fit's checkpoint= / resume=."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import funcnet as fn
from funcnet._src.files.checkpoint import describe_model

RNG = np.random.default_rng(0)
X = RNG.normal(size=(30, 3)).astype(np.float32)
Y = (X @ np.array([[1.0], [-2.0], [0.5]], np.float32) > 0).astype(np.float32)
NET = fn.serial(fn.Dense(8), fn.BatchNorm(), fn.Relu(), fn.Dropout(0.3), fn.Dense(1))


def train(**kwargs):
    args = dict(
        loss="mse",
        optimizer=optax.adam(0.02),
        batch_size=8,
        key=3,
        verbose=0,
        epochs=4,
    )
    args.update(kwargs)
    return fn.fit(NET, X, Y, **args)


def assert_bitwise(a, b):
    def plain(leaf):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            return np.asarray(jax.random.key_data(leaf))
        return np.asarray(leaf)

    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(plain(u), plain(v), strict=True)


def tree(value):
    return {"w": jnp.full((2,), value, jnp.float32)}


# --------------------------------------------------------------------------
# The manager


def test_keeps_the_last_n_and_the_best(tmp_path):
    manager = fn.CheckpointManager(tmp_path, max_to_keep=2, best="val_loss")
    losses = [0.9, 0.2, 0.5, 0.4, 0.3, 0.6]
    for step, loss in enumerate(losses):
        manager.save(step * 10, tree(step), metrics={"val_loss": loss})
    assert manager.steps() == [10, 40, 50]  # the best (0.2 at step 10) and the last two
    assert manager.latest() == tmp_path / "ckpt-00000050.safetensors"
    assert manager.best() == tmp_path / "ckpt-00000010.safetensors"
    restored, info = manager.restore(tree(0), step="best")
    np.testing.assert_array_equal(restored["w"], [1.0, 1.0])
    assert info.metadata == {"step": 10, "metrics": {"val_loss": 0.2}}
    restored, info = manager.restore(tree(0))
    np.testing.assert_array_equal(restored["w"], [5.0, 5.0])
    restored, _ = manager.restore(tree(0), step=40)
    np.testing.assert_array_equal(restored["w"], [4.0, 4.0])


def test_mode_max_and_auto_keep_the_highest_accuracy(tmp_path):
    for mode in ("max", "auto"):
        manager = fn.CheckpointManager(tmp_path / mode, max_to_keep=1, best="accuracy", mode=mode)
        for step, acc in enumerate([0.5, 0.9, 0.7, float("nan"), 0.9]):
            manager.save(step, tree(step), metrics={"accuracy": acc})
        assert manager.steps() == [1, 4]  # ties keep the oldest; NaN is never best
        assert manager.best().name == "ckpt-00000001.safetensors"


def test_max_to_keep_none_keeps_everything(tmp_path):
    manager = fn.CheckpointManager(tmp_path, max_to_keep=None)
    for step in range(5):
        manager.save(step, tree(step))
    assert manager.steps() == [0, 1, 2, 3, 4]
    assert repr(manager) == f"CheckpointManager({str(tmp_path)!r}, steps=[0, 1, 2, 3, 4])"


def test_restore_skips_a_damaged_newest_file_with_a_warning(tmp_path):
    manager = fn.CheckpointManager(tmp_path, max_to_keep=3)
    for step in range(3):
        manager.save(step, tree(step))
    newest = manager.path(2)
    newest.write_bytes(newest.read_bytes()[:-5])
    with pytest.warns(
        UserWarning,
        match=r"ckpt-00000002\.safetensors is truncated.*Restoring the checkpoint before it\.",
    ):
        restored, info = manager.restore(tree(0))
    assert info.metadata["step"] == 1
    np.testing.assert_array_equal(restored["w"], [1.0, 1.0])
    with pytest.raises(fn.CheckpointError, match="is truncated"):
        manager.restore(tree(0), step=2)  # an explicit step is not replaced


def test_a_mismatch_is_raised_not_skipped(tmp_path):
    manager = fn.CheckpointManager(tmp_path)
    manager.save(0, tree(0))
    manager.save(1, tree(1))
    with pytest.raises(
        fn.CheckpointMismatchError, match=r"\['w'\]: shape \(2,\) in the file, \(3,\) expected"
    ):
        manager.restore({"w": jnp.zeros(3)})


def test_temporary_files_of_a_killed_writer_are_removed(tmp_path):
    (tmp_path / ".ckpt-00000003.safetensors.abc123.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / "notes.txt").write_text("kept")
    manager = fn.CheckpointManager(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert manager.steps() == [] and manager.latest() is None


def test_manager_errors(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"^CheckpointManager: max_to_keep must be a positive integer or None, got 0\.$",
    ):
        fn.CheckpointManager(tmp_path, max_to_keep=0)
    with pytest.raises(
        ValueError,
        match=r"^CheckpointManager: prefix must be letters, digits, '_' or '\.', got 'a/b'\.$",
    ):
        fn.CheckpointManager(tmp_path, prefix="a/b")
    with pytest.raises(
        ValueError, match=r"^CheckpointManager: mode must be 'min', 'max' or 'auto', got 'best'\.$"
    ):
        fn.CheckpointManager(tmp_path, best="loss", mode="best")
    manager = fn.CheckpointManager(tmp_path, best="val_loss")
    with pytest.raises(
        ValueError,
        match=r"^CheckpointManager\.save: best='val_loss' is not in metrics; available: loss\. Monitoring a 'val_' value in fit needs validation_data or validation_split\.$",
    ):
        manager.save(0, tree(0), metrics={"loss": 1.0})
    with pytest.raises(
        ValueError, match=r"^CheckpointManager\.save: step must be an integer >= 0, got -1\.$"
    ):
        manager.save(-1, tree(0), metrics={"val_loss": 1.0})
    with pytest.raises(FileNotFoundError, match=r"^CheckpointManager: no checkpoint in "):
        manager.restore(tree(0))
    with pytest.raises(FileNotFoundError, match=r"^CheckpointManager: no checkpoint in "):
        manager.restore(tree(0), step="best")
    with pytest.raises(ValueError, match=r"^CheckpointManager: best\(\) needs a metric"):
        fn.CheckpointManager(tmp_path).best()


def test_restore_names_the_valid_steps(tmp_path):
    manager = fn.CheckpointManager(tmp_path)
    for step in (1, 2, 3):
        manager.save(step, tree(step))
    for bad in ("latest", -1, 2.0, True):
        with pytest.raises(
            ValueError,
            match=r"^CheckpointManager\.restore: step must be a step number on disk \(1, 2, 3\), "
            r"'best', or None for the newest readable checkpoint; got "
            + re.escape(repr(bad))
            + r"\.$",
        ):
            manager.restore(tree(0), step=bad)
    with pytest.raises(
        FileNotFoundError,
        match=r"^CheckpointManager\.restore: no checkpoint for step=7 in .*; the steps on disk "
        r"are: 1, 2, 3\.$",
    ):
        manager.restore(tree(0), step=7)
    assert manager.restore(tree(0), step=2)[1].metadata["step"] == 2


def test_bad_arguments_of_the_manager_name_the_argument(tmp_path):
    with pytest.raises(
        TypeError,
        match=r"^CheckpointManager: directory must be a path \(str or os\.PathLike\), got int\.$",
    ):
        fn.CheckpointManager(3)
    (tmp_path / "file").write_text("x")
    with pytest.raises(
        NotADirectoryError,
        match=r"^CheckpointManager: .*file is a file, not a directory\. Give the directory that "
        r"holds \(or will hold\) the numbered checkpoints; read one file with fn\.load\(path\)\.$",
    ):
        fn.CheckpointManager(tmp_path / "file")
    with pytest.raises(
        TypeError,
        match=r"^CheckpointManager: best must be a metric name such as 'val_loss', or None; got int\.$",
    ):
        fn.CheckpointManager(tmp_path, best=1)
    with pytest.raises(ValueError, match=r"^CheckpointManager: prefix must be letters"):
        fn.CheckpointManager(tmp_path, prefix=3)
    manager = fn.CheckpointManager(tmp_path)
    with pytest.raises(
        ValueError, match=r"^CheckpointManager\.path: step must be an integer >= 0, got -1\.$"
    ):
        manager.path(-1)
    with pytest.raises(
        TypeError,
        match=r"^CheckpointManager\.save: metrics must be a dict of numbers such as "
        r"\{\"val_loss\": 0\.3\}, got \{'loss': 'low'\}\.$",
    ):
        manager.save(0, tree(0), metrics={"loss": "low"})
    with pytest.raises(
        TypeError, match=r"^CheckpointManager\.save: metadata must be a dict, got str\.$"
    ):
        manager.save(0, tree(0), metadata="note")
    assert manager.steps() == []


# --------------------------------------------------------------------------
# fit(checkpoint=..., resume=...)


def test_fit_saves_every_epoch_with_the_history_so_far(tmp_path):
    result = train(checkpoint=tmp_path, validation_data=(X[:10], Y[:10]))
    manager = fn.CheckpointManager(tmp_path)
    assert manager.steps() == [2, 3, 4]  # numbered by completed epochs, the last 3 kept
    info = fn.checkpoint_info(manager.latest())
    assert info.history == result.history and len(info.history["val_loss"]) == 4
    assert info.metadata["epoch"] == 4 and info.metadata["step"] == 4
    assert info.metadata["metrics"]["loss"] == result.history["loss"][-1]
    assert info.model == describe_model(NET, jax.ShapeDtypeStruct((None, 3), jnp.float32))
    assert_bitwise(fn.load(manager.latest(), like=result.train_state), result.train_state)
    two = fn.checkpoint_info(manager.path(2))
    assert two.history == {name: values[:2] for name, values in result.history.items()}


def test_resuming_continues_the_run_bitwise(tmp_path):
    whole = train(epochs=6)
    first = train(epochs=2, checkpoint=tmp_path)
    assert first.history == {name: values[:2] for name, values in whole.history.items()}
    resumed = train(epochs=6, checkpoint=tmp_path, resume=True)
    assert_bitwise(resumed.train_state, whole.train_state)
    assert resumed.history == whole.history
    # Nothing left to do: the saved state and history come back unchanged.
    again = train(epochs=6, checkpoint=tmp_path, resume=True)
    assert_bitwise(again.train_state, whole.train_state)
    assert again.history == whole.history


def test_resume_from_a_file_or_a_manager_and_a_best_checkpoint(tmp_path):
    whole = train(epochs=3)
    manager = fn.CheckpointManager(tmp_path / "m", best="loss")
    spec = jax.ShapeDtypeStruct((None, 3), jnp.float32)  # as fit describes it
    train(epochs=1, callbacks=[fn.ModelCheckpoint(manager, net=NET, input_shape=spec)])
    from_manager = train(epochs=3, resume=manager)
    assert_bitwise(from_manager.train_state, whole.train_state)
    from_file = train(epochs=3, resume=str(manager.path(1)))
    assert_bitwise(from_file.train_state, whole.train_state)
    assert fn.checkpoint_info(manager.path(1)).model == describe_model(NET, spec)


def test_fit_checkpoint_accepts_a_manager_with_its_own_policy(tmp_path):
    manager = fn.CheckpointManager(tmp_path, max_to_keep=1, best="loss", mode="max")
    result = train(epochs=3, checkpoint=manager)
    # The worst (highest) loss, the first epoch's, is kept as the best, and the newest.
    assert manager.steps() == [1, 3] and manager.best() == manager.path(1)
    assert fn.checkpoint_info(manager.path(3)).history == result.history


def test_resume_true_on_an_empty_directory_starts_afresh(tmp_path):
    fresh = train(epochs=2)
    started = train(epochs=2, checkpoint=tmp_path / "new", resume=True)
    assert_bitwise(started.train_state, fresh.train_state)
    assert fn.CheckpointManager(tmp_path / "new").steps() == [1, 2]


def test_resuming_a_different_model_names_the_difference(tmp_path):
    train(epochs=1, checkpoint=tmp_path)
    other = fn.serial(fn.Dense(4), fn.BatchNorm(), fn.Relu(), fn.Dropout(0.3), fn.Dense(1))
    with pytest.raises(
        fn.CheckpointMismatchError,
        match=r"(?s)^fit: the checkpoint to resume from, .*ckpt-00000001\.safetensors, was written by a "
        r"different model \(5 differences; the checkpoint's model first, this one's second\):\n"
        r"  model: layer 0 is serial\[0\]\.Dense \[None, 8\] \(32 params\) in the file, "
        r"serial\[0\]\.Dense \[None, 4\] \(16 params\) expected\n.*"
        r"\nresume continues a run only with the model that wrote it\. To train this model, give "
        r"it a checkpoint directory of its own \(one directory holds one run\), or delete the "
        r"checkpoints in .* to start over there\.$",
    ) as info:
        fn.fit(other, X, Y, loss="mse", optimizer=optax.adam(0.02), checkpoint=tmp_path,
               resume=True, verbose=0)  # fmt: skip
    assert str(tmp_path) in str(info.value)
    assert (
        "model: layer 0 is serial[0].Dense [None, 8] (32 params) in the file, "
        "serial[0].Dense [None, 4] (16 params) expected"
    ) in info.value.differences


def test_resuming_a_model_with_the_same_shapes_but_other_layers_is_refused(tmp_path):
    # Same params, same shapes: only the model description tells the runs apart.
    train(epochs=1, checkpoint=tmp_path)
    other = fn.serial(fn.Dense(8), fn.BatchNorm(), fn.Tanh(), fn.Dropout(0.3), fn.Dense(1))
    with pytest.raises(
        fn.CheckpointMismatchError, match=r"^fit: the checkpoint to resume from"
    ) as info:
        fn.fit(other, X, Y, loss="mse", optimizer=optax.adam(0.02), checkpoint=tmp_path,
               resume=True, verbose=0)  # fmt: skip
    assert info.value.differences == [
        "model: layer 2 is serial[2].Relu [None, 8] (0 params) in the file, "
        "serial[2].Tanh [None, 8] (0 params) expected"
    ]
    newest = fn.CheckpointManager(tmp_path).latest()
    with pytest.raises(fn.CheckpointMismatchError, match=r"^fit: the checkpoint to resume from"):
        fn.fit(other, X, Y, loss="mse", optimizer=optax.adam(0.02), resume=newest, verbose=0)
    assert fn.CheckpointManager(tmp_path).steps() == [1]  # nothing was written


def test_fit_resume_errors(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"^fit: resume=True resumes from the checkpoint directory; pass checkpoint=<dir> too",
    ):
        train(resume=True)
    ts = fn.init_train_state(NET, optax.adam(0.02), (None, 3), key=0)
    with pytest.raises(
        ValueError,
        match=r"^fit: give train_state \(continue from it\) or resume \(continue from a checkpoint\), not both\.$",
    ):
        train(train_state=ts, resume=tmp_path)
    with pytest.raises(
        TypeError,
        match=r"^fit: checkpoint must be a CheckpointManager or a directory path, got int\.$",
    ):
        train(checkpoint=3)
    with pytest.raises(
        FileNotFoundError, match=r"^load: no checkpoint at .*nothing\.safetensors\.$"
    ):
        train(resume=tmp_path / "nothing.safetensors")


def test_a_fresh_run_into_a_directory_of_an_earlier_run_warns(tmp_path):
    train(epochs=2, checkpoint=tmp_path)
    with pytest.warns(
        UserWarning,
        match=r"^fit: the checkpoint directory .* already holds checkpoints of an earlier run "
        r"\(steps 1, 2\), and this run starts afresh \(resume=False\): their steps and this run's "
        r"would mix\. Pass resume=True to continue that run, or give this run a directory of its "
        r"own\.$",
    ):
        train(epochs=1, checkpoint=tmp_path)
