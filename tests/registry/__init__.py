"""The registry of every public layer, with an example input.

Each layer family has a module here with a ``CASES`` list; the generic tests
in ``tests/test_layer_contract.py`` run over all of them, and a coverage test
fails when a public layer constructor is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


def normal_input(key: jax.Array, shape: tuple, dtype: Any) -> Any:
    return jax.random.normal(key, shape, dtype)


class Case(NamedTuple):
    """One layer configuration and how to feed it.

    Attributes:
        name: the public constructor this case covers (``"Dense"``).
        make: builds the layer (with a given dtype where the layer takes one).
        input_shape: the init shape, batch dimension ``None``; a tuple of
            shapes for several inputs.
        make_input: ``(key, concrete_shape, dtype) -> x``; the default draws normals.
        input_dtype: the dtype of the example input when the test does not choose it
            (integer ids for an embedding).
        grad_check: whether float64 numerical gradient checks apply.
        float_dtypes: whether the layer should keep float32 and bfloat16 inputs'
            dtype in its output.
        id: a distinguishing suffix when one constructor has several cases.
        slow: run only with ``-m slow`` (CI runs both). :func:`all_cases` sets it
            for every case of a constructor after its first.
    """

    name: str
    make: Callable[..., Any]
    input_shape: Any
    make_input: Callable[[jax.Array, tuple, Any], Any] = normal_input
    input_dtype: Any = None
    grad_check: bool = True
    float_dtypes: bool = True
    id: str = ""
    slow: bool = False

    @property
    def label(self) -> str:
        return f"{self.name}-{self.id}" if self.id else self.name


def all_cases() -> list[Case]:
    from tests.registry import foundation

    modules = [foundation]
    for optional in (
        "conv",
        "norm",
        "embed",
        "attention",
        "recurrent",
        "combinators",
        "transformer",
        "interop",
    ):
        try:
            modules.append(__import__(f"tests.registry.{optional}", fromlist=["CASES"]))
        except ModuleNotFoundError as error:
            if error.name != f"tests.registry.{optional}":
                raise
    # The first case of each constructor runs in the default suite; its further
    # configurations run with -m slow (CI runs both), to keep the suite's time.
    cases, seen = [], set()
    for case in (case for module in modules for case in module.CASES):
        cases.append(case._replace(slow=case.slow or case.name in seen))
        seen.add(case.name)
    return cases


__all__ = ["Case", "all_cases", "jnp", "normal_input"]
