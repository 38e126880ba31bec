"""The bytes of a funcnet checkpoint: a safetensors file, written atomically and checked.

The ``safetensors`` package writes and parses the file. funcnet adds, in the
header's ``__metadata__``:

* ``"funcnet"``: a JSON string with the format name and version, one entry per
  leaf (its name in the file, tree path as ``[kind, value]`` steps, kind
  ``array``/``key``/``int``/``float``/``bool``, logical dtype and shape, stored
  dtype and shape), the history, the model description and the user metadata;
* ``"funcnet.sha256"``: a sha256 over that JSON (canonical form) and then every
  leaf's bytes in entry order, so any change to the file is caught.

Dtypes safetensors does not name (complex) are stored as raw ``U8`` bytes;
their real dtype is in funcnet's entry. Version 1 files (written by funcnet's
own writer, before it used the package) have the same layout and still load.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jax
import ml_dtypes
import numpy as np
import safetensors
import safetensors.numpy

from funcnet._src.core import is_key

FORMAT = "funcnet-checkpoint"
VERSION = 2  # 2: written by the safetensors package, whose tensor order is its own
READABLE_VERSIONS = (1, 2)
_MAX_HEADER = 100_000_000  # as safetensors: a longer "header" means a foreign file

# numpy dtype name -> safetensors dtype code, for the dtypes stored natively
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


def _nbytes(dtype_name: str, shape: list[int]) -> int:
    # Python ints: numpy's int64 product wraps around for a hostile shape such as [2**32, 2**32]
    return math.prod(shape) * dtype_from_name(dtype_name).itemsize


def _in_file(dtype_name: str, shape: list[int]) -> tuple[str, list[int]]:
    """The safetensors ``(dtype code, shape)`` of a leaf stored as ``dtype_name`` and ``shape``."""
    code = CODES.get(dtype_name)
    return (code, list(shape)) if code is not None else ("U8", [_nbytes(dtype_name, shape)])


def _digest(meta: dict[str, Any], data: Iterable[Any]) -> str:
    """funcnet's checksum of its metadata and the leaves' bytes, in entry order."""
    digest = hashlib.sha256()
    if meta.get("version") == 1:
        # Version 1 also hashed its tensor table first, which its entries determine:
        # the leaves back to back in entry order.
        table, offset = {}, 0
        for entry in meta["entries"]:
            code, shape = _in_file(*entry["stored"])
            nbytes = _nbytes(*entry["stored"])
            table[entry["name"]] = {
                "dtype": code,
                "shape": shape,
                "data_offsets": [offset, offset + nbytes],
            }
            offset += nbytes
        digest.update(_canonical(table))
    digest.update(_canonical(meta))
    for chunk in data:
        digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------
# Writing


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to; on success it replaces ``path``.

    The temporary file is in the same directory (``.<name>.<random>.tmp``);
    after the body writes it, it is fsynced and renamed over ``path``, then
    the directory is fsynced, so a crash or power cut leaves the old file or
    the new one, never a mix. If the body raises, the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDWR)  # writable: Windows refuses to fsync a read-only handle
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_atomic(path: str | os.PathLike, chunks: Iterable[Any]) -> Path:
    """Writes ``chunks`` (bytes-like) to ``path`` so a crash leaves the old file or the new one."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        for chunk in chunks:
            f.write(chunk)
    return Path(path)


