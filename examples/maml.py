"""MAML: ``jax.grad`` through several of funcnet's own train steps, on sine-wave regression.

Model-agnostic meta-learning (Finn et al., 2017) looks for initial params from
which a few steps of SGD on a handful of points fit a new task well. Its
objective is the loss *after* those steps, differentiated with respect to the
params *before* them: a gradient through the optimizer. funcnet's train step
is a pure function ``step(train_state, batch) -> (train_state, loss)``, so the
inner loop is that very step (``fn.make_train_step``), called a few times
inside the function that ``jax.grad`` differentiates, and ``jax.vmap`` runs
it over a batch of tasks. The baseline is the same program with no inner step:
one model fitted to all the tasks at once ("pretrained" in the paper).

Each task is ``y = amplitude * sin(x - phase)`` with amplitude in [0.1, 5],
phase in [0, pi] and x in [-5, 5]; a model sees ``shots`` points of a new task.

    python examples/maml.py
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

import funcnet as fn

NET = fn.serial(fn.Dense(40, activation="relu"), fn.Dense(40, activation="relu"), fn.Dense(1))
INNER = optax.sgd(0.01)
# donate=False: the inner step runs inside jax.grad, which reads its inputs again.
INNER_STEP = fn.make_train_step(NET, fn.mse, INNER, donate=False)


def sample_tasks(key, tasks):
    """``(amplitude, phase)``, each ``[tasks, 1, 1]``: ``tasks`` random sine waves."""
    amp_key, phase_key = jax.random.split(key)
    amplitude = jax.random.uniform(amp_key, (tasks, 1, 1), minval=0.1, maxval=5.0)
    return amplitude, jax.random.uniform(phase_key, (tasks, 1, 1), maxval=jnp.pi)


def sample_points(key, amplitude, phase, points):
    """``(x, y)``, each ``[tasks, points, 1]``: random points of each wave."""
    x = jax.random.uniform(key, (amplitude.shape[0], points, 1), minval=-5.0, maxval=5.0)
    return x, amplitude * jnp.sin(x - phase)


def adapt(params, state, x, y, steps):
    """The params after ``steps`` of funcnet's train step on one task's ``(x, y)``."""
    ts = fn.TrainState(
        params, state, INNER.init(params), jnp.zeros((), jnp.int32), jax.random.key(0)
    )
    # A scan rather than a Python loop: the step compiles once, whatever the number of steps.
    ts, _ = jax.lax.scan(lambda ts, _: INNER_STEP(ts, (x, y)), ts, length=steps)
    return ts.params


def task_loss(params, state, x, y, steps, shots):
    """Adapt on the first ``shots`` points, score on the rest: the loss MAML differentiates."""
    adapted = adapt(params, state, x[:shots], y[:shots], steps)
    return fn.mse(NET.apply(adapted, state, x[shots:])[0], y[shots:])


@functools.partial(jax.jit, static_argnames=("meta_steps", "inner_steps", "shots", "tasks"))
def meta_train(params, state, key, *, meta_steps, inner_steps, shots, tasks=25):
    """Adam on the mean ``task_loss`` over batches of new tasks: one compiled scan."""
    outer = optax.adam(1e-3)
    losses_of_tasks = jax.vmap(task_loss, (None, None, 0, 0, None, None))

    def meta_step(carry, key):
        params, opt_state = carry
        task_key, point_key = jax.random.split(key)
        x, y = sample_points(point_key, *sample_tasks(task_key, tasks), 2 * shots)
        loss, grads = jax.value_and_grad(
            lambda p: losses_of_tasks(p, state, x, y, inner_steps, shots).mean()
        )(params)
        updates, opt_state = outer.update(grads, opt_state)
        return (optax.apply_updates(params, updates), opt_state), loss

    keys = jax.random.split(key, meta_steps)
    (params, _), losses = jax.lax.scan(meta_step, (params, outer.init(params)), keys)
    return params, losses


@functools.partial(jax.jit, static_argnames=("shots", "steps", "tasks"))
def evaluate(params, state, key, *, shots, steps, tasks=200):
    """Mean squared errors on new waves (whole curves): before and after adapting, ``[2]``."""
    task_key, point_key = jax.random.split(key)
    amplitude, phase = sample_tasks(task_key, tasks)
    x, y = sample_points(point_key, amplitude, phase, shots)
    grid = jnp.linspace(-5.0, 5.0, 100)[:, None]

    def errors(x, y, amplitude, phase):
        truth = amplitude * jnp.sin(grid - phase)
        adapted = adapt(params, state, x, y, steps)
        return jnp.stack([fn.mse(NET.apply(p, state, grid)[0], truth) for p in (params, adapted)])

    return jax.lax.map(lambda task: errors(*task), (x, y, amplitude, phase)).mean(axis=0)


def main(
    meta_steps: int = 3000, inner_steps: int = 3, shots: int = 10, eval_steps: int = 5
) -> dict:
    """Meta-trains, pretrains and compares them on new waves; returns each one's error."""
    start = fn.init_train_state(NET, INNER, (None, 1), key=0)  # one compiled init program
    init_params, state = start.params, start.state
    train_key, eval_key = jax.random.split(jax.random.key(1))
    kw = dict(meta_steps=meta_steps, shots=shots)
    maml, _ = meta_train(init_params, state, train_key, inner_steps=inner_steps, **kw)
    pretrained, _ = meta_train(init_params, state, train_key, inner_steps=0, **kw)
    errors = {}
    for name, params in [("maml", maml), ("pretrained", pretrained), ("untrained", init_params)]:
        before, after = evaluate(params, state, eval_key, shots=shots, steps=eval_steps).tolist()
        errors[name] = after
        print(f"{name:>10}: error on a new wave {before:.3f} before, "
              f"{after:.3f} after {eval_steps} steps on {shots} points")  # fmt: skip
    return errors


if __name__ == "__main__":
    fn.enable_compilation_cache()  # a second run loads its programs from disk
    main()
