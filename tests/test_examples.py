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


@pytest.mark.slow  # a whole process or a long run: CI's -m slow step
def test_graphs_each_graph_learns():
    losses = load("graphs").main(epochs=6, n=64)
    assert set(losses) == {"two_branches", "two_heads", "inception"}
    for name, history in losses.items():
        assert history[-1] < history[0], name


@pytest.mark.slow  # a whole process or a long run: CI's -m slow step
def test_digits_cnn_learns_in_a_few_epochs():
    assert load("digits_cnn").main(epochs=3, verbose=0) > 0.85


@pytest.mark.slow
def test_digits_cnn_reaches_97_percent():
    assert load("digits_cnn").main(verbose=0) >= 0.97


# What only pure functions make easy (docs/functional.md): each trick at a small size.


def test_per_example_grads_are_each_examples_own_and_dp_sgd_learns():
    import jax

    example = load("per_example_grads")
    result = example.main(steps=300, n=300)
    assert result["accuracy"] > 0.9  # DP-SGD (clipped, noisy) still learns the circle
    params, state = result["params"], result["state"]
    x = np.random.default_rng(0).uniform(-1, 1, (5, 2)).astype(np.float32)
    y = np.array([0, 1, 1, 0, 1], np.int32)
    grads = example.per_example_grads(state, params, x, y)
    loss = example.example_loss_fn(state)
    one_at_a_time = jax.jit(jax.grad(loss))
    for i in range(len(x)):  # vmap(grad) equals grad of each example alone
        one = one_at_a_time(params, x[i], y[i])
        for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(one)):
            np.testing.assert_allclose(got[i], want, rtol=1e-4, atol=1e-5)
    norms = np.asarray(example.global_norms(grads))
    bound = float(np.median(norms))  # some examples above it, some below
    clipped_norms = np.asarray(example.global_norms(example.clip(grads, bound)))
    assert np.all(clipped_norms <= bound * (1 + 1e-5))
    np.testing.assert_allclose(clipped_norms[norms <= bound], norms[norms <= bound], rtol=1e-5)


def test_maml_adapts_to_a_new_wave_better_than_pretraining():
    errors = load("maml").main(meta_steps=200)
    assert errors["maml"] < 0.85 * errors["pretrained"] < errors["untrained"]


def test_hessian_vector_products_and_top_eigenvalue_match_the_dense_hessian():
    import jax

    result = load("hessian").main(hidden=(3,), n=20, epochs=300, iterations=500)
    loss, weights = result["loss"], result["weights"]
    hessian = np.asarray(jax.jit(jax.hessian(loss))(weights), np.float64)  # 13 x 13 here
    v = np.random.default_rng(0).normal(size=weights.shape).astype(np.float32)
    hvp = jax.jit(load("hessian").hvp, static_argnums=0)(loss, weights, v)
    np.testing.assert_allclose(hvp, hessian @ v, rtol=1e-4, atol=1e-5)
    eigenvalues = np.linalg.eigvalsh((hessian + hessian.T) / 2)
    assert eigenvalues[-1] > abs(eigenvalues[0])  # power iteration finds the largest in magnitude
    assert result["eigenvalue"] == pytest.approx(eigenvalues[-1], rel=1e-3)


def test_ensemble_members_differ_and_disagree_more_far_from_the_data():
    import jax

    out = load("ensemble_uncertainty").main(members=4, epochs=5)
    for leaf in jax.tree.leaves(out["result"].params):  # every leaf: [members, ...]
        assert leaf.shape[0] == 4 and not np.allclose(leaf[0], leaf[1])
    spread = out["spread"]
    assert spread["on the data"] > 0  # the members are different models
    assert spread["radius 10-20"] > 3 * spread["on the data"]
    assert out["accuracy"] > 0.9


@pytest.mark.slow  # a whole process or a long run: CI's -m slow step
def test_char_lm_beats_the_unigram_baseline():
    # Tiny: one narrow block, no LSTM baseline; the full run's numbers are in the README.
    bits = load("char_lm").main(
        steps=150, features=32, depth=1, num_heads=2, context=32, lstm_units=None,
        learning_rate=1e-2, sample_length=8, verbose=False,
    )  # fmt: skip
    assert bits["transformer"] < bits["unigram"] - 0.5


@pytest.mark.slow  # three libraries' compilations: ~20 s of CPU
def test_interop_crosses_flax_funcnet_and_keras_with_equal_predictions():
    import os

    os.environ.setdefault("KERAS_BACKEND", "jax")  # before Keras is first imported
    pytest.importorskip("flax", reason="examples/interop.py needs flax (the interop extra)")
    keras = pytest.importorskip(
        "keras", reason="examples/interop.py needs keras (the interop extra)"
    )
    if keras.backend.backend() != "jax":
        pytest.skip(
            "Keras was imported earlier on another backend; interop.py needs KERAS_BACKEND=jax"
        )
    out = load("interop").main(n=64, epochs=8, keras_epochs=2, fine_tune_epochs=8)
    flax_losses = out["flax"]["losses"]
    assert flax_losses[-1] < 0.5 * flax_losses[0]  # the Flax block trains inside fn.fit
    to_keras = out["to_keras"]
    np.testing.assert_allclose(to_keras["keras_out"], to_keras["funcnet_out"], atol=1e-5)
    assert len(to_keras["losses"]) == 2 and np.all(np.isfinite(to_keras["losses"]))
    from_keras = out["from_keras"]
    assert from_keras["gap"] < 1e-5  # Keras's weights, funcnet's layers: the same predictions
    assert from_keras["after"] < from_keras["before"]  # fn.fit fine-tunes from them
