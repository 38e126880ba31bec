"""Gradient accumulation: k micro-batches per update equal one batch of k times the size."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import funcnet as fn

NET = fn.serial(fn.Dense(8, "tanh"), fn.Dense(1))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 3)).astype(np.float32)
    return x, np.cos(x[:, :1] * 2 + x[:, 1:2]).astype(np.float32)


def close(a, b, tol=1e-5):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(u, v, rtol=tol, atol=tol)


OPTIONS = dict(loss="mse", optimizer=optax.adam(0.01), metrics="mae", epochs=2, verbose=0)


@pytest.fixture(scope="module")
def large(data):
    return fn.fit(NET, *data, batch_size=16, **OPTIONS)


def test_fit_with_accumulate_equals_one_large_batch(data, large):
    micro = fn.fit(NET, *data, batch_size=16, accumulate=4, **OPTIONS)  # 4 micro-batches of 4
    close(micro.params, large.params)
    close(micro.history, large.history)
    assert (
        int(micro.train_state.step) == int(large.train_state.step) == 6
    )  # updates, not micro-batches


@pytest.mark.slow  # another path to the same step: kept out of the quick suite
def test_accumulate_on_a_mesh_equals_one_large_batch(data, large):
    # The data is placed by the mesh's layout and each micro-batch is split
    # over its data axis (one device here: the code path, not the collectives).
    micro = fn.fit(NET, *data, batch_size=16, accumulate=2, mesh=jax.devices()[:1], **OPTIONS)
    close(micro.params, large.params)
    close(micro.history, large.history)


@pytest.mark.slow  # another path to the same step: kept out of the quick suite
def test_a_stream_of_batches_accumulates_too(data):
    x, y = data
    batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 48, 16)]
    opt = optax.sgd(0.1)
    micro = fn.fit(NET, batches, loss="mse", optimizer=opt, accumulate=2, verbose=0)
    ts = fn.init_train_state(NET, opt, (None, 3), key=0)
    step = fn.make_train_step(NET, "mse", opt)
    for batch in batches:
        ts, _ = step(ts, batch)
    close(micro.params, ts.params)


def test_make_train_step_with_accumulate_equals_the_whole_batch(data):
    x, y = jnp.asarray(data[0][:12]), jnp.asarray(data[1][:12])
    opt = optax.sgd(0.1)
    ts = fn.init_train_state(NET, opt, (None, 3), key=0)
    whole, loss = fn.make_train_step(NET, "mse", opt, donate=False)(ts, (x, y))
    parts, part_loss = fn.make_train_step(NET, "mse", opt, donate=False, accumulate=3)(ts, (x, y))
    close(parts.params, whole.params)
    np.testing.assert_allclose(part_loss, loss, rtol=1e-6)


def test_batch_norm_state_is_updated_micro_batch_by_micro_batch():
    net = fn.serial(fn.Dense(4), fn.BatchNorm(momentum=0.5), fn.Dense(1))
    opt = optax.sgd(0.1)
    x = jax.random.normal(jax.random.key(1), (8, 3))
    y = jnp.ones((8, 1))
    ts = fn.init_train_state(net, opt, (None, 3), key=0)
    new, loss = fn.make_train_step(net, "mse", opt, donate=False, accumulate=2)(ts, (x, y))
    # What docs/training.md promises: micro-batch i holds rows i, i + k, ...;
    # each normalises with its own statistics and updates the running ones in turn.
    apply = jax.jit(lambda p, s, x: net.apply(p, s, x, train=True))
    state, losses = ts.state, []
    for rows in (x[0::2], x[1::2]):
        out, state = apply(ts.params, state, rows)
        losses.append(jnp.mean((out - 1.0) ** 2))
    close(new.state, state, 1e-6)
    np.testing.assert_allclose(loss, np.mean(losses), rtol=1e-6)


def test_accumulate_errors(data):
    x, y = data
    with pytest.raises(ValueError, match="fit: accumulate must be a positive integer, got 0"):
        fn.fit(NET, x, y, loss="mse", optimizer="sgd", accumulate=0)
    with pytest.raises(
        ValueError,
        match=r"fit: batch_size 10 cannot be split into accumulate=4: .* Use batch_size=8",
    ):
        fn.fit(NET, x, y, loss="mse", optimizer="sgd", batch_size=10, accumulate=4)
    step = fn.make_train_step(NET, "mse", "sgd", accumulate=4)
    ts = fn.init_train_state(NET, "sgd", (None, 3))
    with pytest.raises(
        ValueError, match="train step: a batch of 6 examples cannot be split into accumulate=4"
    ):
        step(ts, (x[:6], y[:6]))


def test_the_learning_rate_is_logged_and_the_last_batch_trimmed_to_a_multiple_of_k(data, large):
    schedule = optax.exponential_decay(0.1, transition_steps=3, decay_rate=0.5)
    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=schedule)
    x, y = data[0][:46], data[1][:46]  # batches of 16, 16 and a last one of 14 -> 12
    result = fn.fit(NET, x, y, loss="mse", optimizer=opt, batch_size=16, accumulate=4, epochs=2, verbose=0)  # fmt: skip
    assert int(result.train_state.step) == 6  # 3 updates per epoch
    # The rate of each epoch's last update: steps 2 and 5 (from 0) of the schedule.
    np.testing.assert_allclose(result.history["learning_rate"], [schedule(2), schedule(5)], rtol=1e-6)  # fmt: skip
    assert "learning_rate" not in large.history  # optax.adam(0.01) does not expose it
