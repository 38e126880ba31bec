"""A warm ``fit`` call does no work but training: no trace, no compile; epochs batched per call.

The costs themselves are measured by ``bench/scripts/fit_overhead.py``; these
tests pin what makes them small without timing anything: a second ``fit``
with the same model, loss and optimizer traces and compiles nothing (its
checks are cached per signature), and a run whose callbacks do not need the
host between epochs trains several epochs per call of the compiled program
with exactly the history and params of one epoch per call.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import jax
import numpy as np
import optax
import pytest

import funcnet as fn
from funcnet._src.training.engine import ArrayEngine

# What JAX reports when it traces a function to a jaxpr, lowers it, and compiles it.
_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


@contextlib.contextmanager
def compile_events() -> Iterator[list[str]]:
    """The trace, lowering and compile events JAX records inside the block."""
    seen: list[str] = []

    def listener(event: str, duration: float, **kwargs: object) -> None:
        if event in _COMPILE_EVENTS:
            seen.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield seen
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


@pytest.fixture(scope="module")
def circle() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2)).astype(np.float32)
    y = (np.sum(x**2, axis=1, keepdims=True) < 1.0).astype(np.float32)
    return x, y


CASES = {
    "binary crossentropy, batch 10": (
        lambda: fn.serial(fn.Dense(4, activation="tanh"), fn.Dense(1), fn.Sigmoid()),
        "binary_crossentropy",
        10,
    ),
    "mse, full batch": (lambda: fn.Dense(1), "mse", None),
    "sparse labels": (
        lambda: fn.serial(fn.Dense(3), fn.Softmax()),
        "sparse_categorical_crossentropy",
        8,
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_warm_fit_traces_and_compiles_nothing(circle, case):
    build, loss, batch_size = CASES[case]
    x, y = circle
    if loss == "sparse_categorical_crossentropy":
        y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0).astype(np.int32)
    net, optimizer = build(), optax.sgd(0.1)
    fit = functools.partial(
        fn.fit, net, x, y, loss=loss, optimizer=optimizer, batch_size=batch_size, verbose=0
    )
    first = fit(epochs=1)
    fit(epochs=1)  # the fresh-init path warm too
    with compile_events() as continued:
        again = fit(epochs=1, train_state=first.train_state)
    with compile_events() as fresh:
        fit(epochs=1)
    assert continued == [] and fresh == []
    assert len(again.history["loss"]) == 1


def _spy_calls(monkeypatch) -> list[int]:
    """The ``count`` of every ``ArrayEngine.run_epochs`` call from now on."""
    counts: list[int] = []
    original = ArrayEngine.run_epochs

    def run_epochs(self, ts, epoch, count, progress):
        counts.append(count)
        return original(self, ts, epoch, count, progress)

    monkeypatch.setattr(ArrayEngine, "run_epochs", run_epochs)
    return counts


def _leaves(tree) -> list[np.ndarray]:
    keys_as_data = jax.tree.map(
        lambda a: (
            jax.random.key_data(a) if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key) else a
        ),
        tree,
    )
    return [np.asarray(leaf) for leaf in jax.tree.leaves(keys_as_data)]


def test_epochs_batched_per_call_train_exactly_as_one_per_call(circle, monkeypatch):
    x, y = circle
    net = fn.serial(fn.Dense(4, activation="tanh"), fn.Dense(1), fn.Sigmoid())
    fit = functools.partial(
        fn.fit, net, x, y, loss="binary_crossentropy", optimizer=optax.sgd(0.1),
        epochs=30, batch_size=10, metrics=["accuracy"], verbose=0, key=3,
    )  # fmt: skip
    counts = _spy_calls(monkeypatch)
    batched = fit()
    batched_calls, counts[:] = list(counts), []
    seen: list[int] = []
    per_epoch = fit(callbacks=[lambda epoch, logs: seen.append(epoch)])  # needs the host
    assert counts == [1] * 30 and seen == list(range(30))
    assert sum(batched_calls) == 30 and len(batched_calls) < 30
    assert batched.history == per_epoch.history
    assert len(batched.history["loss"]) == 30 and set(batched.history) == {"loss", "accuracy"}
    for a, b in zip(_leaves(batched.train_state), _leaves(per_epoch.train_state)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("on_nonfinite", ["stop", "skip"])
def test_a_batched_run_stops_where_one_epoch_per_call_stops(monkeypatch, on_nonfinite):
    # Full-batch SGD with a far too large step diverges: the loss overflows
    # to inf after a few dozen epochs, inside a batched call.
    rng = np.random.default_rng(1)
    x = rng.normal(0.0, 10.0, size=(8, 1)).astype(np.float32)
    y = 3 * x
    net = fn.Dense(1)
    fit = functools.partial(
        fn.fit, net, x, y, loss="mse", optimizer=optax.sgd(0.5), epochs=60, verbose=0,
        on_nonfinite=on_nonfinite,
    )  # fmt: skip
    counts = _spy_calls(monkeypatch)
    batched = fit()
    assert max(counts) > 1  # several epochs in one call
    per_epoch = fit(callbacks=[lambda epoch, logs: None])
    assert batched.nonfinite is not None and batched.nonfinite == per_epoch.nonfinite
    assert batched.nonfinite.epoch > 1
    assert batched.stop_reason == per_epoch.stop_reason
    np.testing.assert_equal(batched.history, per_epoch.history)
    if on_nonfinite == "stop":
        assert len(batched.history["loss"]) == batched.nonfinite.epoch + 1
    else:
        assert len(batched.history["loss"]) == 60
    for a, b in zip(_leaves(batched.train_state), _leaves(per_epoch.train_state)):
        np.testing.assert_array_equal(a, b)


def test_what_needs_the_host_keeps_one_epoch_per_call(circle, monkeypatch):
    x, y = circle
    net = fn.Dense(1)
    fit = functools.partial(
        fn.fit, net, x, y, loss="mse", optimizer=optax.sgd(0.01), epochs=4, verbose=0
    )
    counts = _spy_calls(monkeypatch)
    fit(validation_data=(x, y))
    with compile_events() as warm:  # the validation data's check is not traced again
        fit(validation_data=(x, y))
    assert warm == []
    stopper = fn.callbacks.EarlyStopping(monitor="loss", patience=1)
    fit(callbacks=[stopper])
    scheduled = optax.inject_hyperparams(optax.sgd)(learning_rate=0.01)
    with_rate = fit(optimizer=scheduled)  # the learning rate is logged from the state
    assert set(counts) == {1}
    assert len(with_rate.history["learning_rate"]) == 4


def test_an_integer_seed_is_the_key_it_names(circle):
    # fit makes a seed's key in one compiled call: the same key as jax.random.key,
    # with the default implementation in force at the call.
    x, y = circle
    fit = functools.partial(
        fn.fit, fn.Dense(1), x, y, loss="mse", optimizer=optax.sgd(0.1), epochs=2, verbose=0
    )
    by_seed, by_key = fit(key=-7), fit(key=jax.random.key(-7))
    assert by_seed.history == by_key.history
    for a, b in zip(_leaves(by_seed.train_state), _leaves(by_key.train_state)):
        np.testing.assert_array_equal(a, b)
    with jax.default_prng_impl("rbg"):
        seeded = fn.init_train_state(fn.Dense(1), optax.sgd(0.1), (None, 2), key=jax.random.key(3))
        assert fit(key=3, epochs=0).train_state.key.dtype == seeded.key.dtype
