"""Smoke test of examples/custom_layer.py with tiny sizes."""

from __future__ import annotations

import pathlib
import runpy

import pytest

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "custom_layer.py"


@pytest.fixture(scope="module")
def example():
    return runpy.run_path(str(EXAMPLE), run_name="custom_layer_example")


def test_example_checks_report_the_designed_differences_and_training_learns(example, capsys):
    results = example["main"](epochs=8, n=64, verbose=True)
    printed = capsys.readouterr().out

    # The quantizer's gradient differs from autodiff and finite differences
    # (both zero between grid points) and follows the straight-through rule.
    assert set(results["quantize_plain"].failures) == {("autodiff", "x"), ("numerical", "x")}
    assert results["quantize_intended"].ok
    # Clipping acts only on the gradient sent to x, only when it is large.
    assert results["clip_small"].ok
    assert set(results["clip_large"].failures) == {("autodiff", "x"), ("numerical", "x")}
    assert results["clip_rule_error"] < 1e-12

    losses = results["losses"]
    assert len(losses) == 8
    assert losses[-1] < losses[0]
    assert "gradient check mismatch: worst x against autodiff" in printed
    assert "epoch    8: loss" in printed
