"""Hand-written JAX with optax: the reference every ratio is measured against.

Two ways to train, both written as a JAX user would without a library:

- "step loop": one ``jax.jit`` step (params and optimizer state donated),
  called from a Python loop;
- "epoch scan": one jitted program per epoch that shuffles on the device
  (``jax.random.permutation``) and runs the steps with ``lax.scan``, the last
  partial batch as one more step; the epoch's loss is fetched after every
  epoch, as a training loop that logs it (and as ``funcnet.fit``) does.

It also holds the hand-written ensembles (``jax.vmap`` over stacked params
versus one model after another) and the ``Repeat`` block (``lax.scan`` over
stacked params) for the depth workload.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bench.frameworks import _lm_jax
from bench.frameworks._jax_common import (
    ACTIVATIONS,
    GLOROT,
    ParamsStepLoop,
    optimizer,
    params_step,
)
from bench.spec import (
    Conv,
    Dense,
    Flatten,
    MaxPool,
    Repeat,
    Task,
    TransformerLM,
    Variant,
    input_shapes,
)

NAME = "jax"
DESCRIPTION = "hand-written JAX + optax"


def version() -> str:
    return f"jax {jax.__version__}, optax {optax.__version__}"


def _init_dense(key: jax.Array, fan_in: int, units: int) -> dict[str, jax.Array]:
    return {"w": GLOROT(key, (fan_in, units), jnp.float32), "b": jnp.zeros((units,), jnp.float32)}


def init_params(task: Task, key: jax.Array) -> list[Any]:
    params: list[Any] = []
    keys = jax.random.split(key, len(task.layers))
    for layer, shape, k in zip(task.layers, input_shapes(task), keys):
        if isinstance(layer, Dense):
            params.append(_init_dense(k, shape[-1], layer.units))
        elif isinstance(layer, Repeat):
            copies = jax.random.split(k, layer.n)
            init = functools.partial(_init_dense, fan_in=shape[-1], units=layer.layer.units)
            params.append(jax.vmap(init)(copies))
        elif isinstance(layer, Conv):
            w_shape = (*layer.kernel, shape[-1], layer.features)
            params.append({"w": GLOROT(k, w_shape, jnp.float32), "b": jnp.zeros((layer.features,))})
        elif isinstance(layer, TransformerLM):
            params.append(_lm_jax.init(layer, k))
        else:
            params.append({})
    return params


def forward(task: Task, params: list[Any], x: jax.Array) -> jax.Array:
    for layer, p in zip(task.layers, params):
        if isinstance(layer, Dense):
            x = ACTIVATIONS[layer.activation](x @ p["w"] + p["b"][None, :])
        elif isinstance(layer, Repeat):
            act = ACTIVATIONS[layer.layer.activation]

            def block(h, q, act=act):
                return act(h @ q["w"] + q["b"][None, :]), None

            x, _ = jax.lax.scan(block, x, p)
        elif isinstance(layer, Conv):
            y = jax.lax.conv_general_dilated(
                x, p["w"], (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
            x = ACTIVATIONS[layer.activation](y + p["b"][None, None, None, :])
        elif isinstance(layer, MaxPool):
            window = (1, *layer.window, 1)
            x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, window, "VALID")
        elif isinstance(layer, Flatten):
            x = x.reshape(x.shape[0], -1)
        elif isinstance(layer, TransformerLM):
            x = _lm_jax.forward(layer, p, x)
    return x


def make_step(task: Task, opt: optax.GradientTransformation):
    """The pure step ``(params, opt_state, x, y) -> (params, opt_state, loss)``."""
    return params_step(task, opt, functools.partial(forward, task))


def make_epoch(task: Task, opt: optax.GradientTransformation, n: int, batch_size: int):
    """The pure epoch ``(params, opt_state, key, epoch, x, y) -> (params, opt_state, loss)``."""
    step = make_step(task, opt)
    full, rest = divmod(n, batch_size)

    def epoch(params, opt_state, key, index, x, y):
        order = jax.random.permutation(jax.random.fold_in(key, index), n)

        def body(carry, batch):
            params, opt_state, loss = step(*carry, x[batch], y[batch])
            return (params, opt_state), loss

        batches = order[: full * batch_size].reshape(full, batch_size)
        (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), batches)
        total = jnp.sum(losses) * batch_size
        if rest:
            last = order[full * batch_size :]
            params, opt_state, loss = step(params, opt_state, x[last], y[last])
            total = total + loss * rest
        return params, opt_state, total / n

    return epoch


class StepLoop(ParamsStepLoop):
    """A jitted step, called from Python once per batch."""

    def __init__(self, task: Task, seed: int):
        params = init_params(task, jax.random.key(seed))
        super().__init__(task, params, functools.partial(forward, task))


class KeyedStepLoop(StepLoop):
    """The step loop threading a PRNG key (split every step) and a step count.

    What a training loop with dropout carries besides params and optimizer
    state, and what a funcnet ``TrainState`` carries: the fair reference for
    the per-call cost of ``make_train_step``.
    """

    def __init__(self, task: Task, seed: int):
        super().__init__(task, seed)
        step = self.train_step

        def keyed(params, opt_state, key, count, x, y):
            key, _dropout_key = jax.random.split(key)
            params, opt_state, loss = step(params, opt_state, x, y)
            return params, opt_state, key, count + 1, loss

        self._keyed = jax.jit(keyed, donate_argnums=(0, 1, 2, 3))
        self.key = jax.random.key(seed + 1)
        self.count = jnp.zeros((), jnp.int32)

    def step(self, x: Any, y: Any) -> None:
        self.params, self.opt_state, self.key, self.count, self.loss = self._keyed(
            self.params, self.opt_state, self.key, self.count, x, y
        )

    def sync(self) -> None:
        jax.block_until_ready((self.params, self.opt_state, self.key, self.count))


class EpochScan:
    """One compiled ``lax.scan`` per epoch, the data on the device, shuffled there."""

    def __init__(self, task: Task, seed: int, programs: dict | None = None):
        self.task = task
        self.opt = optimizer(task)
        self.key = jax.random.key(seed)
        self.params = init_params(task, self.key)
        self.opt_state = self.opt.init(self.params)
        self.epochs_done = 0
        self.history: list[float] = []
        # Shared by the models of a sequential ensemble, so they compile once.
        self.programs = {} if programs is None else programs

    def program(self, n: int, batch_size: int):
        if (n, batch_size) not in self.programs:
            epoch = make_epoch(self.task, self.opt, n, batch_size)
            self.programs[n, batch_size] = jax.jit(epoch, donate_argnums=(0, 1))
        return self.programs[n, batch_size]

    def fit(self, x: np.ndarray, y: np.ndarray, epochs: int, batch_size: int) -> None:
        epoch = self.program(len(x), batch_size)
        x, y = jnp.asarray(x), jnp.asarray(y)
        for _ in range(epochs):
            self.params, self.opt_state, loss = epoch(
                self.params, self.opt_state, self.key, self.epochs_done, x, y
            )
            self.history.append(float(loss))
            self.epochs_done += 1

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(jax.jit(forward, static_argnums=0)(self.task, self.params, x))


VARIANTS = {
    "step loop": Variant("loop", StepLoop, "jax.jit step (donated) called from a Python loop"),
    "step loop, key and step": Variant(
        "loop",
        KeyedStepLoop,
        "the step loop also threading a PRNG key (split per step) and a step count",
        workloads=("overhead",),
    ),
    "epoch scan": Variant(
        "fit", EpochScan, "one jitted lax.scan per epoch, shuffled on the device"
    ),
}


# --------------------------------------------------------------------------
# Ensembles: n models from keys split(key(seed), n), each trained from scratch.


class VmapEnsemble:
    """All models in one program: the epoch and the init vmapped over stacked params."""

    def __init__(self, task: Task, seed: int, n_models: int):
        self.task, self.n_models = task, n_models
        self.keys = jax.random.split(jax.random.key(seed), n_models)
        self.opt = optimizer(task)
        self.init = jax.jit(jax.vmap(lambda k: init_params(task, k)))
        self.programs: dict = {}
        self.params: Any = None

    def fit(self, x: np.ndarray, y: np.ndarray, epochs: int, batch_size: int) -> None:
        n = len(x)
        if (n, batch_size) not in self.programs:
            epoch = jax.vmap(
                make_epoch(self.task, self.opt, n, batch_size), in_axes=(0, 0, 0, None, None, None)
            )
            self.programs[n, batch_size] = jax.jit(epoch, donate_argnums=(0, 1))
        epoch = self.programs[n, batch_size]
        params = self.init(self.keys)
        opt_state = jax.vmap(self.opt.init)(params)
        x, y = jnp.asarray(x), jnp.asarray(y)
        for i in range(epochs):
            params, opt_state, loss = epoch(params, opt_state, self.keys, i, x, y)
            np.asarray(loss)
        self.params = params

    def predict(self, x: np.ndarray) -> np.ndarray:
        run = jax.jit(jax.vmap(lambda p, x: forward(self.task, p, x), in_axes=(0, None)))
        return np.asarray(run(self.params, x))


class SequentialEnsemble:
    """One model after another, all sharing one compiled epoch program."""

    def __init__(self, task: Task, seed: int, n_models: int):
        self.task, self.seed, self.n_models = task, seed, n_models
        self.programs: dict = {}
        self.models: list[EpochScan] = []

    def fit(self, x: np.ndarray, y: np.ndarray, epochs: int, batch_size: int) -> None:
        self.models = []
        for i in range(self.n_models):
            model = EpochScan(self.task, self.seed + i, self.programs)
            model.fit(x, y, epochs, batch_size)
            self.models.append(model)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.stack([m.predict(x) for m in self.models])


ENSEMBLE = {
    "vmap": (VmapEnsemble, "jax.vmap of the epoch scan over stacked params, one program"),
    "sequential": (SequentialEnsemble, "the epoch scan run for one model after another"),
}
