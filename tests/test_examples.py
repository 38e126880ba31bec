"""Smoke tests of the seed examples, at small sizes where the full run is long."""

import importlib.util
import pathlib

import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hello_predicts_about_19(capsys):
    assert load("hello").main() == pytest.approx(19.0, abs=0.1)
    assert "prediction for x = 10: 18.9" in capsys.readouterr().out


def test_tiny_sigmoid_gets_close_to_its_targets():
    predictions = load("tiny_sigmoid").main(max_epochs=20_000, tolerance=0.05, chunk=1000)
    np.testing.assert_allclose(predictions[:, 0], [0.1, 0.3, 0.5], atol=0.05)


def test_neuron_predicts_the_first_input():
    assert load("neuron").main(steps=3000) > 0.97


def test_anatomy_summary_shows_the_shapes_fitting():
    table = load("anatomy").main()
    assert "serial[1].Dense  (None, 32)     1,056" in table
    assert table.endswith("Total params: 26,176")


def test_graphs_each_graph_learns():
    losses = load("graphs").main(epochs=6, n=64)
    assert set(losses) == {"two_branches", "two_heads", "inception"}
    for name, history in losses.items():
        assert history[-1] < history[0], name


def test_digits_cnn_learns_in_a_few_epochs():
    assert load("digits_cnn").main(epochs=3, verbose=0) > 0.85


@pytest.mark.slow
def test_digits_cnn_reaches_97_percent():
    assert load("digits_cnn").main(verbose=0) >= 0.97


def test_char_lm_beats_the_unigram_baseline():
    # Tiny: one narrow block, no LSTM baseline; the full run's numbers are in the README.
    bits = load("char_lm").main(
        steps=150, features=32, depth=1, num_heads=2, context=32, lstm_units=None,
        learning_rate=1e-2, sample_length=8, verbose=False,
    )  # fmt: skip
    assert bits["transformer"] < bits["unigram"] - 0.5
