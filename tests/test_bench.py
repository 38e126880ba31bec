"""The benchmark suite (bench/): a smoke run of the command line, and its pure parts.

The fast test runs ``python -m bench --quick --only hello,overhead`` on
funcnet and hand-written JAX (the frameworks every install has); the slow one
runs every workload on every installed framework.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from bench import data
from bench.frameworks import FRAMEWORKS, resolve
from bench.report import Record, Results, format_figure, markdown
from bench.spec import Conv, Dense, Flatten, MaxPool, Task, accuracy, output_shapes

ROOT = pathlib.Path(__file__).resolve().parent.parent


def run_bench(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def measured(payload: dict) -> list[dict]:
    return [r for r in payload["records"] if r["figure"] is not None]


@pytest.mark.slow  # a whole process or a long run: CI's -m slow step
def test_quick_run_writes_positive_figures_and_ratios_and_prints_the_table(tmp_path):
    done = run_bench(
        "--quick",
        "--only",
        "hello,overhead",
        "--frameworks",
        "funcnet,jax",
        "--out",
        str(tmp_path),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    payload = json.loads((tmp_path / "latest.json").read_text())
    records = measured(payload)
    found = {(r["workload"], r["framework"], r["variant"], r["metric"]) for r in records}
    for variant in ("fit", "step loop"):
        assert ("hello", "funcnet", variant, "fit time") in found
        assert ("hello", "funcnet", variant, "per step") in found
        assert ("overhead", "funcnet", variant, "per step") in found
    assert ("hello", "jax", "epoch scan", "predict(10)") in found
    assert ("overhead", "jax", "step loop", "compile") in found
    assert {r["workload"] for r in payload["records"]} == {"hello", "overhead"}
    for r in records:
        assert r["figure"] > 0, r
        assert r["ratio"] is not None and r["ratio"] > 0, r
        assert r["figure"] == pytest.approx(float(np.median(r["samples"])))
    # The reference's own ratio is exactly 1, and the others are taken against it.
    by_key = {(r["workload"], r["framework"], r["variant"], r["metric"]): r for r in records}
    reference = by_key["overhead", "jax", "step loop", "per step"]
    assert reference["ratio"] == 1.0
    mine = by_key["overhead", "funcnet", "step loop", "per step"]
    assert mine["ratio"] == pytest.approx(mine["figure"] / reference["figure"])
    assert mine["reference"] == "jax step loop"
    assert by_key["hello", "funcnet", "fit", "per step"]["reference"] == "jax epoch scan"
    # A trained neuron predicts a value near the rule's 19 (50 epochs: about 16-18).
    assert 10 < by_key["hello", "funcnet", "fit", "predict(10)"]["figure"] < 21
    assert payload["meta"]["quick"] is True
    # The table is printed and written.
    assert "### hello" in done.stdout and "### overhead" in done.stdout
    assert (
        "| framework | variant | fit time (ms) | per step (µs) | predict(10) | note |"
        in done.stdout
    )
    assert "| funcnet | fit |" in done.stdout
    assert (tmp_path / "latest.md").read_text().strip() in done.stdout


@pytest.mark.slow
def test_quick_run_of_every_workload_and_framework(tmp_path):
    done = run_bench("--quick", "--out", str(tmp_path), timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    payload = json.loads((tmp_path / "latest.json").read_text())
    workloads = {r["workload"] for r in measured(payload)}
    assert workloads == {
        "hello",
        "playground",
        "mlp",
        "cnn",
        "depth",
        "overhead",
        "ensemble",
        "startup",
        "transformer",
        "remat",
        "precision",
        "sampling",
    }
    for r in measured(payload):
        assert r["figure"] > 0, r
    # Every framework appears, measured or with a note saying why not.
    assert {r["framework"] for r in payload["records"]} == set(FRAMEWORKS)


def test_unknown_workload_is_an_error(tmp_path):
    done = run_bench("--only", "helo", "--out", str(tmp_path), timeout=60)
    assert done.returncode == 2
    assert "unknown workload(s) helo; choose from hello, playground" in done.stderr


def test_frameworks_resolve_aliases_and_always_include_the_reference():
    assert resolve("funcnet") == ["funcnet", "jax"]
    assert resolve("flax,torch") == ["jax", "flax.linen", "flax.nnx", "torch"]
    assert resolve(None) == list(FRAMEWORKS)
    with pytest.raises(SystemExit, match="unknown framework 'tensorflow'; choose from funcnet"):
        resolve("tensorflow")


def test_circle_dataset_has_the_playground_radii_and_labels():
    x, y = data.circle(500, seed=3)
    assert x.shape == (500, 2) and y.shape == (500, 1)
    assert x.dtype == np.float32 and y.dtype == np.float32
    radius = np.hypot(x[:, 0], x[:, 1])
    inner = y[:, 0] == 1.0
    assert inner.sum() == 250
    assert radius[inner].max() <= 2.5 and radius[~inner].min() >= 3.5
    assert radius[~inner].max() <= 5.0
    x2, y2 = data.circle(500, seed=3)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)


def test_hello_data_is_the_line():
    _, y = data.hello()
    np.testing.assert_array_equal(y[:, 0], [-3, -1, 1, 3, 5, 7])


def test_cnn_task_shapes_match_the_pytorch_mnist_network():
    task = Task(
        (Conv(32), Conv(64), MaxPool(), Flatten(), Dense(128, "relu"), Dense(10)),
        (28, 28, 1),
        "softmax_ce",
        0.01,
    )
    assert output_shapes(task) == [
        (26, 26, 32),
        (24, 24, 64),
        (12, 12, 64),
        (9216,),
        (128,),
        (10,),
    ]


def test_accuracy_thresholds_probabilities_and_takes_the_argmax():
    bce = Task((Dense(1, "sigmoid"),), (2,), "bce", 0.1)
    assert accuracy(bce, np.array([[0.9], [0.2], [0.6]]), np.array([[1.0], [1.0], [0.0]])) == 1 / 3
    ce = Task((Dense(3),), (2,), "softmax_ce", 0.1)
    logits = np.array([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]])
    assert accuracy(ce, logits, np.array([1, 2])) == 0.5


def test_ratios_are_taken_against_the_reference_in_the_same_workload_and_metric():
    results = Results()
    results.add(Record("w", "jax", "step loop", "per step", 20.0, "µs"))
    results.add(Record("w", "funcnet", "fit", "per step", 5.0, "µs"))
    results.add(Record("w", "funcnet", "fit", "steps/s", 8.0, "steps/s", "higher"))
    results.skip("w", "haiku", "not installed (pip install dm-haiku)")
    results.compute_ratios({"w": lambda record: ("jax", "step loop")})
    ratios = {(r.framework, r.metric): r.ratio for r in results.records}
    assert ratios["jax", "per step"] == 1.0
    assert ratios["funcnet", "per step"] == 0.25
    assert ratios["funcnet", "steps/s"] is None  # the reference has no such metric
    assert ratios["haiku", None] is None

    table = markdown(results, [("w", "a workload", "jax")], ["funcnet", "jax", "haiku"])
    assert "| funcnet | fit | 5.00 (0.25×) | 8.00 |  |" in table
    assert "| jax | step loop | 20.0 (1.00×) |  |  |" in table
    assert "| haiku |  |  |  | not installed (pip install dm-haiku) |" in table
    # Rows follow the framework order given.
    assert table.index("| funcnet |") < table.index("| jax |") < table.index("| haiku |")


@pytest.mark.parametrize(
    ("value", "text"),
    [(12345.6, "12,346"), (123.4, "123"), (12.34, "12.3"), (1.234, "1.23"), (0.01234, "0.0123")],
)
def test_figures_are_shown_with_three_significant_digits(value, text):
    assert format_figure(value) == text


@pytest.mark.slow  # a whole process or a long run: CI's -m slow step
def test_guard_cost_times_every_mode_from_the_same_state():
    from bench.guard_cost import MODES, models, time_modes

    playground = models()["playground 2-4-2-1, batch 10"]
    times = time_modes(playground, rounds=1)
    assert sorted(times) == sorted(MODES)
    assert all(len(samples) == 1 and samples[0] > 0 for samples in times.values())


@pytest.mark.slow
def test_remat_memory_and_accumulate_memory_fall_on_the_quick_model():
    from bench.precision_accumulate import accumulate_memory
    from bench.remat_memory import measure

    sizes, memory = measure(quick=True)
    assert memory[True]["temp"] < memory["dots_saveable"]["temp"] < memory[False]["temp"]
    assert len({m["arguments"] for m in memory.values()}) == 1  # the same params and batch
    by_accumulate = accumulate_memory(sizes, k=4)
    assert by_accumulate[4] < by_accumulate[1]


@pytest.mark.slow  # compiles a Transformer step per framework: CI's -m slow step
def test_quick_run_of_the_transformer_and_the_funcnet_only_workloads(tmp_path):
    done = run_bench(
        "--quick",
        "--only",
        "transformer,remat,precision,sampling",
        "--frameworks",
        "funcnet,jax,torch",
        "--out",
        str(tmp_path),
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    payload = json.loads((tmp_path / "latest.json").read_text())
    by_key = {
        (r["workload"], r["framework"], r["variant"], r["metric"]): r for r in measured(payload)
    }
    for variant in ("fit", "step loop"):
        assert by_key["transformer", "funcnet", variant, "tokens/s"]["ratio"] > 0
    assert by_key["transformer", "jax", "step loop", "tokens/s"]["ratio"] == 1.0
    temp = {
        v: by_key["remat", "funcnet", f"remat={v}", "temp"]["figure"] for v in ("False", "True")
    }
    assert temp["True"] < temp["False"]
    assert by_key["precision", "funcnet", "mixed_bfloat16", "per step"]["reference"] == (
        "funcnet float32"
    )
    assert by_key["sampling", "funcnet", "cached", "tokens/s"]["figure"] > 0
    assert payload["meta"]["device"].startswith("cpu")
    assert payload["meta"]["commit"]


def test_an_absent_device_is_a_clear_error():
    import jax

    from bench.cli import select_device

    if any(d.platform == "tpu" for d in jax.devices()):
        pytest.skip("this machine has a TPU")
    with pytest.raises(SystemExit, match=r"--device tpu: JAX finds no tpu device on this machine"):
        select_device("tpu")


@pytest.mark.slow  # init and two compiles: 5-20 s on the shared 2 cores
def test_the_transformer_is_the_same_model_in_funcnet_and_hand_written_jax():
    """funcnet's TransformerLM with its params copied into the hand-written one: same logits."""
    import jax
    import jax.numpy as jnp

    from bench.frameworks import _lm_jax, funcnet_fw
    from bench.workloads.transformer import QUICK, task

    spec = QUICK["spec"]
    net = funcnet_fw.build(task(spec))
    _, params, state = net.init(
        jax.random.key(0), jax.ShapeDtypeStruct((None, spec.length), jnp.int32)
    )
    positions, blocks, final_norm = params["body"]
    d = spec.features

    def dense(p, i):
        return {"w": p["w"][i].reshape(-1, p["w"].shape[-1]) if p["w"].ndim == 3 else p["w"][i],
                "b": p["b"][i].reshape(-1)}  # fmt: skip

    def projection(p, i):  # [D, heads, size] -> [D, D]
        return {"w": p["w"][i].reshape(d, d), "b": p["b"][i].reshape(d)}

    a = blocks["attention"]
    mine = {
        "embed": params["embedding"],
        "positions": positions["embedding"],
        "blocks": [
            {
                "norm1": jax.tree.map(lambda v, i=i: v[i], blocks["attention_norm"]),
                "query": projection(a["query"], i),
                "key": projection(a["key"], i),
                "value": projection(a["value"], i),
                "output": {"w": a["output"]["w"][i].reshape(d, d), "b": a["output"]["b"][i]},
                "norm2": jax.tree.map(lambda v, i=i: v[i], blocks["ffn_norm"]),
                "up": dense(blocks["ffn"][0], i),
                "down": dense(blocks["ffn"][1], i),
            }
            for i in range(spec.depth)
        ],
        "final_norm": final_norm,
    }
    like = jax.eval_shape(lambda k: _lm_jax.init(spec, k), jax.random.key(0))
    assert jax.tree.structure(mine) == jax.tree.structure(like)
    tokens = jax.random.randint(jax.random.key(1), (3, spec.length), 0, spec.vocab)
    expected = jax.jit(lambda p, t: net.apply(p, state, t)[0])(params, tokens)
    with jax.numpy_rank_promotion("allow"):  # written as a JAX user does, with broadcasting
        got = jax.jit(_lm_jax.forward, static_argnums=0)(spec, mine, tokens)
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-5)
