"""``save`` and ``load``: checkpoints of any funcnet pytree, atomic and checked.

A checkpoint holds one pytree (a :class:`~funcnet.TrainState`, params, state,
an optax state, ...) with the training history, a description of the model
and user metadata, in a safetensors file (:mod:`funcnet._src.files.format`).
``load(path, like=tree)`` matches the file's leaves to ``like``'s by tree path
and reports every difference at once. Why this format, and what is
guaranteed: ``docs/checkpoints.md``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from funcnet._src.core import InputShape, Layer, record_layers
from funcnet._src.files.format import (
    CheckpointError,
    CheckpointMismatchError,
    keystr,
    leaf_signature,
    path_component,
    read_arrays,
    read_metadata,
    to_json,
    write,
)
from funcnet._src.files.numbering import DEFAULT_PREFIX, SUFFIX, numbered_files
from funcnet._src.parallel.sharding import put

__all__ = [
    "CheckpointError",
    "CheckpointInfo",
    "CheckpointMismatchError",
    "checkpoint_info",
    "describe_model",
    "load",
    "save",
]

_PYTHON = {"int": int, "float": float, "bool": bool}


class CheckpointInfo(NamedTuple):
    """What a checkpoint says about itself (read from its header alone).

    Attributes:
        path: the file.
        entries: ``{tree path: (shape, dtype name)}`` of every leaf, in order.
        history: the training history saved with it (``{}`` if none).
        model: the model description (:func:`describe_model`), or None.
        metadata: the user metadata (a dict of JSON values).
    """

    path: Path
    entries: dict[str, tuple[tuple[int, ...], str]]
    history: dict[str, list[float]]
    model: dict[str, Any] | None
    metadata: dict[str, Any]


def describe_model(net: Layer, input_shape: InputShape) -> dict[str, Any]:
    """A JSON description of a model: its input shape and one row per layer.

    Each row is ``[path, output shape, parameter count]``, as in
    :func:`funcnet.summary`, computed from shapes alone (``jax.eval_shape``).

    Example:
        >>> import funcnet as fn
        >>> describe_model(fn.serial(fn.Dense(2), fn.Relu()), (None, 3))["layers"]
        [['serial[0].Dense', [None, 2], 8], ['serial[1].Relu', [None, 2], 0]]
    """
    box: dict[str, Any] = {}

    def init_params(key: jax.Array) -> Any:
        box["output_shape"], params, _ = net.init(key, input_shape)
        return params

    try:
        with record_layers() as rows:
            params = jax.eval_shape(init_params, jax.random.key(0))
    except Exception:
        # A user's init may need concrete values (numpy on the key); then pay for a real init.
        with record_layers() as rows:
            params = init_params(jax.random.key(0))
    layers = [[r.path, to_json(r.output_shape), r.param_count] for r in rows]
    if not layers:
        count = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
        layers = [[net.name, to_json(box["output_shape"]), count]]
    return {"input_shape": to_json(input_shape), "layers": layers}


def model_differences(saved: dict[str, Any] | None, now: dict[str, Any]) -> list[str]:
    """How the model description ``saved`` (from a file, or None) differs from ``now``, row by row."""
    if saved is None:
        return []
    out = []
    if saved.get("input_shape") != now["input_shape"]:
        out.append(
            f"model: input shape {saved.get('input_shape')} in the file, "
            f"{now['input_shape']} expected"
        )
    old, new = saved.get("layers", []), now["layers"]

    def show(rows: list[Any], i: int) -> str:
        return f"{rows[i][0]} {rows[i][1]} ({rows[i][2]} params)" if i < len(rows) else "nothing"

    for i in range(max(len(old), len(new))):
        if (old[i] if i < len(old) else None) != (new[i] if i < len(new) else None):
            out.append(f"model: layer {i} is {show(old, i)} in the file, {show(new, i)} expected")
    return out


def save(
    path: str | os.PathLike,
    tree: Any,
    *,
    history: dict[str, list[float]] | None = None,
    net: Layer | None = None,
    input_shape: InputShape | None = None,
    metadata: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
) -> Path:
    """Writes ``tree`` with its history, model description and metadata to ``path``, atomically.

    Args:
        path: the file (conventionally ``*.safetensors``); it is replaced whole
            or not at all, and its directory is created if needed.
        tree: a pytree of arrays, typed PRNG keys and Python numbers: a
            :class:`~funcnet.TrainState`, params, ``(params, state)``, an optax state.
        history: per-epoch logs, as ``FitResult.history``.
        net: the model, described in the file (with ``input_shape``) so that
            ``load`` can check it.
        input_shape: the model's input shape (batch may be ``None``).
        metadata: a dict of JSON values (step numbers, hyperparameters, notes).
        model: a :func:`describe_model` result, instead of ``net`` and
            ``input_shape`` (to describe a model once for many saves).

    Returns:
        The path written.

    Example:
        >>> import os, tempfile, jax.numpy as jnp, funcnet as fn
        >>> path = os.path.join(tempfile.mkdtemp(), "params.safetensors")
        >>> _ = fn.save(path, {"w": jnp.ones((2, 3))}, metadata={"note": "demo"})
        >>> fn.load(path)["w"].shape
        (2, 3)
    """
    if Path(path).is_dir():
        raise IsADirectoryError(
            f"save: {path} is a directory; save writes one file. Give a file path such as "
            f"{Path(path) / 'checkpoint.safetensors'}, or use CheckpointManager({str(path)!r})"
            ".save(step, tree) for numbered checkpoints in that directory."
        )
    if net is not None and input_shape is None:
        raise ValueError("save: net needs input_shape too (the shape given to net.init).")
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"save: metadata must be a dict, got {type(metadata).__name__}.")
    fields = {
        "history": {str(k): [float(v) for v in vs] for k, vs in (history or {}).items()},
        "model": describe_model(net, input_shape) if net is not None else model,
        "metadata": to_json(dict(metadata or {})),
    }
    return write(path, tree, fields)


def _info(path: Path, meta: dict[str, Any]) -> CheckpointInfo:
    entries = {keystr(e["path"]): (tuple(e["shape"]), e["dtype"]) for e in meta["entries"]}
    history = meta.get("history") or {}
    return CheckpointInfo(path, entries, history, meta.get("model"), meta.get("metadata") or {})


def checkpoint_file(path: str | os.PathLike, who: str = "load") -> Path:
    """``path``, or for a directory its newest numbered checkpoint (as ``fit`` writes them).

    A directory is read as :class:`~funcnet.CheckpointManager` writes it:
    ``ckpt-<step>.safetensors`` files, of which the largest step is the newest.
    """
    path = Path(path)
    if not path.is_dir():
        return path
    steps = numbered_files(path)
    if steps:
        return steps[max(steps)]
    others = sorted(p.name for p in path.glob(f"*{SUFFIX}"))
    holds = (
        f" It holds {', '.join(others[:3])}{', ...' if len(others) > 3 else ''}: give one "
        f"file's path, e.g. {who}({str(path / others[0])!r}), or for numbered files with "
        "another prefix, CheckpointManager(directory, prefix=...).restore(like)."
        if others
        else ""
    )
    raise FileNotFoundError(
        f"{who}: no checkpoint in {path}: a directory is read as fit(checkpoint=...) and "
        f"CheckpointManager write it (its newest {DEFAULT_PREFIX}-<step>{SUFFIX} file), and "
        f"it holds none.{holds}"
    )


def checkpoint_info(path: str | os.PathLike) -> CheckpointInfo:
    """Reads a checkpoint's header: its entries, history, model description and metadata.

    Only the header is read and checked; :func:`load` also checks every byte.
    ``path`` may be a directory of numbered checkpoints: then its newest one
    is read, as :func:`load` does.

    Example:
        >>> import os, tempfile, jax.numpy as jnp, funcnet as fn
        >>> path = os.path.join(tempfile.mkdtemp(), "p.safetensors")
        >>> _ = fn.save(path, {"w": jnp.ones((2, 3))}, history={"loss": [0.5, 0.25]})
        >>> info = fn.checkpoint_info(path)
        >>> info.entries, info.history
        ({"['w']": ((2, 3), 'float32')}, {'loss': [0.5, 0.25]})
    """
    path = checkpoint_file(path, "checkpoint_info")
    return _info(path, read_metadata(path))


def _value(entry: dict[str, Any], array: np.ndarray, like_leaf: Any = None) -> Any:
    """The leaf that ``entry`` stands for, placed like ``like_leaf``."""
    kind = entry["kind"]
    if kind in _PYTHON:
        return _PYTHON[kind](array.item())
    if isinstance(like_leaf, np.ndarray):
        return array.copy()
    value = jnp.asarray(array)
    if kind == "key":
        impl = entry["dtype"][len("key<") : -1]
        try:
            value = jax.random.wrap_key_data(value, impl=impl)
        except (ValueError, TypeError, KeyError) as error:
            raise CheckpointError(
                f"load: the PRNG key at {keystr(entry['path'])} cannot be rebuilt: {error}"
            ) from None
    sharding = getattr(like_leaf, "sharding", None)
    deleted = isinstance(like_leaf, jax.Array) and like_leaf.is_deleted()
    if sharding is not None and not deleted and len(sharding.device_set) > 1:
        value = put(value, sharding)  # across processes, each builds only its own pieces
    return value


def _nested(items: list[tuple[dict[str, Any], np.ndarray]]) -> Any:
    root: dict[Any, Any] = {}
    for entry, array in items:
        components = entry["path"]
        if not components:
            return _value(entry, array)
        node = root
        for _, step in components[:-1]:
            node = node.setdefault(step, {})
        node[components[-1][1]] = _value(entry, array)
    return root


def _tree_differences(
    items: list[tuple[dict[str, Any], np.ndarray]], like: Any
) -> tuple[list[str], list[tuple[dict[str, Any], np.ndarray, Any]], Any]:
    """Differences between the file and ``like``, by path; the matched leaves; like's treedef."""
    saved = {json.dumps(entry["path"]): (entry, array) for entry, array in items}
    like_leaves, treedef = jax.tree_util.tree_flatten_with_path(like)
    differences, matched = [], []
    for keys, leaf in like_leaves:
        where = jax.tree_util.keystr(keys) or "(root)"
        found = saved.pop(json.dumps([path_component(k) for k in keys]), None)
        expected = leaf_signature(leaf)
        if found is None:
            differences.append(f"{where}: missing from the file")
        elif expected is None:
            differences.append(f"{where}: `like` holds a {type(leaf).__name__}, not an array")
        else:
            entry, array = found
            shape = tuple(entry["shape"])
            if shape != expected[1]:
                differences.append(f"{where}: shape {shape} in the file, {expected[1]} expected")
            if entry["dtype"] != expected[2]:
                differences.append(
                    f"{where}: dtype {entry['dtype']} in the file, {expected[2]} expected"
                )
            matched.append((entry, array, leaf))
    differences += [
        f"{keystr(entry['path'])}: in the file but not in `like`" for entry, _ in saved.values()
    ]
    return differences, matched, treedef


