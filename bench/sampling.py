"""Sampling speed of a TransformerLM with and without the key/value cache.

    python bench/sampling.py            # 128 wide, 4 blocks, prompt 16, 240 new tokens
    python bench/sampling.py --quick    # tiny

With the cache (``fn.generate`` on the ``decode=True`` twin) each new token is
one step over a single position that attends to the cached keys and values.
Without it, each new token recomputes the whole sequence with the training
model (a fixed ``[batch, prompt + steps]`` buffer, the unfilled tail hidden
by the causal mask, so one compiled program serves every step, itself
compiled). Both are greedy and give the same tokens (checked here, and in
tests/test_transformer.py). Compilation is excluded: each variant runs once
before it is timed; the figure is the median of the repeats. The results are
recorded in bench/README.md.
"""

from __future__ import annotations

import argparse
import statistics
import time


def sizes_for(quick: bool) -> dict[str, int]:
    """The model and the generation of the full or the quick run."""
    if quick:
        return {"vocab": 32, "features": 16, "depth": 1, "heads": 2, "batch": 1, "prompt": 4,
                "steps": 12}  # fmt: skip
    return {"vocab": 128, "features": 128, "depth": 4, "heads": 4, "batch": 1, "prompt": 16,
            "steps": 240}  # fmt: skip


def measure(quick: bool = False, repeats: int = 3) -> dict[str, list[float]]:
    """Tokens per second, ``{"cached": [...], "uncached": [...]}``, one sample per repeat."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import funcnet as fn

    sizes = sizes_for(quick)
    vocab, features, depth, heads = (sizes[k] for k in ("vocab", "features", "depth", "heads"))
    batch, prompt_length, steps = sizes["batch"], sizes["prompt"], sizes["steps"]
    total = prompt_length + steps
    lm = fn.TransformerLM(vocab, features, depth, heads)
    decoder = fn.TransformerLM(vocab, features, depth, heads, decode=True)
    _, params, state = lm.init(0, jax.ShapeDtypeStruct((None, total), jnp.int32))
    prompt = jax.random.randint(jax.random.key(1), (batch, prompt_length), 0, vocab)

    def cached():
        return fn.generate(decoder, params, prompt, steps, temperature=0)

    @jax.jit
    def uncached_program(params, prompt):
        buffer = jnp.zeros((batch, total), jnp.int32).at[:, :prompt_length].set(prompt)

        def step(buffer, t):  # the whole sequence again, for one new token
            logits, _ = lm.apply(params, state, buffer)
            token = jnp.argmax(jax.lax.dynamic_index_in_dim(logits, t - 1, 1, False), -1)
            return jax.lax.dynamic_update_index_in_dim(buffer, token[:, None], t, 1), None

        buffer, _ = jax.lax.scan(step, buffer, jnp.arange(prompt_length, total))
        return buffer[:, prompt_length:]

    def uncached():
        return uncached_program(params, prompt)

    np.testing.assert_array_equal(cached(), uncached())  # also compiles both
    figures: dict[str, list[float]] = {}
    for label, run in (("cached", cached), ("uncached", uncached)):
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready(run())
            samples.append(steps * batch / (time.perf_counter() - start))
        figures[label] = samples
    return figures


def main(quick: bool = False, repeats: int = 3) -> dict[str, float]:
    figures = {k: statistics.median(v) for k, v in measure(quick, repeats).items()}
    s = sizes_for(quick)
    features, depth, heads, vocab = s["features"], s["depth"], s["heads"], s["vocab"]
    prompt_length, steps = s["prompt"], s["steps"]
    size = f"{features} wide, {depth} blocks, {heads} heads, vocab {vocab}"
    print("| model | prompt | new tokens | cached (tokens/s) | uncached (tokens/s) | speed-up |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(
        f"| {size} | {prompt_length} | {steps} | {figures['cached']:.0f} | "
        f"{figures['uncached']:.0f} | {figures['cached'] / figures['uncached']:.1f}x |"
    )
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny model, one repeat")
    args = parser.parse_args()
    main(quick=args.quick, repeats=1 if args.quick else 3)
