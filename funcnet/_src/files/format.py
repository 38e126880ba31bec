"""The bytes of a funcnet checkpoint: the safetensors layout, atomic writes, integrity checks.

:mod:`funcnet.checkpoint` builds ``save`` and ``load`` on this module. A file is:

* 8 bytes: the header's length ``N``, a little-endian unsigned 64-bit integer;
* ``N`` bytes: a JSON object mapping each tensor's name to its ``dtype``
  (safetensors codes: ``F32``, ``BF16``, ``I32``, ...), ``shape`` and
  ``data_offsets`` (a byte range of the data), plus ``__metadata__``, a map of
  strings; padded with spaces so the data starts 8-byte aligned;
* the arrays' bytes, back to back, little-endian (the only byte order JAX runs on).

funcnet's own description is the JSON string ``__metadata__["funcnet"]``:
the format name and version, one entry per leaf (its name, tree path as
``[kind, value]`` steps, kind ``array``/``key``/``int``/``float``/``bool``,
logical dtype and shape, and the stored dtype and shape), the history, the
model description and the user metadata. ``__metadata__["funcnet.sha256"]``
is a sha256 over the canonical JSON of the tensor table and of funcnet's
metadata, then every data byte, so any change to the file is caught.

Dtypes safetensors does not name (complex) are stored as raw ``U8`` bytes;
their real dtype is in funcnet's entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jax
import ml_dtypes
import numpy as np

from funcnet._src.core import is_key

FORMAT = "funcnet-checkpoint"
VERSION = 1
_MAX_HEADER = 100_000_000  # as safetensors: a longer "header" means a foreign file

# numpy dtype name -> safetensors dtype code
CODES = {
    "bool": "BOOL",
    "uint8": "U8",
    "int8": "I8",
    "uint16": "U16",
    "int16": "I16",
    "float16": "F16",
    "bfloat16": "BF16",
    "uint32": "U32",
    "int32": "I32",
    "float32": "F32",
    "uint64": "U64",
    "int64": "I64",
    "float64": "F64",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
}


class CheckpointError(ValueError):
    """A file is not a readable funcnet checkpoint (missing, truncated, corrupted, foreign)."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint does not fit the tree (or model) it is loaded into.

    ``differences`` lists each difference, by tree path.
    """

    def __init__(self, message: str, differences: list[str]):
        super().__init__(message)
        self.differences = differences


# --------------------------------------------------------------------------
# Leaves, paths and JSON


def dtype_from_name(name: Any) -> np.dtype:
    """A numeric dtype from its name, refusing object, string and void dtypes."""
    if not isinstance(name, str):
        raise CheckpointError(f"a dtype name must be a string, got {name!r}")
    special = getattr(ml_dtypes, name, None)  # bfloat16, float8_*
    try:
        dtype = np.dtype(special if special is not None else name)
    except TypeError:
        raise CheckpointError(f"unknown dtype {name!r}") from None
    if dtype.kind not in "biufc" and special is None:
        raise CheckpointError(f"dtype {name!r} is not numeric")
    return dtype


def path_component(key: Any) -> list[Any]:
    """One step of a tree path as JSON: ``[kind, value]``."""
    if isinstance(key, jax.tree_util.DictKey):
        if not isinstance(key.key, (str, int)) or isinstance(key.key, bool):
            raise TypeError(f"save: dict keys must be str or int, got {key.key!r}.")
        return ["key", key.key]
    if isinstance(key, jax.tree_util.SequenceKey):
        return ["index", key.idx]
    if isinstance(key, jax.tree_util.GetAttrKey):
        return ["attr", key.name]
    if isinstance(key, jax.tree_util.FlattenedIndexKey):
        return ["flat", key.key]
    raise TypeError(f"save: unsupported pytree path entry {key!r}.")


def keystr(components: list[Any]) -> str:
    """A path as ``jax.tree_util.keystr`` writes it: ``.params[0]['w']``."""
    text = {"attr": ".{}", "index": "[{}]", "flat": "[<flat index {}>]"}
    out = [text[k].format(v) if k in text else f"[{v!r}]" for k, v in components]
    return "".join(out) or "(root)"


def _key_impl(leaf: Any) -> str:
    try:
        return str(jax.random.key_impl(leaf))
    except TypeError:  # an abstract key (ShapeDtypeStruct)
        return str(getattr(getattr(leaf.dtype, "_impl", None), "name", leaf.dtype))


def _is_python_number(leaf: Any) -> bool:
    return isinstance(leaf, (bool, int, float)) and not isinstance(leaf, np.generic)


def leaf_signature(leaf: Any) -> tuple[str, tuple[int, ...], str] | None:
    """``(kind, shape, dtype name)`` of a leaf, or None if it is no array, key or number."""
    if _is_python_number(leaf):
        return type(leaf).__name__, (), type(leaf).__name__
    if is_key(leaf):
        return "key", tuple(leaf.shape), f"key<{_key_impl(leaf)}>"
    if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
        return "array", tuple(leaf.shape), np.dtype(leaf.dtype).name
    return None


def _local(where: str, leaf: Any) -> Any:
    """``leaf`` as a value this process can read whole, or a clear error.

    An array replicated over several processes is read from a local copy; an
    array split across processes has pieces here that no save can complete.
    """
    if not isinstance(leaf, jax.Array) or leaf.is_fully_addressable:
        return leaf
    if leaf.is_fully_replicated:
        return leaf.addressable_data(0)
    raise ValueError(
        f"save: the array at {where} (shape {tuple(leaf.shape)}) is split across "
        f"{jax.process_count()} processes, and this process holds only its own pieces. Call "
        "gather_for_save(tree) on every process and save its result from process 0 "
        "(CheckpointManager.save and fit(checkpoint=...) do both)."
    )


def _stored(where: str, leaf: Any) -> np.ndarray:
    """The host array that represents ``leaf`` in the file."""
    if _is_python_number(leaf):
        return np.asarray(leaf, {bool: np.bool_, int: np.int64, float: np.float64}[type(leaf)])
    if is_key(leaf):
        return np.asarray(jax.device_get(jax.random.key_data(_local(where, leaf))))
    if leaf_signature(leaf) is None:
        raise TypeError(
            f"save: the leaf at {where} is a {type(leaf).__name__}; a checkpoint holds arrays, "
            "PRNG keys and Python numbers. Put other values in metadata=... (JSON)."
        )
    array = np.asarray(jax.device_get(_local(where, leaf)))
    try:
        dtype_from_name(array.dtype.name)
    except CheckpointError:
        raise TypeError(
            f"save: the array at {where} has dtype {array.dtype}, which is not numeric."
        ) from None
    # not np.ascontiguousarray, which turns a 0-d array into a 1-d one
    return array if array.flags.c_contiguous else array.copy(order="C")


def to_json(value: Any) -> Any:
    """Shapes, shape specs, tuples and numpy scalars as JSON values."""
    if isinstance(value, jax.ShapeDtypeStruct):
        return {"shape": list(value.shape), "dtype": np.dtype(value.dtype).name}
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [to_json(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _digest(table: dict[str, Any], meta: dict[str, Any], data: Iterable[Any]) -> str:
    digest = hashlib.sha256(_canonical(table))
    digest.update(_canonical(meta))
    for chunk in data:
        digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------
# Writing


def write_atomic(path: str | os.PathLike, chunks: Iterable[Any]) -> Path:
    """Writes ``chunks`` (bytes-like) to ``path`` so a crash leaves the old file or the new one.

    The bytes go to a temporary file in the same directory
    (``.<name>.<random>.tmp``), which is flushed, fsynced and renamed over
    ``path``; then the directory is fsynced, so the rename itself survives a
    power cut.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def encode(tree: Any, fields: dict[str, Any]) -> list[Any]:
    """The file's bytes, as chunks: ``tree``'s leaves plus funcnet's metadata ``fields``."""
    table: dict[str, Any] = {}
    entries, arrays, offset = [], [], 0
    for keys, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        components = [path_component(k) for k in keys]
        stored = _stored(keystr(components), leaf)
        kind, shape, dtype_name = leaf_signature(leaf)  # type: ignore[misc]
        name = "/".join(str(c[1]) for c in components) or "(root)"
        while name in table or name == "__metadata__":
            name += "~"
        code = CODES.get(stored.dtype.name, "U8")
        table[name] = {
            "dtype": code,
            "shape": list(stored.shape) if code != "U8" else [stored.nbytes],
            "data_offsets": [offset, offset + stored.nbytes],
        }
        offset += stored.nbytes
        entries.append(
            {
                "name": name,
                "path": components,
                "kind": kind,
                "dtype": dtype_name,
                "shape": list(shape),
                "stored": [stored.dtype.name, list(stored.shape)],
            }
        )
        arrays.append(stored)
    meta = {"format": FORMAT, "version": VERSION, "entries": entries, **fields}
    try:
        meta_text = _canonical(meta).decode()
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"save: metadata must hold JSON values only (dicts, lists, strings, numbers): {error}."
        ) from None
    data = [a.reshape(-1).view(np.uint8).data for a in arrays]
    extra = {"funcnet": meta_text, "funcnet.sha256": _digest(table, meta, data)}
    header = json.dumps({**table, "__metadata__": extra}).encode()
    header += b" " * (-len(header) % 8)  # the arrays start 8-byte aligned
    return [struct.pack("<Q", len(header)), header, *data]


