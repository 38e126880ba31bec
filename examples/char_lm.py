"""A character-level Transformer language model on CPython's own documentation.

The text ships with Python (``pydoc_data.topics``, the help pages of the
language reference: about 465,000 characters), so nothing is downloaded.
The last tenth is held out. Three models are scored on it in bits per
character (lower is better):

* a unigram baseline: each character's training frequency, ignoring context;
* a small LSTM (``Embedding``, ``LSTM(128)``, ``Dense``), trained on the same windows;
* ``fn.TransformerLM``: rotary positions, pre-norm blocks, embedding tied to
  the output, trained with ``fn.fit``.

Then the Transformer writes some text with ``fn.generate`` (key/value cache).

    python examples/char_lm.py            # a few minutes on 2 CPU cores
"""

from __future__ import annotations

import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import funcnet as fn


def load_text() -> str:
    from pydoc_data.topics import topics

    return "\n".join(topics[name] for name in sorted(topics))


def windows(data: np.ndarray, count: int, context: int, rng: np.random.Generator):
    """``count`` random windows: inputs ``[count, context]`` and next characters."""
    starts = rng.integers(0, len(data) - context - 1, size=count)
    x = np.stack([data[s : s + context] for s in starts])
    y = np.stack([data[s + 1 : s + context + 1] for s in starts])
    return x, y


def bits_per_char(net, params, state, x, y, batch=64) -> float:
    """Mean cross-entropy of next-character logits, in bits."""

    @jax.jit
    def nats(x, y):
        logits, _ = net.apply(params, state, x)
        return optax.losses.softmax_cross_entropy_with_integer_labels(logits, y).sum()

    total = sum(float(nats(x[i : i + batch], y[i : i + batch])) for i in range(0, len(x), batch))
    return total / y.size / math.log(2)


def unigram_bits(train: np.ndarray, val: np.ndarray, vocab: int) -> float:
    counts = np.bincount(train, minlength=vocab) + 1.0  # add-one: unseen characters
    log2p = np.log2(counts / counts.sum())
    return float(-log2p[val].mean())


def train(net, x, y, *, steps, batch_size, learning_rate, key):
    schedule = optax.warmup_cosine_decay_schedule(0.0, learning_rate, steps // 10 + 1, steps)
    optimizer = optax.chain(
        optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=0.01)
    )
    loss = functools.partial(fn.sparse_categorical_crossentropy, from_logits=True)
    result = fn.fit(
        net, x, y, loss=loss, optimizer=optimizer, epochs=1, batch_size=batch_size, key=key,
        verbose=0,
    )  # fmt: skip
    return result


def main(
    steps: int = 1000,
    features: int = 64,
    depth: int = 3,
    num_heads: int = 4,
    context: int = 64,
    batch_size: int = 32,
    lstm_units: int | None = 128,
    learning_rate: float = 3e-3,
    sample_length: int | None = None,
    verbose: bool = True,
) -> dict[str, float]:
    """Trains both models for ``steps`` batches; returns validation bits per character.

    ``lstm_units=None`` skips the LSTM baseline (the smoke test does).
    ``sample_length`` defaults to what fits in the trained context: beyond
    it the model would meet positions it never trained on.
    """
    say = print if verbose else (lambda *a, **k: None)
    text = load_text()
    chars = sorted(set(text))
    vocab = len(chars)
    lookup = {c: i for i, c in enumerate(chars)}
    data = np.fromiter((lookup[c] for c in text), np.int32, len(text))
    split = int(0.9 * len(data))
    train_data, val_data = data[:split], data[split:]
    rng = np.random.default_rng(0)
    x, y = windows(train_data, steps * batch_size, context, rng)
    val_x, val_y = windows(val_data, 512, context, rng)
    say(f"{len(text):,} characters, {vocab} distinct; {steps} steps of {batch_size} x {context}")

    results = {"unigram": unigram_bits(train_data, val_y.ravel(), vocab)}
    say(f"unigram baseline: {results['unigram']:.3f} bits/char")

    if lstm_units is not None:
        lstm = fn.serial(
            fn.Embedding(vocab, 64), fn.LSTM(lstm_units, return_sequences=True), fn.Dense(vocab)
        )
        start = time.perf_counter()
        fitted = train(
            lstm, x, y, steps=steps, batch_size=batch_size, learning_rate=learning_rate, key=1
        )
        results["lstm"] = bits_per_char(lstm, fitted.params, fitted.state, val_x, val_y)
        seconds = time.perf_counter() - start
        say(f"LSTM({lstm_units}): {results['lstm']:.3f} bits/char ({seconds:.0f} s)")

    def transformer(decode=False):
        return fn.TransformerLM(vocab, features, depth, num_heads, decode=decode)

    lm = transformer()
    start = time.perf_counter()
    fitted = train(lm, x, y, steps=steps, batch_size=batch_size, learning_rate=learning_rate, key=2)
    results["transformer"] = bits_per_char(lm, fitted.params, fitted.state, val_x, val_y)
    say(
        f"TransformerLM({features} wide, {depth} blocks, {num_heads} heads): "
        f"{results['transformer']:.3f} bits/char ({time.perf_counter() - start:.0f} s)"
    )

    prompt = "The "
    sample_length = sample_length or context - len(prompt)
    ids = jnp.array([[lookup[c] for c in prompt]], jnp.int32)
    tokens = fn.generate(
        transformer(decode=True), fitted.params, ids, sample_length, key=3, temperature=0.8
    )
    say("sample:\n" + prompt + "".join(chars[int(i)] for i in tokens[0]))
    return results


if __name__ == "__main__":
    fn.enable_compilation_cache()
    main()
