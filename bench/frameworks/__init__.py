"""The frameworks under test, one module each, all with the same small interface.

A framework module defines:

- ``NAME`` and ``DESCRIPTION``, and ``version() -> str``;
- ``VARIANTS: dict[str, bench.spec.Variant]``, the ways it trains a
  :class:`bench.spec.Task`: "loop" variants build a Trainer (one step per
  call, from a Python loop), "fit" variants a Fitter (a whole-run call);
- optionally ``ENSEMBLE: dict[str, (factory, description)]``, where
  ``factory(task, seed, n_models)`` builds an object with ``fit(x, y, epochs,
  batch_size)`` (trains ``n_models`` fresh models) and ``predict(x) -> [models, n, ...]``.

Every workload is written once, against this interface (``bench.workloads``).
A module imports its framework at the top, so a missing package shows up as
an ImportError when the module is loaded; the framework is then skipped and
the table says "not installed".
"""

from __future__ import annotations

import importlib
from types import ModuleType

# name -> (module, the pip package that provides it)
FRAMEWORKS: dict[str, tuple[str, str]] = {
    "funcnet": ("bench.frameworks.funcnet_fw", "funcnet"),
    "jax": ("bench.frameworks.jax_fw", "jax optax"),
    "flax.linen": ("bench.frameworks.flax_linen_fw", "flax"),
    "flax.nnx": ("bench.frameworks.flax_nnx_fw", "flax"),
    "equinox": ("bench.frameworks.equinox_fw", "equinox"),
    "haiku": ("bench.frameworks.haiku_fw", "dm-haiku"),
    "keras": ("bench.frameworks.keras_fw", "keras>=3"),
    "torch": ("bench.frameworks.torch_fw", "torch"),
}

REFERENCE = "jax"
"""Hand-written JAX: always run, since every ratio is taken against it."""

ALIASES = {
    "flax": ("flax.linen", "flax.nnx"),
    "linen": ("flax.linen",),
    "nnx": ("flax.nnx",),
    "pytorch": ("torch",),
    "dm-haiku": ("haiku",),
}


def resolve(names: str | None) -> list[str]:
    """Framework names from a comma-separated list (aliases allowed), the reference added."""
    if not names:
        return list(FRAMEWORKS)
    chosen: list[str] = []
    for raw in names.split(","):
        name = raw.strip().lower()
        if not name:
            continue
        expanded = ALIASES.get(name, (name,))
        for n in expanded:
            if n not in FRAMEWORKS:
                raise SystemExit(
                    f"bench: unknown framework {raw!r}; choose from {', '.join(FRAMEWORKS)}"
                )
            if n not in chosen:
                chosen.append(n)
    if REFERENCE not in chosen:
        chosen.insert(0, REFERENCE)
    return [n for n in FRAMEWORKS if n in chosen]


def load(name: str) -> ModuleType | str:
    """The framework's module, or why it cannot run ("not installed (pip install ...)")."""
    module, package = FRAMEWORKS[name]
    try:
        return importlib.import_module(module)
    except ImportError as error:
        return f"not installed ({error}; pip install {package})"
    except Exception as error:  # a broken install should not stop the other frameworks
        return f"failed to import: {type(error).__name__}: {error}"
