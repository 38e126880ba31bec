"""docs/errors.md is true: every bad input listed there gets exactly the message shown.

The catalogue is the document itself: each ```python block after the setup
block is run, and must raise the exception class and message written in its
trailing ``# Class: message`` comment (``...`` matches any text), or evaluate
to the text after ``# =>``.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import NamedTuple

import pytest

import funcnet as fn

CATALOGUE = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
_EXPECTATION = re.compile(r"^# (=> |[A-Za-z]+: )")

# Public names with no bad input of their own to list: types and error
# classes, layers without arguments (or whose arguments any value fits), and
# losses that share mse's checks.
NOTHING_TO_CATALOGUE = {
    "Callback", "CheckpointError", "CheckpointInfo", "CheckpointMismatchError", "ExportError",
    "FitManyResult", "FitResult", "GradCheckError", "GradCheckReport", "Layer", "LayerError",
    "LayerTypeError", "LayerValueError", "LossScale", "TerminateOnNaN", "TrainState",
    "Elu", "Gelu", "GlobalMaxPool", "Identity", "LeakyRelu", "LogSoftmax", "Relu", "Sigmoid",
    "Silu", "Softmax", "Softplus", "Tanh", "AvgPool", "ConvTranspose", "GRU", "RMSNorm",
    "binary_crossentropy", "categorical_crossentropy", "huber", "mae",
    "enable_compilation_cache", "checkpoint_info", "branches", "custom_layer", "from_stax",
    "gather_for_save",
}  # fmt: skip


class Entry(NamedTuple):
    line: int  # where the block starts in docs/errors.md
    code: str
    kind: str  # "raises" or "evaluates"
    exception: str
    message: str


def entries() -> tuple[str, list[Entry]]:
    text = CATALOGUE.read_text()
    setup, found = "", []
    for match in re.finditer(r"```python\n(.*?)```", text, re.DOTALL):
        lines = match.group(1).rstrip("\n").split("\n")
        line = text.count("\n", 0, match.start()) + 1
        if lines[0] == "# setup":
            setup = "\n".join(lines[1:])
            continue
        first = next(i for i, s in enumerate(lines) if _EXPECTATION.match(s))
        assert all(s.startswith("#") for s in lines[first:]), (
            f"line {line}: code after the expectation"
        )
        expected = "\n".join(s[2:] for s in lines[first:])
        code = "\n".join(lines[:first])
        if expected.startswith("=> "):
            found.append(Entry(line, code, "evaluates", "", expected[3:]))
        else:
            exception, message = expected.split(": ", 1)
            found.append(Entry(line, code, "raises", exception, message))
    return setup, found


def pattern(message: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in message.split("...")), re.DOTALL)


def outcome(setup: str, entry: Entry) -> str | None:
    """None if the entry holds, else what went wrong."""
    namespace: dict = {}
    exec(setup, namespace)
    *body, last = entry.code.split("\n")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if entry.kind == "evaluates":
                exec("\n".join(body), namespace)
                value = str(eval(last, namespace))
                return (
                    None if pattern(entry.message).fullmatch(value) else f"evaluated to {value!r}"
                )
            exec(entry.code, namespace)
    except Exception as error:
        got = f"{type(error).__name__}: {error}"
        if entry.kind == "raises" and type(error).__name__ == entry.exception:
            if pattern(entry.message).fullmatch(str(error)):
                return None
        return f"raised {got}"
    return "raised nothing"


SETUP, ENTRIES = entries()


def test_the_catalogue_has_a_setup_and_at_least_120_cases():
    assert SETUP and len(ENTRIES) >= 120


# One test per entry: a failure names its line, and the entries spread over the workers.
@pytest.mark.parametrize("entry", ENTRIES, ids=[f"line{entry.line}" for entry in ENTRIES])
def test_the_entry_holds(entry: Entry):
    problem = outcome(SETUP, entry)
    assert problem is None, (
        f"docs/errors.md line {entry.line}:\n{entry.code}\n  expected {entry.exception or '=>'}: "
        f"{entry.message}\n  but {problem}"
    )


def test_the_catalogue_covers_the_public_api():
    text = CATALOGUE.read_text()
    public = {name for name in dir(fn) if not name.startswith("_") and callable(getattr(fn, name))}
    listed = set(re.findall(r"\bfn\.([A-Za-z_][A-Za-z_0-9]*)\(", text))
    missing = public - listed - NOTHING_TO_CATALOGUE
    assert not missing, f"public names with no entry in docs/errors.md: {sorted(missing)}"
