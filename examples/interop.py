"""funcnet between Flax and Keras: one model crossing three boundaries.

1. A Flax Linen block (Dense, LayerNorm, GELU) sits between native funcnet
   layers in one model, trained by ``fn.fit``: ``fn.from_flax`` makes the
   module a funcnet layer, its params in funcnet's ``params``.
2. The trained model goes to Keras with ``fn.to_keras``: Keras predicts what
   funcnet predicts, and ``model.fit`` trains it on for a couple of epochs.
3. A Keras model, trained by Keras, comes over with its weights
   (``fn.from_keras``): the native funcnet model predicts what Keras predicts
   and ``fn.fit`` fine-tunes it.

Needs ``pip install -e ".[interop]"`` (Flax, Keras 3 on its JAX backend).

    python examples/interop.py
"""

import os  # no `from __future__ import annotations`: Flax reads FlaxBlock's field types

os.environ.setdefault("KERAS_BACKEND", "jax")  # before Keras is first imported

import flax.linen as nn
import jax
import keras
import numpy as np
import optax

import funcnet as fn


class FlaxBlock(nn.Module):
    """A Flax Linen residual block: ``[batch, features] -> [batch, features]``."""

    features: int = 16

    @nn.compact
    def __call__(self, x):
        h = nn.gelu(nn.LayerNorm()(nn.Dense(self.features)(x)))
        return x + h


def data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth regression target of 4 inputs: ``x [n, 4]``, ``y [n, 1]``."""
    x = np.random.default_rng(seed).uniform(-1, 1, (n, 4)).astype(np.float32)
    y = np.sin(2 * x[:, :1]) * x[:, 1:2] + 0.5 * x[:, 2:3] * x[:, 3:4]
    return x, y.astype(np.float32)


def flax_inside_funcnet(x, y, epochs: int) -> dict:
    """A Flax block between funcnet layers, trained by ``fn.fit``."""
    net = fn.serial(fn.Dense(16), fn.from_flax(FlaxBlock(16)), fn.Dense(1))
    print(fn.summary(net, (None, 4)))
    result = fn.fit(net, x, y, loss="mse", optimizer=optax.adam(0.01), epochs=epochs,
                    batch_size=32, verbose=0)  # fmt: skip
    losses = result.history["loss"]
    print(f"1. Flax block inside funcnet, fn.fit: loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    return {"net": net, "result": result, "losses": losses}


def funcnet_inside_keras(net, result, x, y, epochs: int) -> dict:
    """The trained funcnet model as a Keras layer, trained on by ``model.fit``."""
    layer = fn.to_keras(net, params=result.params, state=result.state)
    model = keras.Sequential([keras.Input((4,)), layer])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    funcnet_out = np.asarray(fn.predict(net, result.params, result.state, x))
    keras_out = model.predict(x, verbose=0)
    gap = float(np.max(np.abs(keras_out - funcnet_out)))
    history = model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
    losses = history.history["loss"]
    print(f"2. funcnet model inside Keras: predictions differ by {gap:.1e}; "
          f"model.fit loss {losses[0]:.4f} -> {losses[-1]:.4f}")  # fmt: skip
    return {"model": model, "gap": gap, "losses": losses, "funcnet_out": funcnet_out,
            "keras_out": keras_out}  # fmt: skip


def keras_into_funcnet(x, y, keras_epochs: int, epochs: int) -> dict:
    """A Keras-trained model rebuilt from funcnet layers with its weights, then fine-tuned."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(1),
    ])  # fmt: skip
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    model.fit(x, y, batch_size=32, epochs=keras_epochs, verbose=0)

    net, params, state = fn.from_keras(model)
    keras_out = model.predict(x, verbose=0)
    funcnet_out = np.asarray(fn.predict(net, params, state, x))
    gap = float(np.max(np.abs(keras_out - funcnet_out)))
    before = float(np.mean((funcnet_out - y) ** 2))

    opt = optax.adam(1e-3)  # fit starts from the Keras weights, held in a TrainState
    start = fn.TrainState(params, state, opt.init(params), np.int32(0), jax.random.key(0))
    result = fn.fit(net, x, y, loss="mse", optimizer=opt, epochs=epochs, batch_size=32,
                    train_state=start, verbose=0)  # fmt: skip
    after = float(np.mean((np.asarray(fn.predict(net, result.params, result.state, x)) - y) ** 2))
    print(f"3. Keras model brought over: predictions differ by {gap:.1e}; "
          f"fn.fit fine-tuning takes its loss {before:.4f} -> {after:.4f}")  # fmt: skip
    return {"net": net, "gap": gap, "before": before, "after": after}


def main(n: int = 256, epochs: int = 30, keras_epochs: int = 2, fine_tune_epochs: int = 20) -> dict:
    """Runs the three crossings on one data set; returns what each measured."""
    x, y = data(n)
    # Keras (and Flax) code broadcasts biases with implicit rank promotion;
    # allow it here even where a project sets jax_numpy_rank_promotion="raise".
    with jax.numpy_rank_promotion("allow"):
        inside = flax_inside_funcnet(x, y, epochs)
        keras_side = funcnet_inside_keras(inside["net"], inside["result"], x, y, keras_epochs)
        brought = keras_into_funcnet(x, y, keras_epochs, fine_tune_epochs)
    return {"flax": inside, "to_keras": keras_side, "from_keras": brought}


if __name__ == "__main__":
    main()
