"""export: a file that a program with only jax runs, for any batch size."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import funcnet as fn

# Runs in a fresh interpreter in which importing funcnet is impossible; each
# argument is "model file::inputs file".
CONSUMER = textwrap.dedent(
    """
    import sys
    sys.modules["funcnet"] = None  # any import of funcnet now fails
    import jax, numpy as np
    models = {}
    for pair in sys.argv[1:]:
        model, name = pair.split("::")
        if model not in models:
            models[model] = jax.export.deserialize(bytearray(open(model, "rb").read()))
        inputs = np.load(name)
        args = [inputs[k] for k in sorted(inputs.files)]
        np.save(name + ".out.npy", np.asarray(models[model].call(*args)))
    assert not any(m.startswith("funcnet.") for m in sys.modules)
    print("ok")
    """
)


def run_elsewhere(folder, runs):
    """Runs exported files in one subprocess (jax starts once for all of them).

    ``runs`` maps a model file to its batches (tuples of arrays); returns the
    outputs per model file, in the order of its batches.
    """
    (folder / "consumer.py").write_text(CONSUMER)
    pairs, names = [], {}
    for model_file, batches in runs.items():
        names[model_file] = []
        for arrays in batches:
            name = str(folder / f"in{len(pairs)}.npz")
            np.savez(name, **{f"x{j}": a for j, a in enumerate(arrays)})
            pairs.append(f"{model_file}::{name}")
            names[model_file].append(name)
    done = subprocess.run(
        [sys.executable, str(folder / "consumer.py"), *pairs],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
    return {model: [np.load(n + ".out.npy") for n in ns] for model, ns in names.items()}


def trained_cnn():
    """A small trained CNN, so batch norm's running statistics are not the initial ones."""
    net = fn.serial(
        fn.Conv(4, (3, 3)),
        fn.BatchNorm(),
        fn.Relu(),
        fn.MaxPool((2, 2)),
        fn.Flatten(),
        fn.Dropout(0.5),
        fn.Dense(3),
        fn.Softmax(),
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 6, 6, 2)).astype(np.float32)
    y = rng.integers(0, 3, size=16)
    result = fn.fit(
        net,
        x,
        y,
        loss="sparse_categorical_crossentropy",
        optimizer=optax.adam(0.01),
        epochs=2,
        batch_size=8,
        verbose=0,
    )
    return net, result.params, result.state


def two_input_net():
    return fn.serial(
        fn.parallel(fn.serial(fn.Embedding(10, 4), fn.Flatten()), fn.Dense(3)),
        fn.fan_in_concat(),
        fn.Dense(2),
    )


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory):
    """The two exported models of the tests below, run by one jax-only subprocess."""
    folder = tmp_path_factory.mktemp("export")
    net, params, state = trained_cnn()
    cnn = fn.export(net, params, state, (None, 6, 6, 2), folder / "cnn.jax")
    rng = np.random.default_rng(1)
    cnn_batches = [(rng.normal(size=(n, 6, 6, 2)).astype(np.float32),) for n in (1, 3, 17)]
    two = two_input_net()
    spec = (jax.ShapeDtypeStruct((None, 5), jnp.int32), (None, 7))
    _, two_params, two_state = two.init(jax.random.key(0), spec)
    two_exported = fn.export(two, two_params, two_state, spec, folder / "two.jax")
    rng = np.random.default_rng(2)
    two_batches = [
        (
            rng.integers(0, 10, size=(n, 5)).astype(np.int32),
            rng.normal(size=(n, 7)).astype(np.float32),
        )
        for n in (2, 9)
    ]
    outputs = run_elsewhere(
        folder, {folder / "cnn.jax": cnn_batches, folder / "two.jax": two_batches}
    )
    return {
        "cnn": (net, params, state, cnn, cnn_batches, outputs[folder / "cnn.jax"]),
        "two": (two, two_params, two_state, two_exported, two_batches, outputs[folder / "two.jax"]),
    }


def test_a_program_with_only_jax_runs_the_exported_model_for_any_batch(elsewhere):
    net, params, state, exported, batches, outputs = elsewhere["cnn"]
    assert not np.allclose(state[1]["mean"], 0.0)  # trained statistics, not the initial ones
    assert str(exported.in_avals[0]) == "float32[batch,6,6,2]"
    for (x,), out in zip(batches, outputs):
        expected = fn.predict(net, params, state, x)
        assert out.shape == (x.shape[0], 3) and out.dtype == np.float32
        np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(out, exported.call(x), rtol=0, atol=0)


def test_several_inputs_share_the_batch_and_integer_inputs_keep_their_dtype(elsewhere):
    net, params, state, exported, batches, outputs = elsewhere["two"]
    assert [str(a) for a in exported.in_avals] == [
        "int32[batch,5]",
        "float32[batch,7]",
    ]
    apply = jax.jit(net.apply)  # one program per batch size, not one per eager op
    for (ids, x), out in zip(batches, outputs):
        expected, _ = apply(params, state, (ids, x))
        np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)


def test_other_unknown_sizes_become_their_own_symbols():
    net = fn.serial(fn.Conv(3, 3), fn.GlobalAvgPool())
    _, params, state = net.init(jax.random.key(0), (None, None, 2))
    exported = fn.export(net, params, state, (None, None, 2))
    assert str(exported.in_avals[0]) == "float32[batch,d1,2]"
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 11, 2)), jnp.float32)
    np.testing.assert_allclose(exported.call(x), net.apply(params, state, x)[0], rtol=1e-6)


def test_load_exported_reads_the_file_and_names_bad_files(tmp_path):
    net = fn.Dense(2)
    _, params, state = net.init(jax.random.key(0), (None, 3))
    fn.export(net, params, state, (None, 3), tmp_path / "dense.jax")
    x = jnp.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(fn.load_exported(tmp_path / "dense.jax").call(x), x @ params["w"])
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    (tmp_path / "junk.jax").write_bytes(b"not a model at all")
    with pytest.raises(
        fn.ExportError,
        match=r"^load_exported: .*junk\.jax is not a model exported with jax\.export \(or it is truncated or corrupted\): ",
    ):
        fn.load_exported(tmp_path / "junk.jax")
    with pytest.raises(FileNotFoundError, match=r"^load_exported: no file at .*missing\.jax\.$"):
        fn.load_exported(tmp_path / "missing.jax")


def test_export_errors():
    net = fn.Dense(2)
    _, params, state = net.init(jax.random.key(0), (None, 3))
    with pytest.raises(
        fn.ExportError,
        match=r"^export: input_shape must be a shape such as \(None, 3\), a jax\.ShapeDtypeStruct, or a tuple of these; got 'x'\.$",
    ):
        fn.export(net, params, state, "x")
    with pytest.raises(
        fn.ExportError,
        match=r"^export: Dense could not be exported for inputs \(None, 4\): LayerValueError: Dense: expected input with last dimension 3",
    ):
        fn.export(net, params, state, (None, 4))
