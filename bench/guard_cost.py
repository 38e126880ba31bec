"""What fit's non-finite guard costs per step, for each ``on_nonfinite`` mode.

    python bench/guard_cost.py            # playground and mlp models, a markdown table
    python bench/guard_cost.py --quick    # fewer rounds

For each model, ``fit`` trains from the same train state with
``on_nonfinite`` "stop" (the default), "skip" and "ignore" (no guard). The
modes are timed in interleaved rounds (so a burst of load on the machine
hits them alike) and the median per-step time is reported with its ratio to
"ignore". Compilation is excluded: every mode is warmed up first. The
results are recorded in docs/training.md.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

MODES = ("stop", "skip", "ignore")


def models():
    """``name -> (net, optimizer, loss, x, y, batch_size)``."""
    import numpy as np
    import optax

    import funcnet as fn

    rng = np.random.default_rng(0)
    circle = rng.normal(size=(500, 2)).astype(np.float32)
    inside = (np.sum(circle**2, axis=1, keepdims=True) < 1).astype(np.float32)
    digits = rng.normal(size=(1024, 784)).astype(np.float32)
    labels = rng.integers(0, 10, size=1024).astype(np.int32)
    return {
        "playground 2-4-2-1, batch 10": (
            fn.serial(fn.Dense(4, "tanh"), fn.Dense(2, "tanh"), fn.Dense(1, "sigmoid")),
            optax.sgd(0.03),
            "binary_crossentropy",
            circle,
            inside,
            10,
        ),
        "mlp 784-512-512-10, batch 128": (
            fn.serial(fn.Dense(512, "relu"), fn.Dense(512, "relu"), fn.Dense(10)),
            optax.sgd(0.01, momentum=0.9),
            functools.partial(fn.sparse_categorical_crossentropy, from_logits=True),
            digits,
            labels,
            128,
        ),
    }


def time_modes(model, rounds: int) -> dict[str, list[float]]:
    """Microseconds per step of each mode, one sample per round."""
    import jax

    import funcnet as fn

    net, optimizer, loss, x, y, batch = model
    states: dict[str, fn.TrainState] = {}

    def run(mode: str, epochs: int) -> None:
        result = fn.fit(
            net, x, y, loss=loss, optimizer=optimizer, epochs=epochs, batch_size=batch,
            verbose=0, on_nonfinite=mode, train_state=states.get(mode),
        )  # fmt: skip
        jax.block_until_ready(result.params)
        states[mode] = result.train_state

    epochs = max(1, 2000 // (len(x) // batch))  # about 2000 steps per timed call
    steps = epochs * -(-len(x) // batch)
    for mode in MODES:
        run(mode, 1)  # compile
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(rounds):
        for mode in MODES:
            started = time.perf_counter()
            run(mode, epochs)
            times[mode].append((time.perf_counter() - started) / steps * 1e6)
    return times


def measure(rounds: int) -> list[tuple[str, str, float, float]]:
    rows = []
    for name, model in models().items():
        times = time_modes(model, rounds)
        base = statistics.median(times["ignore"])
        for mode in MODES:
            median = statistics.median(times[mode])
            rows.append((name, mode, median, median / base))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 9")
    args = parser.parse_args()
    rows = measure(3 if args.quick else 9)
    print("| model | on_nonfinite | per step (µs) | ratio to ignore |")
    print("|---|---|---|---|")
    for name, mode, micros, ratio in rows:
        print(f"| {name} | {mode} | {micros:,.1f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