# --------------------------------------------------------------------------
# Reading


def _parse_header(path: Path, f: Any, size: int) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """``(tensor table, funcnet metadata, digest)``, leaving ``f`` at the arrays' first byte."""
    not_ours = f"load: {path} is not a funcnet checkpoint"
    head = f.read(8)
    if len(head) < 8:
        raise CheckpointError(f"{not_ours}: it holds {size} bytes, too few for a header.")
    (length,) = struct.unpack("<Q", head)
    if length > min(_MAX_HEADER, size - 8):
        raise CheckpointError(
            f"{not_ours}, or it is truncated: its first 8 bytes announce a {length}-byte "
            f"header but only {size - 8} bytes follow."
        )
    try:
        table = json.loads(f.read(length))
        extra = table.pop("__metadata__")
        meta = json.loads(extra["funcnet"])
        digest = extra.get("funcnet.sha256")
    except (ValueError, KeyError, TypeError, AttributeError):
        raise CheckpointError(
            f"{not_ours}: it has no safetensors header with funcnet metadata. Was it written "
            "by funcnet.save?"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{not_ours}: its metadata names no {FORMAT!r} format.")
    if meta.get("version") != VERSION:
        raise CheckpointError(
            f"load: {path} is a {FORMAT} of version {meta.get('version')!r}; this funcnet reads "
            f"version {VERSION}. Load it with the funcnet version that wrote it."
        )
    _check_layout(path, table, meta, size - 8 - length)
    return table, meta, digest


def _check_layout(path: Path, table: dict[str, Any], meta: dict[str, Any], data_size: int) -> None:
    """Checks that the entries tile the arrays' bytes exactly and agree with the tensor table."""
    broken = f"load: {path} is corrupted"
    offset = 0
    try:
        if [e["name"] for e in meta["entries"]] != list(table):
            raise CheckpointError(f"{broken}: its tensor table and its funcnet entries disagree.")
        for entry in meta["entries"]:
            dtype_name, shape = entry["stored"]
            dtype = dtype_from_name(dtype_name)
            if not all(isinstance(d, int) and d >= 0 for d in shape):
                raise CheckpointError(f"{broken}: {entry['name']!r} has shape {shape}.")
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            code = CODES.get(dtype.name, "U8")
            expected = {
                "dtype": code,
                "shape": shape if code != "U8" else [nbytes],
                "data_offsets": [offset, offset + nbytes],
            }
            if table[entry["name"]] != expected:
                raise CheckpointError(
                    f"{broken}: the bytes of {entry['name']!r} are not where its shape "
                    f"{tuple(shape)} and dtype {dtype_name} put them."
                )
            offset += nbytes
    except CheckpointError as error:
        if str(error).startswith("load: "):
            raise
        raise CheckpointError(f"{broken}: {error}.") from None
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{broken}: its header is malformed ({error!r}).") from None
    if offset != data_size:
        what = "truncated" if data_size < offset else "corrupted"
        raise CheckpointError(
            f"load: {path} is {what}: its header describes {offset} bytes of arrays but "
            f"{data_size} bytes follow it."
        )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        raise FileNotFoundError(f"load: no checkpoint at {path}.") from None


def read_metadata(path: Path) -> dict[str, Any]:
    """funcnet's metadata, from the header alone (checked, but not against the digest)."""
    size = _size(path)
    with open(path, "rb") as f:
        return _parse_header(path, f, size)[1]


def read_arrays(path: Path) -> tuple[list[tuple[dict[str, Any], np.ndarray]], dict[str, Any]]:
    """Every entry with its host array, and funcnet's metadata, after checking the digest."""
    size = _size(path)
    with open(path, "rb") as f:
        table, meta, digest = _parse_header(path, f, size)
        data = f.read()
    if _digest(table, meta, [data]) != digest:
        raise CheckpointError(
            f"load: {path} is corrupted: its sha256 checksum does not match its contents."
        )
    out = []
    for entry in meta["entries"]:
        dtype_name, shape = entry["stored"]
        begin = table[entry["name"]]["data_offsets"][0]
        count = int(np.prod(shape, dtype=np.int64))
        array = np.frombuffer(data, dtype=dtype_from_name(dtype_name), count=count, offset=begin)
        out.append((entry, array.reshape(tuple(shape))))
    return out, meta