def write(path: str | os.PathLike, tree: Any, fields: dict[str, Any]) -> Path:
    """Writes ``tree``'s leaves plus funcnet's metadata ``fields`` to ``path``, atomically."""
    tensors: dict[str, np.ndarray] = {}
    entries = []
    for keys, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        components = [path_component(k) for k in keys]
        stored = _stored(keystr(components), leaf)
        signature = leaf_signature(leaf)
        assert signature is not None  # _stored refuses leaves without one
        kind, shape, dtype_name = signature
        name = "/".join(str(c[1]) for c in components) or "(root)"
        while name in tensors or name == "__metadata__":
            name += "~"
        # safetensors names bfloat16 and float8 by their numpy (ml_dtypes) names; other
        # dtypes it does not know go in as their raw bytes.
        tensors[name] = stored if stored.dtype.name in CODES else stored.reshape(-1).view(np.uint8)
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
    meta = {"format": FORMAT, "version": VERSION, "entries": entries, **fields}
    try:
        meta_text = _canonical(meta).decode()
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"save: metadata must hold JSON values only (dicts, lists, strings, numbers): {error}."
        ) from None
    data = [a.reshape(-1).view(np.uint8).data for a in tensors.values()]
    header = {"funcnet": meta_text, "funcnet.sha256": _digest(meta, data)}
    with atomic_path(path) as tmp:
        safetensors.numpy.save_file(tensors, tmp, metadata=header)
    return Path(path)


# --------------------------------------------------------------------------
# Reading
#
# The arrays are read with ``safetensors.deserialize``, which returns every
# tensor's raw bytes with its dtype code: ``safetensors.numpy.load`` and
# ``safe_open(framework="np")`` build numpy arrays and (in some versions) know
# neither bfloat16 nor float8. funcnet views the bytes with the dtype its entry names.


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        raise FileNotFoundError(f"load: no checkpoint at {path}.") from None


def _refused(path: Path, error: Exception) -> CheckpointError:
    """The error for a file the safetensors package refused, saying why in funcnet's words."""
    not_ours = f"load: {path} is not a funcnet checkpoint"
    size = _size(path)
    with open(path, "rb") as f:
        head = f.read(8)
        length = int.from_bytes(head, "little")
        header = f.read(length) if len(head) == 8 and length <= min(_MAX_HEADER, size - 8) else b""
    if len(head) < 8:
        return CheckpointError(f"{not_ours}: it holds {size} bytes, too few for a header.")
    if length > min(_MAX_HEADER, size - 8):
        return CheckpointError(
            f"{not_ours}, or it is truncated: its first 8 bytes announce a {length}-byte "
            f"header but only {size - 8} bytes follow."
        )
    try:  # the common damage: a file cut short by a crash or a full disk
        table = json.loads(header)
        described = max(
            [0] + [t["data_offsets"][1] for k, t in table.items() if k != "__metadata__"]
        )
        follow = size - 8 - length
        if isinstance(described, int) and described != follow:
            return CheckpointError(
                f"load: {path} is {'truncated' if follow < described else 'corrupted'}: its "
                f"header describes {described} bytes of arrays but {follow} bytes follow it."
            )
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError):
        pass
    return CheckpointError(
        f"{not_ours}, or it is corrupted: the safetensors package cannot read it ({error})."
    )