def load(
    path: str | os.PathLike,
    like: Any = None,
    *,
    net: Layer | None = None,
    input_shape: InputShape | None = None,
) -> Any:
    """Reads the pytree saved at ``path``, checked against ``like``.

    Args:
        path: a file written by :func:`save`, or a directory of numbered
            checkpoints (``fit(checkpoint=directory)``,
            :class:`~funcnet.CheckpointManager`): then its newest checkpoint,
            the one ``CheckpointManager(directory).latest()`` names, is read.
            (``CheckpointManager.restore`` also skips a damaged newest file.)
        like: a pytree of the expected structure, of arrays or
            ``jax.ShapeDtypeStruct``\\ s (e.g. a fresh ``init_train_state``, or
            its ``jax.eval_shape``): the file's leaves must match its paths,
            shapes and dtypes, and the result has its structure. None returns
            nested dicts keyed by field names, dict keys and sequence indices.
        net: if given (with ``input_shape``), the model described in the file
            must be this one.
        input_shape: the model's input shape.

    Returns:
        The pytree: jax arrays (numpy arrays where ``like`` has numpy arrays),
        PRNG keys and Python numbers.

    Raises:
        CheckpointMismatchError: listing every difference, by tree path.
        CheckpointError: the file is truncated, corrupted or not a checkpoint.
        FileNotFoundError: there is no file at ``path``, or no numbered
            checkpoint in the directory ``path``.

    Example:
        >>> import os, tempfile, jax.numpy as jnp, funcnet as fn
        >>> path = os.path.join(tempfile.mkdtemp(), "p.safetensors")
        >>> _ = fn.save(path, {"w": jnp.ones((2, 3))})
        >>> fn.load(path, like={"w": jnp.zeros((3, 2))})
        Traceback (most recent call last):
        ...
        funcnet...CheckpointMismatchError: load: .../p.safetensors does not match `like` (1 difference):
          ['w']: shape (2, 3) in the file, (3, 2) expected
        Build `like` from the same model, optimizer and input shape as the saved run.
    """
    path = checkpoint_file(path)
    items, meta = read_arrays(path)
    differences: list[str] = []
    if net is not None:
        if input_shape is None:
            raise ValueError("load: net needs input_shape too (the shape given to net.init).")
        differences += model_differences(meta.get("model"), describe_model(net, input_shape))
    matched: list[Any] = []
    treedef = None
    if like is not None:
        tree_diffs, matched, treedef = _tree_differences(items, like)
        differences += tree_diffs
    if differences:
        n = len(differences)
        model = meta.get("model")
        saved_from = (
            ""
            if model is None
            else "\nThe file was saved from the model:\n"
            + "\n".join(f"  {r[0]} {r[1]} ({r[2]} params)" for r in model["layers"])
        )
        against = (
            "`like`" if net is None else ("the model" if like is None else "the model and `like`")
        )
        raise CheckpointMismatchError(
            f"load: {path} does not match {against} ({n} difference{'s' * (n > 1)}):\n  "
            + "\n  ".join(differences)
            + saved_from
            + "\nBuild `like` from the same model, optimizer and input shape as the saved run.",
            differences,
        )
    if like is None:
        return _nested(items)
    return jax.tree_util.tree_unflatten(treedef, [_value(e, a, leaf) for e, a, leaf in matched])
