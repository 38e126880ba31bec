"""JAX's persistent compilation cache, on by default for funcnet's training.

For small models most of a training script's time is compilation; with the
cache, the second run of the same script loads its compiled programs from
disk instead of compiling them again.

* ``FUNCNET_COMPILATION_CACHE=0`` turns it off.
* ``FUNCNET_COMPILATION_CACHE_DIR`` chooses the folder (default:
  ``$XDG_CACHE_HOME/funcnet/jax`` or ``~/.cache/funcnet/jax``).
* A cache folder the program already configured through JAX
  (``jax_compilation_cache_dir``) is left as it is.
"""

from __future__ import annotations

import os
import pathlib

import jax

_enabled: str | None = None


def default_cache_dir() -> pathlib.Path:
    """The folder used when ``FUNCNET_COMPILATION_CACHE_DIR`` is not set."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "funcnet" / "jax"


def enable_compilation_cache(path: str | os.PathLike | None = None) -> str | None:
    """Turns on JAX's persistent compilation cache; returns its folder, or None if off.

    Called by ``fit``; call it yourself to choose the folder, or set the
    environment variables above.
    """
    global _enabled
    if path is None and os.environ.get("FUNCNET_COMPILATION_CACHE", "1").lower() in (
        "0",
        "false",
        "no",
    ):
        return None
    configured = getattr(jax.config, "jax_compilation_cache_dir", None)
    if path is None and configured:
        return str(configured)
    folder = pathlib.Path(
        path or os.environ.get("FUNCNET_COMPILATION_CACHE_DIR") or default_cache_dir()
    )
    if _enabled == str(folder):
        return _enabled
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # a read-only home: train without the cache rather than fail
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # Small models compile in well under JAX's default threshold of one second,
    # and they are the ones whose runs compilation dominates: cache them too.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _enabled = str(folder)
    return _enabled