def _funcnet_metadata(path: Path, extra: Any) -> tuple[dict[str, Any], Any]:
    """funcnet's metadata and digest from the header's ``__metadata__``, checked."""
    not_ours = f"load: {path} is not a funcnet checkpoint"
    try:
        meta = json.loads(extra["funcnet"])
        digest = extra.get("funcnet.sha256")
    except RecursionError:
        raise CheckpointError(
            f"{not_ours}: its funcnet metadata is nested too deeply to be JSON that funcnet wrote."
        ) from None
    except (ValueError, KeyError, TypeError, AttributeError):
        raise CheckpointError(
            f"{not_ours}: it has no safetensors header with funcnet metadata. Was it written "
            "by funcnet.save?"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{not_ours}: its metadata names no {FORMAT!r} format.")
    if meta.get("version") not in READABLE_VERSIONS:
        raise CheckpointError(
            f"load: {path} is a {FORMAT} of version {meta.get('version')!r}; this funcnet reads "
            f"versions {READABLE_VERSIONS[0]} to {VERSION}. Load it with the funcnet version "
            "that wrote it."
        )
    _check_metadata(path, meta)
    return meta, digest


# What each kind of leaf stores: Python numbers as one value of a fixed dtype.
_PYTHON_STORED = {"int": "int64", "float": "float64", "bool": "bool"}
_PATH_VALUES = {"key": (str, int), "index": (int,), "attr": (str,), "flat": (int,)}


def _is_shape(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value
    )


def _entry_problem(entry: Any) -> str | None:
    """What is wrong with one funcnet entry, or None.

    The declared kind, dtype and shape (what ``load`` compares with ``like``)
    must agree with what is stored, so a file cannot pass the check against
    ``like`` and then deliver different data.
    """
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        return f"an entry is {entry!r:.80}, not a leaf description"
    name = entry["name"]
    fields: list[Any] = [entry.get(k) for k in ("path", "kind", "dtype", "shape", "stored")]
    path, kind, dtype, shape, stored = fields
    if not isinstance(path, list) or not all(
        isinstance(c, list)
        and len(c) == 2
        and c[0] in _PATH_VALUES
        and isinstance(c[1], _PATH_VALUES[c[0]])
        and not isinstance(c[1], bool)
        for c in path
    ):
        return f"the entry {name!r} has the tree path {path!r:.80}"
    if kind not in ("array", "key", *_PYTHON_STORED):
        return f"the entry {name!r} has the unknown kind {kind!r:.40}"
    if not isinstance(dtype, str) or not _is_shape(shape):
        return f"the entry {name!r} declares dtype {dtype!r:.40} and shape {shape!r:.80}"
    if not (isinstance(stored, list) and len(stored) == 2 and _is_shape(stored[1])):
        return f"the entry {name!r} stores {stored!r:.80}, not [dtype, shape]"
    stored_dtype, stored_shape = stored
    try:
        dtype_from_name(stored_dtype)
    except CheckpointError as error:
        return f"the entry {name!r} stores {error}"
    stores = f"stores shape {tuple(stored_shape)} and dtype {stored_dtype}"
    if kind in _PYTHON_STORED:
        if dtype != kind or stored_shape or stored_dtype != _PYTHON_STORED[kind]:
            return f"the entry {name!r} is a Python {kind}, one value, but {stores}"
    elif kind == "key":
        # key_data: the key's shape plus the implementation's trailing axis, as uint32
        if (
            not (dtype.startswith("key<") and dtype.endswith(">"))
            or stored_dtype != "uint32"
            or len(stored_shape) != len(shape) + 1
            or stored_shape[: len(shape)] != shape
        ):
            return (
                f"the entry {name!r} declares a PRNG key of shape {tuple(shape)} ({dtype}) "
                f"but {stores}"
            )
    elif [dtype, shape] != stored:
        return f"the entry {name!r} declares shape {tuple(shape)} and dtype {dtype} but {stores}"
    return None


def _metadata_problem(meta: dict[str, Any]) -> str | None:
    """What is wrong with funcnet's metadata (beyond format and version), or None."""
    entries = meta.get("entries")
    if not isinstance(entries, list):
        return f"its entries are {entries!r:.80}, not a list"
    for entry in entries:
        if (problem := _entry_problem(entry)) is not None:
            return problem
    # Sorted, a path comes right before the paths it is a prefix of. A dict key may be a
    # str or an int, which do not compare: the value's type name goes first.
    paths = sorted(tuple((k, type(v).__name__, v) for k, v in e["path"]) for e in entries)
    for shorter, longer in itertools.pairwise(paths):
        if longer[: len(shorter)] == shorter:
            clash = "holds two leaves" if longer == shorter else "is both a leaf and a branch"
            return f"the tree path {keystr([[k, v] for k, _, v in shorter])} {clash}"
    history = meta.get("history", {})
    if not isinstance(history, dict) or not all(
        isinstance(values, list)
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        for values in history.values()
    ):
        return f"its history is {history!r:.80}, not lists of numbers by name"
    model = meta.get("model")
    if model is not None and not (
        isinstance(model, dict)
        and "input_shape" in model
        and isinstance(model.get("layers"), list)
        and all(isinstance(r, list) and len(r) == 3 for r in model["layers"])
    ):
        return f"its model description is {model!r:.80}"
    if not isinstance(meta.get("metadata", {}), dict):
        return f"its user metadata is {meta.get('metadata')!r:.80}, not a dict"
    return None


def _check_metadata(path: Path, meta: dict[str, Any]) -> None:
    """Refuses funcnet metadata that is malformed or contradicts itself."""
    if (problem := _metadata_problem(meta)) is not None:
        raise CheckpointError(f"load: {path} is corrupted: {problem}.")


def _check_layout(path: Path, table: dict[str, tuple[str, list[int]]], meta: dict[str, Any]):
    """Checks that funcnet's entries name exactly the file's tensors, with their dtypes and shapes.

    ``table`` maps each tensor in the file to its safetensors dtype code and shape.
    """
    broken = f"load: {path} is corrupted"
    try:
        names = [e["name"] for e in meta["entries"]]
        if sorted(names) != sorted(table) or len(set(names)) != len(names):
            raise CheckpointError(f"{broken}: its tensor table and its funcnet entries disagree.")
        for entry in meta["entries"]:
            dtype_name, shape = entry["stored"]
            if not all(isinstance(d, int) and d >= 0 for d in shape):
                raise CheckpointError(f"{broken}: {entry['name']!r} has shape {shape}.")
            code, shape_in_file = table[entry["name"]]
            if (code, list(shape_in_file)) != _in_file(dtype_name, shape):
                raise CheckpointError(
                    f"{broken}: the bytes of {entry['name']!r} are not where its shape "
                    f"{tuple(shape)} and dtype {dtype_name} put them."
                )
    except CheckpointError as error:
        if str(error).startswith("load: "):
            raise
        raise CheckpointError(f"{broken}: {error}.") from None
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{broken}: its header is malformed ({error!r}).") from None


def read_metadata(path: Path) -> dict[str, Any]:
    """funcnet's metadata, from the header alone (checked, but not against the digest)."""
    _size(path)
    try:
        with safetensors.safe_open(path, framework="np") as f:
            extra = f.metadata()
            table = {k: (f.get_slice(k).get_dtype(), f.get_slice(k).get_shape()) for k in f.keys()}
    except safetensors.SafetensorError as error:
        raise _refused(path, error) from None
    meta, _ = _funcnet_metadata(path, extra)
    _check_layout(path, table, meta)
    return meta


def read_arrays(path: Path) -> tuple[list[tuple[dict[str, Any], np.ndarray]], dict[str, Any]]:
    """Every entry with its host array, and funcnet's metadata, after checking the digest."""
    _size(path)
    data = path.read_bytes()
    try:
        tensors = dict(safetensors.deserialize(data))
    except safetensors.SafetensorError as error:
        raise _refused(path, error) from None
    # deserialize checked the header; it returns the tensors but not the metadata.
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    del data
    meta, digest = _funcnet_metadata(path, header.get("__metadata__"))
    _check_layout(path, {k: (t["dtype"], t["shape"]) for k, t in tensors.items()}, meta)
    raw = [tensors[entry["name"]]["data"] for entry in meta["entries"]]
    try:
        computed = _digest(meta, raw)
    except RecursionError:
        raise CheckpointError(
            f"load: {path} is not a funcnet checkpoint: its funcnet metadata is nested too "
            "deeply to be JSON that funcnet wrote."
        ) from None
    if computed != digest:
        raise CheckpointError(
            f"load: {path} is corrupted: its sha256 checksum does not match its contents."
        )
    out = []
    for entry, buffer in zip(meta["entries"], raw):
        dtype_name, shape = entry["stored"]
        array = np.frombuffer(buffer, dtype=dtype_from_name(dtype_name))
        out.append((entry, array.reshape(tuple(shape))))
    return out, meta
