"""JAX's persistent compilation cache, turned on only when the user asks.

For small models most of a training script's time is compilation; with the
persistent cache, the second run of the same script loads its compiled
programs from disk instead of compiling them again. The cache is a
process-wide JAX setting, so funcnet never turns it on by itself: call
:func:`enable_compilation_cache` (the examples and ``python -m funcnet`` do),
or set ``FUNCNET_COMPILATION_CACHE=1`` and ``fit`` turns it on at its first
call. Within one process funcnet needs no setting: rebuilt models share
compiled programs through its own in-memory cache (see
``funcnet._src.training.programs``).

>>> import funcnet as fn
>>> folder = fn.enable_compilation_cache("/tmp/funcnet-doctest-cache")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import pathlib
import warnings

import jax

ENV_VAR = "FUNCNET_COMPILATION_CACHE"
DIR_ENV_VAR = "FUNCNET_COMPILATION_CACHE_DIR"

# The bound on the cache folder: JAX evicts the least recently used entries
# beyond it. A small model's program is tens of kilobytes, so this holds
# thousands of programs while staying small next to a dataset.
DEFAULT_MAX_BYTES = 256 * 1024 * 1024


def default_cache_dir() -> pathlib.Path:
    """The folder used when neither an argument nor ``FUNCNET_COMPILATION_CACHE_DIR`` names one."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "funcnet" / "jax"


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def enable_compilation_cache(
    path: str | os.PathLike | None = None, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> str | None:
    """Turns on JAX's persistent compilation cache; returns its folder, or None.

    This changes process-wide JAX settings (``jax_compilation_cache_dir``,
    its size bound, and a minimum compile time of 0 so that the small
    programs that dominate short runs are cached too), which is why funcnet
    only does it when asked. A cache folder the program already configured
    through JAX is kept: this returns that folder and changes nothing.

    Args:
        path: the cache folder; default ``$FUNCNET_COMPILATION_CACHE_DIR``,
            else ``$XDG_CACHE_HOME/funcnet/jax`` or ``~/.cache/funcnet/jax``.
        max_bytes: the bound on the folder's size; the least recently used
            programs are evicted beyond it.

    Returns:
        The folder in use, or None when it cannot be created (a read-only
        home: training goes on without the cache, with a warning).
    """
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
        raise ValueError(
            f"enable_compilation_cache: max_bytes must be a positive integer, got {max_bytes!r}."
        )
    configured = jax.config.values.get("jax_compilation_cache_dir")
    if configured:
        return str(configured)  # the user's own cache: never override it
    folder = pathlib.Path(path or os.environ.get(DIR_ENV_VAR) or default_cache_dir())
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        warnings.warn(
            f"enable_compilation_cache: cannot create the cache folder {str(folder)!r} "
            f"({error.strerror}); running without the persistent cache.",
            stacklevel=2,
        )
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_compilation_cache_max_size", max_bytes)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return str(folder)


def enable_from_environment() -> str | None:
    """Turns the cache on if ``FUNCNET_COMPILATION_CACHE`` asks for it; else does nothing."""
    if _truthy(os.environ.get(ENV_VAR, "")):
        return enable_compilation_cache()
    return None
