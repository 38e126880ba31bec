"""save / load: round trips, the on-disk layout, mismatches, damaged and foreign files."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest
import safetensors.numpy

import funcnet as fn
from funcnet._src.files.checkpoint import describe_model

NET = fn.serial(fn.Dense(4), fn.BatchNorm(), fn.Dropout(0.5), fn.Dense(1))
SHAPE = (None, 3)


def train_state(optimizer=None, key=0):
    return fn.init_train_state(NET, optimizer or optax.adam(1e-3), SHAPE, key=key)


def plain(leaf):
    if jax.dtypes.issubdtype(getattr(leaf, "dtype", np.float32), jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(leaf))
    return np.asarray(leaf)


def assert_same(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert type(u) is type(v) or (isinstance(u, jax.Array) and isinstance(v, jax.Array))
        np.testing.assert_array_equal(plain(u), plain(v), strict=True)


def read_header(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


# --------------------------------------------------------------------------
# Round trips


def test_a_train_state_round_trips_bitwise_with_optax_namedtuples_and_the_key(tmp_path):
    ts = train_state()
    ts = ts._replace(params=jax.tree.map(lambda a: a + 0.25, ts.params), step=jnp.int32(7))
    path = fn.save(tmp_path / "ts.safetensors", ts, history={"loss": [1.0, 0.5]})
    restored = fn.load(path, like=train_state(key=1))
    assert_same(restored, ts)
    assert isinstance(restored, fn.TrainState)
    assert type(restored.opt_state[0]) is optax.ScaleByAdamState
    assert restored.key.dtype == ts.key.dtype and int(restored.step) == 7
    # The restored key draws the same numbers as the original.
    np.testing.assert_array_equal(
        jax.random.normal(restored.key, (3,)), jax.random.normal(ts.key, (3,))
    )


def test_like_may_be_abstract_and_the_result_is_concrete(tmp_path):
    ts = train_state()
    fn.save(tmp_path / "ts.safetensors", ts)
    restored = fn.load(tmp_path / "ts.safetensors", like=jax.eval_shape(train_state))
    assert_same(restored, ts)


def test_without_like_load_returns_nested_dicts_by_path(tmp_path):
    tree = {"a": (jnp.arange(3.0), {"b": jnp.int32(2)}), "k": jax.random.key(5), "n": {3: 1.5}}
    fn.save(tmp_path / "t.safetensors", tree)
    got = fn.load(tmp_path / "t.safetensors")
    assert set(got) == {"a", "k", "n"}
    np.testing.assert_array_equal(got["a"][0], [0.0, 1.0, 2.0])
    assert int(got["a"][1]["b"]) == 2 and got["a"][1]["b"].dtype == jnp.int32
    assert got["n"][3] == 1.5 and type(got["n"][3]) is float
    np.testing.assert_array_equal(
        jax.random.key_data(got["k"]), jax.random.key_data(jax.random.key(5))
    )
    fn.save(tmp_path / "leaf.safetensors", jnp.ones(2))
    np.testing.assert_array_equal(fn.load(tmp_path / "leaf.safetensors"), [1.0, 1.0])


def test_every_dtype_round_trips_bfloat16_included(tmp_path):
    rng = np.random.default_rng(0)
    tree = {
        "bf16": jnp.asarray(rng.normal(size=(2, 3)), jnp.bfloat16),
        "f16": np.asarray(rng.normal(size=4), np.float16),
        "f64": np.asarray(rng.normal(size=2), np.float64),
        "f8": np.asarray([0.5, -2.0], ml_dtypes.float8_e4m3fn),
        "c64": np.asarray([1 + 2j, -3j], np.complex64),
        "i8": np.asarray([-128, 127], np.int8),
        "u32": np.asarray([0, 2**32 - 1], np.uint32),
        "i64": np.asarray([-(2**62)], np.int64),
        "bool": np.asarray([True, False]),
        "empty": np.zeros((0, 3), np.float32),
        "rbg": jax.random.key(1, impl="rbg"),
        "py": (1, 2.5, True),
    }
    fn.save(tmp_path / "d.safetensors", tree)
    got = fn.load(tmp_path / "d.safetensors", like=tree)
    assert_same(got, tree)
    assert got["bf16"].dtype == jnp.bfloat16 and isinstance(got["bf16"], jax.Array)
    assert isinstance(got["f16"], np.ndarray)  # numpy where `like` has numpy
    assert [type(v) for v in got["py"]] == [int, float, bool]
    # bfloat16 is stored natively, as its 16 raw bits.
    header, data = read_header(tmp_path / "d.safetensors")
    assert header["bf16"]["dtype"] == "BF16" and header["bf16"]["shape"] == [2, 3]
    begin, end = header["bf16"]["data_offsets"]
    assert data[begin:end] == np.asarray(tree["bf16"]).view(np.uint16).astype("<u2").tobytes()
    assert header["c64"]["dtype"] == "U8" and header["c64"]["shape"] == [16]


def test_the_file_is_a_plain_safetensors_file(tmp_path):
    params = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([7], np.int32)}
    fn.save(tmp_path / "p.safetensors", params)
    raw = open(tmp_path / "p.safetensors", "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert (8 + n) % 8 == 0  # the data is aligned
    header = json.loads(raw[8 : 8 + n])
    assert (header["w"]["dtype"], header["w"]["shape"]) == ("F32", [2, 3])
    assert (header["b"]["dtype"], header["b"]["shape"]) == ("I32", [1])
    begin, end = header["w"]["data_offsets"]
    data = raw[8 + n :]
    np.testing.assert_array_equal(np.frombuffer(data[begin:end], "<f4").reshape(2, 3), params["w"])
    meta = json.loads(header["__metadata__"]["funcnet"])
    assert meta["format"] == "funcnet-checkpoint" and meta["version"] == 2
    assert len(header["__metadata__"]["funcnet.sha256"]) == 64
    # Any safetensors reader gets the arrays.
    arrays = safetensors.numpy.load_file(tmp_path / "p.safetensors")
    assert set(arrays) == {"w", "b"}
    np.testing.assert_array_equal(arrays["w"], params["w"], strict=True)
    np.testing.assert_array_equal(arrays["b"], params["b"], strict=True)


V1_FILE = Path(__file__).parent / "data" / "checkpoint_v1.safetensors"


def test_a_version_1_file_written_before_the_safetensors_package_still_loads(tmp_path):
    # Written by funcnet's own writer (commit 108a3ba), with
    # net = fn.serial(fn.Dense(2), fn.Relu()); _, params, _ = net.init(jax.random.key(0), (None, 3))
    # fn.save(path, {"params": params, "bf16": ..., "c64": ..., "key": jax.random.key(7),
    #     "py": (3, 0.5, True), "empty": np.zeros((0, 2), np.int32)},
    #     history={"loss": [1.0, 0.5]}, net=net, input_shape=(None, 3), metadata={"step": 2})
    net = fn.serial(fn.Dense(2), fn.Relu())
    like = {
        "params": ({"b": jnp.zeros(2), "w": jnp.zeros((3, 2))}, {}),
        "bf16": jnp.zeros(3, jnp.bfloat16),
        "c64": np.zeros(2, np.complex64),
        "key": jax.random.key(0),
        "py": (0, 0.0, False),
        "empty": np.zeros((0, 2), np.int32),
    }
    got = fn.load(V1_FILE, like=like, net=net, input_shape=(None, 3))
    np.testing.assert_array_equal(got["params"][0]["b"], [0.0, 0.0])
    np.testing.assert_allclose(got["params"][0]["w"][0], [-0.47603673, 0.63118953], rtol=1e-6)
    np.testing.assert_array_equal(got["bf16"].astype(np.float32), [1.5, -2.0, 0.25])
    np.testing.assert_array_equal(got["c64"], np.asarray([1 + 2j, -3j], np.complex64))
    np.testing.assert_array_equal(jax.random.key_data(got["key"]), [0, 7])
    assert got["py"] == (3, 0.5, True) and [type(v) for v in got["py"]] == [int, float, bool]
    assert got["empty"].shape == (0, 2)
    info = fn.checkpoint_info(V1_FILE)
    assert info.history == {"loss": [1.0, 0.5]} and info.metadata == {"step": 2}
    # Its checksum (version 1's formula) is still checked.
    raw = bytearray(V1_FILE.read_bytes())
    raw[-1] ^= 0x01
    (tmp_path / "v1.safetensors").write_bytes(bytes(raw))
    with pytest.raises(fn.CheckpointError, match="its sha256 checksum does not match its contents"):
        fn.load(tmp_path / "v1.safetensors")


def test_history_model_and_metadata_are_kept(tmp_path):
    path = fn.save(
        tmp_path / "m.safetensors",
        train_state(),
        history={"loss": [0.5, float("nan")]},
        net=NET,
        input_shape=SHAPE,
        metadata={"epoch": 2, "lr": np.float32(0.5), "tags": ("a", "b")},
    )
    info = fn.checkpoint_info(path)
    assert info.history["loss"][0] == 0.5 and np.isnan(info.history["loss"][1])
    assert info.metadata == {"epoch": 2, "lr": 0.5, "tags": ["a", "b"]}
    assert info.model["input_shape"] == [None, 3]
    assert info.model["layers"][0] == ["serial[0].Dense", [None, 4], 16]
    assert info.entries[".params[0]['w']"] == ((3, 4), "float32")
    assert info.entries[".key"] == ((), "key<threefry2x32>")
    assert describe_model(NET, SHAPE) == info.model


# --------------------------------------------------------------------------
# Mismatches


def test_load_reports_every_difference_by_path(tmp_path):
    fn.save(tmp_path / "ts.safetensors", train_state())
    other = fn.serial(fn.Dense(5), fn.BatchNorm(), fn.Dropout(0.5), fn.Dense(1, dtype=None))
    like = fn.init_train_state(other, optax.sgd(0.1), SHAPE)
    like = like._replace(step=jnp.float32(0), key=jnp.zeros(2, jnp.uint32))
    with pytest.raises(fn.CheckpointMismatchError) as info:
        fn.load(tmp_path / "ts.safetensors", like=like)
    diffs = info.value.differences
    assert ".params[0]['w']: shape (3, 4) in the file, (3, 5) expected" in diffs
    assert ".state[1]['mean']: shape (4,) in the file, (5,) expected" in diffs
    assert ".step: dtype int32 in the file, float32 expected" in diffs
    assert ".key: shape () in the file, (2,) expected" in diffs
    assert ".key: dtype key<threefry2x32> in the file, uint32 expected" in diffs
    assert ".opt_state[0].mu[0]['w']: in the file but not in `like`" in diffs
    assert str(info.value).startswith(
        f"load: {tmp_path / 'ts.safetensors'} does not match `like` ("
    )
    assert str(info.value).endswith(
        "Build `like` from the same model, optimizer and input shape as the saved run."
    )
    with pytest.raises(fn.CheckpointMismatchError, match=r"\['extra'\]: missing from the file"):
        fn.load(tmp_path / "ts.safetensors", like={**train_state()._asdict(), "extra": 1})


def test_a_different_model_is_reported_layer_by_layer(tmp_path):
    fn.save(tmp_path / "m.safetensors", train_state().params, net=NET, input_shape=SHAPE)
    wider = fn.serial(fn.Dense(4), fn.BatchNorm(), fn.Dropout(0.5), fn.Dense(2))
    with pytest.raises(fn.CheckpointMismatchError) as info:
        fn.load(tmp_path / "m.safetensors", net=wider, input_shape=SHAPE)
    assert info.value.differences == [
        "model: layer 3 is serial[3].Dense [None, 1] (5 params) in the file, "
        "serial[3].Dense [None, 2] (10 params) expected"
    ]
    assert "The file was saved from the model:\n  serial[0].Dense [None, 4] (16 params)" in str(
        info.value
    )
    with pytest.raises(
        fn.CheckpointMismatchError,
        match=r"model: input shape \[None, 3\] in the file, \[None, 2\] expected",
    ):
        fn.load(tmp_path / "m.safetensors", net=NET, input_shape=(None, 2))
    params = fn.load(
        tmp_path / "m.safetensors", like=train_state().params, net=NET, input_shape=SHAPE
    )
    assert_same(params, train_state().params)


# --------------------------------------------------------------------------
# Damaged and foreign files


@pytest.fixture
def small_file(tmp_path):
    tree = {"w": jnp.arange(6.0).reshape(2, 3), "k": jax.random.key(0), "n": 3}
    path = fn.save(tmp_path / "small.safetensors", tree, history={"loss": [0.1]})
    return path, tree


def test_every_truncation_is_a_clear_error(small_file):
    path, tree = small_file
    raw = path.read_bytes()
    for cut in range(len(raw)):
        path.write_bytes(raw[:cut])
        with pytest.raises(
            fn.CheckpointError, match=rf"^load: {path} is (not a funcnet checkpoint|truncated)"
        ):
            fn.load(path, like=tree)
    path.write_bytes(raw)
    assert_same(fn.load(path, like=tree), tree)


def test_every_flipped_byte_is_a_clear_error(small_file):
    path, tree = small_file
    raw = path.read_bytes()
    for i in range(len(raw)):
        damaged = bytearray(raw)
        damaged[i] ^= 0xFF
        path.write_bytes(bytes(damaged))
        with pytest.raises(
            fn.CheckpointError,
            match=rf"^load: {path} is (not a funcnet checkpoint|truncated|corrupted)",
        ):
            fn.load(path, like=tree)


def test_a_flipped_data_bit_fails_the_checksum(small_file):
    path, tree = small_file
    raw = bytearray(path.read_bytes())
    raw[-30] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(fn.CheckpointError, match="its sha256 checksum does not match its contents"):
        fn.load(path, like=tree)


def test_foreign_files_are_rejected(tmp_path):
    cases = {
        "empty": b"",
        "text.json": b'{"w": [1, 2, 3]}',
        "random.bin": np.random.default_rng(0).bytes(500),
    }
    np.savez(tmp_path / "arrays.npz", w=np.ones(3))
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    (tmp_path / "plain.safetensors").write_bytes(
        struct.pack("<Q", len(header)) + header + b"\0" * 4
    )
    for name in [*cases, "arrays.npz"]:
        with pytest.raises(
            fn.CheckpointError, match=rf"^load: {tmp_path / name} is not a funcnet checkpoint"
        ):
            fn.load(tmp_path / name)
    with pytest.raises(
        fn.CheckpointError,
        match=r"it has no safetensors header with funcnet metadata\. Was it written by funcnet\.save\?",
    ):
        fn.load(tmp_path / "plain.safetensors")
    with pytest.raises(
        FileNotFoundError, match=r"^load: no checkpoint at .*missing\.safetensors\.$"
    ):
        fn.load(tmp_path / "missing.safetensors")


def test_a_header_safetensors_cannot_parse_is_named_with_its_reason(small_file):
    path, tree = small_file
    raw = bytearray(path.read_bytes())
    raw[8] = ord("[")  # the JSON header no longer opens an object
    path.write_bytes(bytes(raw))
    with pytest.raises(
        fn.CheckpointError,
        match=rf"^load: {path} is not a funcnet checkpoint, or it is corrupted: the safetensors "
        r"package cannot read it \(.+\)\.$",
    ):
        fn.load(path, like=tree)
    with pytest.raises(fn.CheckpointError, match=rf"^load: {path} is not a funcnet checkpoint"):
        fn.checkpoint_info(path)


def test_a_newer_format_version_is_named(small_file):
    path, _ = small_file
    header, data = read_header(path)
    meta = json.loads(header["__metadata__"]["funcnet"])
    meta["version"] = 3
    header["__metadata__"]["funcnet"] = json.dumps(meta)
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    with pytest.raises(
        fn.CheckpointError,
        match=r"is a funcnet-checkpoint of version 3; this funcnet reads versions 1 to 2\. Load it with the funcnet version that wrote it\.$",
    ):
        fn.load(path)


def test_a_header_that_lies_about_the_layout_is_caught_before_reading(small_file):
    path, _ = small_file
    header, data = read_header(path)
    header["w"]["shape"] = [3, 2]  # the same bytes, but the table now disagrees with the entries
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    with pytest.raises(
        fn.CheckpointError, match=r"is corrupted: the bytes of 'w' are not where its shape \(2, 3\)"
    ):
        fn.load(path)


# --------------------------------------------------------------------------
# Atomic writes


def test_a_crash_while_writing_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ts.safetensors"
    old = train_state()
    fn.save(path, old)
    new = old._replace(step=jnp.int32(99))

    def crash(*args):
        raise KeyboardInterrupt("the power went out")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        fn.save(path, new)
    monkeypatch.undo()
    assert_same(fn.load(path, like=old), old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ts.safetensors"]  # no temporary left
    fn.save(path, new)
    assert int(fn.load(path, like=old).step) == 99


def test_save_fsyncs_the_file_before_renaming_it(tmp_path, monkeypatch):
    events = []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("replace"), replace(a, b))[1])
    fn.save(tmp_path / "x.safetensors", {"w": jnp.ones(2)})
    assert events == ["fsync", "replace", "fsync"]  # the file, the rename, the directory


# --------------------------------------------------------------------------
# What save refuses


def test_save_errors(tmp_path):
    with pytest.raises(
        TypeError,
        match=r"^save: the leaf at \['name'\] is a str; a checkpoint holds arrays, PRNG keys and Python numbers\. Put other values in metadata=\.\.\. \(JSON\)\.$",
    ):
        fn.save(tmp_path / "a.safetensors", {"name": "net"})
    with pytest.raises(TypeError, match=r"^save: metadata must hold JSON values only"):
        fn.save(tmp_path / "a.safetensors", {}, metadata={"f": print})
    with pytest.raises(TypeError, match=r"^save: metadata must be a dict, got list\.$"):
        fn.save(tmp_path / "a.safetensors", {}, metadata=[1])
    with pytest.raises(TypeError, match=r"^save: dict keys must be str or int, got \(1, 2\)\.$"):
        fn.save(tmp_path / "a.safetensors", {(1, 2): jnp.ones(1)})
    with pytest.raises(
        TypeError, match=r"^save: the array at \['s'\] has dtype <U1, which is not numeric\.$"
    ):
        fn.save(tmp_path / "a.safetensors", {"s": np.array(["a"])})
    with pytest.raises(ValueError, match=r"^save: net needs input_shape too"):
        fn.save(tmp_path / "a.safetensors", {}, net=NET)
    with pytest.raises(ValueError, match=r"^load: net needs input_shape too"):
        fn.load(fn.save(tmp_path / "b.safetensors", {}), net=NET)
    assert not (tmp_path / "a.safetensors").exists()


def test_save_into_a_directory_names_the_directory_and_the_fix(tmp_path):
    with pytest.raises(
        IsADirectoryError,
        match=r"^save: .* is a directory; save writes one file\. Give a file path such as "
        r".*checkpoint\.safetensors, or use CheckpointManager\(.*\)\.save\(step, tree\) for "
        r"numbered checkpoints in that directory\.$",
    ):
        fn.save(tmp_path, {"w": jnp.ones(2)})
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind
    net = fn.Dense(2)
    _, params, state = net.init(jax.random.key(0), (None, 3))
    with pytest.raises(IsADirectoryError, match=r"^export: .* is a directory; export writes one"):
        fn.export(net, params, state, (None, 3), tmp_path)


# --------------------------------------------------------------------------
# load(directory): the newest checkpoint, as fit(checkpoint=directory) writes them


def test_load_of_a_directory_reads_its_newest_checkpoint(tmp_path):
    manager = fn.CheckpointManager(tmp_path, max_to_keep=None)
    for step in (3, 12, 9):
        manager.save(step, {"w": jnp.full(2, float(step))})
    (tmp_path / "notes.safetensors").write_bytes(b"not numbered, not read")
    np.testing.assert_array_equal(fn.load(tmp_path)["w"], [12.0, 12.0])
    np.testing.assert_array_equal(fn.load(tmp_path, like={"w": jnp.zeros(2)})["w"], [12.0, 12.0])
    assert fn.checkpoint_info(tmp_path).path == manager.latest()


def test_load_of_a_directory_without_checkpoints_says_what_it_looked_for(tmp_path):
    with pytest.raises(
        FileNotFoundError,
        match=r"^load: no checkpoint in .*: a directory is read as fit\(checkpoint=\.\.\.\) and "
        r"CheckpointManager write it \(its newest ckpt-<step>\.safetensors file\), and it holds "
        r"none\.$",
    ):
        fn.load(tmp_path)
    fn.save(tmp_path / "model.safetensors", {"w": jnp.ones(2)})
    with pytest.raises(
        FileNotFoundError,
        match=r"and it holds none\. It holds model\.safetensors: give one file's path, e\.g\. "
        r"load\('.*model\.safetensors'\), or for numbered files with another prefix, "
        r"CheckpointManager\(directory, prefix=\.\.\.\)\.restore\(like\)\.$",
    ):
        fn.load(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"^checkpoint_info: no checkpoint in "):
        fn.checkpoint_info(tmp_path / "..")


def test_the_model_description_also_works_for_inits_that_need_concrete_values():
    # This init calls numpy on the key, which jax.eval_shape cannot trace.
    odd = fn.custom_layer(
        lambda p, x: x * p["s"][None, :],
        lambda key, shape: {
            "s": np.asarray(jax.random.key_data(key)[:1], np.float32).repeat(shape[-1])
        },
        name="Odd",
    )
    assert describe_model(fn.serial(odd, fn.Dense(2)), (None, 3)) == {
        "input_shape": [None, 3],
        "layers": [["serial[0].Odd", [None, 3], 3], ["serial[1].Dense", [None, 2], 8]],
    }
