"""Hostile and damaged checkpoint files: every one is a CheckpointError naming the file.

Each file here is built by hand, byte by byte: 8 bytes of header length, the
safetensors JSON header (with funcnet's metadata and a *correct* sha256 over
it, as an attacker or a buggy writer would compute), then the data. The
checksum catches damage, not lies, so what the header claims must itself be
checked against what the file stores.
"""

from __future__ import annotations

import hashlib
import json
import struct
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import funcnet as fn


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def entry(name, *, kind="array", dtype="float32", shape=(), stored=None, path=None):
    return {
        "name": name,
        "path": path if path is not None else [["key", name]],
        "kind": kind,
        "dtype": dtype,
        "shape": list(shape),
        "stored": stored if stored is not None else [dtype, list(shape)],
    }


def write_file(path, tensors, entries, *, meta_extra=None, funcnet_text=None, digest=None):
    """Writes a safetensors file by hand.

    ``tensors``: ``[(name, safetensors dtype code, shape, raw bytes)]``;
    ``entries``: funcnet's entries. The funcnet digest is computed as funcnet
    does (canonical metadata, then each entry's bytes), so only the lie under
    test is wrong.
    """
    meta = {
        "format": "funcnet-checkpoint",
        "version": 2,
        "entries": entries,
        "history": {},
        "model": None,
        "metadata": {},
        **(meta_extra or {}),
    }
    data_of = {name: raw for name, _, _, raw in tensors}
    if digest is None:
        sha = hashlib.sha256(canonical(meta))
        for e in entries if isinstance(entries, list) else []:
            sha.update(data_of.get(e["name"], b"") if isinstance(e, dict) else b"")
        digest = sha.hexdigest()
    table, offset, body = {}, 0, b""
    for name, code, shape, raw in tensors:
        table[name] = {
            "dtype": code,
            "shape": list(shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        offset += len(raw)
        body += raw
    text = funcnet_text if funcnet_text is not None else json.dumps(meta)
    table["__metadata__"] = {"funcnet": text, "funcnet.sha256": digest}
    header = json.dumps(table).encode()
    header += b" " * (-len(header) % 8)
    path.write_bytes(struct.pack("<Q", len(header)) + header + body)
    return path


def valid_file(path, value=1.0):
    raw = np.full((2,), value, np.float32).tobytes()
    return write_file(path, [("w", "F32", (2,), raw)], [entry("w", shape=(2,))])


def test_the_hand_built_file_is_itself_valid(tmp_path):
    path = valid_file(tmp_path / "ok.safetensors")
    np.testing.assert_array_equal(fn.load(path)["w"], [1.0, 1.0])
    np.testing.assert_array_equal(fn.load(path, like={"w": jnp.zeros(2)})["w"], [1.0, 1.0])


def test_deeply_nested_funcnet_metadata_is_a_checkpoint_error(tmp_path):
    path = valid_file(tmp_path / "deep.safetensors")
    deep = "[" * 100_000 + "]" * 100_000
    write_file(path, [], [], funcnet_text=deep)
    with pytest.raises(
        fn.CheckpointError,
        match=r"^load: .*deep\.safetensors is not a funcnet checkpoint: its funcnet metadata "
        r"is nested too deeply to be JSON that funcnet wrote\.$",
    ):
        fn.load(path)
    with pytest.raises(fn.CheckpointError, match="nested too deeply"):
        fn.checkpoint_info(path)


def test_metadata_nested_as_deep_as_save_writes_still_loads(tmp_path):
    # The depth limits refuse only what no save wrote: deep (but sane) user metadata round-trips.
    nested = {"a": None}
    for _ in range(300):
        nested = {"a": nested}
    path = fn.save(tmp_path / "nested.safetensors", {"w": jnp.ones(2)}, metadata=nested)
    assert fn.checkpoint_info(path).metadata == nested
    np.testing.assert_array_equal(fn.load(path)["w"], [1.0, 1.0])


def test_a_deeply_nested_safetensors_header_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "deep-header.safetensors"
    header = b'{"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    header += b" " * (-len(header) % 8)
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(
        fn.CheckpointError, match=r"^load: .*deep-header\.safetensors is not a funcnet checkpoint"
    ):
        fn.load(path)
    with pytest.raises(fn.CheckpointError, match=r"deep-header\.safetensors"):
        fn.checkpoint_info(path)


def test_the_manager_falls_back_past_a_deeply_nested_newest_file(tmp_path):
    manager = fn.CheckpointManager(tmp_path)
    manager.save(1, {"w": jnp.full(2, 1.0)})
    write_file(manager.path(2), [], [], funcnet_text="[" * 100_000 + "]" * 100_000)
    with pytest.warns(UserWarning, match=r"ckpt-00000002\.safetensors .*nested too deeply"):
        restored, info = manager.restore({"w": jnp.zeros(2)})
    assert info.metadata["step"] == 1
    np.testing.assert_array_equal(restored["w"], [1.0, 1.0])


def test_sizes_that_overflow_64_bits_are_a_checkpoint_error(tmp_path):
    # complex64 is stored as raw bytes; 2**32 * 2**32 * 8 bytes wraps to 0 in 64-bit arithmetic.
    huge = [2**32, 2**32]
    path = write_file(
        tmp_path / "huge.safetensors",
        [("z", "U8", (0,), b"")],
        [entry("z", dtype="complex64", shape=huge)],
    )
    with pytest.raises(fn.CheckpointError, match=r"^load: .*huge\.safetensors is corrupted: "):
        fn.load(path)
    with pytest.raises(fn.CheckpointError, match=r"huge\.safetensors is corrupted"):
        fn.checkpoint_info(path)


def test_a_dimension_beyond_64_bits_is_a_checkpoint_error(tmp_path):
    # the funcnet entry declares a dimension past 2**64 for an empty stored array
    path = write_file(
        tmp_path / "beyond.safetensors",
        [("w", "F32", (0,), b"")],
        [entry("w", shape=(2**70, 0), stored=["float32", [0]])],
    )
    with pytest.raises(
        fn.CheckpointError,
        match=r"^load: .*beyond\.safetensors is corrupted: the entry 'w' declares shape "
        r"\(1180591620717411303424, 0\) and dtype float32 but stores shape \(0,\) and dtype float32\.$",
    ):
        fn.load(path)


def test_a_declared_shape_and_dtype_that_differ_from_the_stored_ones_are_refused(tmp_path):
    # The header says float32 (3, 16); the bytes are int32 (16, 3). Before, load(like=...)
    # compared `like` with the declaration and returned the int32 (16, 3) array.
    raw = np.arange(48, dtype=np.int32).reshape(16, 3).tobytes()
    path = write_file(
        tmp_path / "lies.safetensors",
        [("w", "I32", (16, 3), raw)],
        [entry("w", dtype="float32", shape=(3, 16), stored=["int32", [16, 3]])],
    )
    message = (
        r"^load: .*lies\.safetensors is corrupted: the entry 'w' declares shape \(3, 16\) and "
        r"dtype float32 but stores shape \(16, 3\) and dtype int32\.$"
    )
    with pytest.raises(fn.CheckpointError, match=message):
        fn.load(path, like={"w": jnp.zeros((3, 16), jnp.float32)})
    with pytest.raises(fn.CheckpointError, match=message):
        fn.load(path)
    with pytest.raises(fn.CheckpointError, match=message):
        fn.checkpoint_info(path)


def test_a_scalar_leaf_holding_many_values_is_refused(tmp_path):
    raw = np.arange(5, dtype=np.int64).tobytes()
    path = write_file(
        tmp_path / "scalar.safetensors",
        [("n", "I64", (5,), raw)],
        [entry("n", kind="int", dtype="int", shape=(), stored=["int64", [5]])],
    )
    with pytest.raises(
        fn.CheckpointError,
        match=r"^load: .*scalar\.safetensors is corrupted: the entry 'n' is a Python int, "
        r"one value, but stores shape \(5,\) and dtype int64\.$",
    ):
        fn.load(path, like={"n": 0})


def test_a_key_whose_data_does_not_fit_its_shape_is_refused(tmp_path):
    raw = np.zeros((3, 2), np.uint32).tobytes()
    path = write_file(
        tmp_path / "key.safetensors",
        [("k", "U32", (3, 2), raw)],
        [entry("k", kind="key", dtype="key<fry>", shape=(5,), stored=["uint32", [3, 2]])],
    )
    with pytest.raises(fn.CheckpointError, match=r"^load: .*key\.safetensors is corrupted: "):
        fn.load(path)


@pytest.mark.parametrize(
    "broken",
    [
        {"entries": "w"},
        {"entries": [1]},
        {"entries": [{"name": "w"}]},
        {"entries": [entry("w", shape=(2,), path=[["nope", 1]])]},
        {"entries": [entry("w", shape=(2,), path=[["key", [1]]])]},
        {"entries": [entry("w", shape=(2,), kind="tuple")]},
        {"entries": [entry("w", shape=(2,), dtype="object")]},
        {"entries": [entry("w", shape=(2,), stored=["float32", "2"])]},
        {"entries": [entry("w", shape=(-2,), stored=["float32", [2]])]},
        {"history": {"loss": ["a"]}},
        {"history": [1]},
        {"metadata": [1]},
        {"model": "mlp"},
        {"model": {"input_shape": [None, 3], "layers": 5}},
    ],
)
def test_malformed_metadata_is_a_checkpoint_error(tmp_path, broken):
    raw = np.ones(2, np.float32).tobytes()
    entries = broken.pop("entries", [entry("w", shape=(2,))])
    path = write_file(
        tmp_path / "bad.safetensors", [("w", "F32", (2,), raw)], entries, meta_extra=broken
    )
    with pytest.raises(fn.CheckpointError, match=r"^load: .*bad\.safetensors is (corrupted|not a)"):
        fn.load(path)
    with pytest.raises(fn.CheckpointError, match=r"^load: .*bad\.safetensors is (corrupted|not a)"):
        fn.checkpoint_info(path)


def test_paths_that_clash_are_refused(tmp_path):
    raw = np.ones(2, np.float32).tobytes()
    for paths in ([[["key", "a"]], [["key", "a"], ["key", "b"]]], [[["key", "a"]], [["key", "a"]]]):
        path = write_file(
            tmp_path / "clash.safetensors",
            [("x", "F32", (2,), raw), ("y", "F32", (2,), raw)],
            [entry(n, shape=(2,), path=p) for n, p in zip("xy", paths)],
        )
        with pytest.raises(
            fn.CheckpointError,
            match=r"^load: .*clash\.safetensors is corrupted: the tree path \['a'\] "
            r"(holds two leaves|is both a leaf and a branch)\.$",
        ):
            fn.load(path)


def test_no_hostile_file_escapes_as_another_exception(tmp_path):
    """Every truncation of every hostile file above is a CheckpointError too."""
    raw = np.arange(48, dtype=np.int32).reshape(16, 3).tobytes()
    path = write_file(
        tmp_path / "h.safetensors",
        [("w", "I32", (16, 3), raw)],
        [entry("w", dtype="float32", shape=(3, 16), stored=["int32", [16, 3]])],
    )
    data = path.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for cut in range(0, len(data), 7):
            path.write_bytes(data[:cut])
            with pytest.raises(fn.CheckpointError):
                fn.load(path)


def test_paths_with_str_and_int_keys_side_by_side_are_checked_without_error(tmp_path):
    raw = np.ones(2, np.float32).tobytes()
    path = write_file(
        tmp_path / "mixed.safetensors",
        [("x", "F32", (2,), raw), ("y", "F32", (2,), raw)],
        [entry("x", shape=(2,), path=[["key", "a"]]), entry("y", shape=(2,), path=[["key", 1]])],
    )
    assert sorted(fn.load(path), key=str) == [1, "a"]
