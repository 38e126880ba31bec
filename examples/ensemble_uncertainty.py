"""An ensemble trained as one program (``fn.fit_many``), and its predictive uncertainty.

A deep ensemble (Lakshminarayanan et al., 2017) is several copies of a network
trained from different random inits; where they agree the prediction is
trustworthy, where they disagree it is not. With pure models the members need
no loop: ``fn.fit_many`` trains all of them as one ``jax.vmap``-ed, compiled
program over shared data, and ``jax.vmap(net.apply)`` predicts with all of
them at once.

The data is the TensorFlow Playground's "gauss": two blobs of points, class 1
around (2, 2) and class 0 around (-2, -2), all within radius 6 of the origin.
On the data the members agree; far from it each extrapolates its own boundary
between the blobs, and the spread of their predictions grows.

    python examples/ensemble_uncertainty.py
"""

from __future__ import annotations

import jax
import numpy as np
import optax

import funcnet as fn


def ensemble_probabilities(net, result, x):
    """``[members, n]``: each member's probability of class 1 at each point of ``x`` ``[n, 2]``."""
    members = jax.vmap(lambda params, state: jax.nn.sigmoid(net.apply(params, state, x)[0][:, 0]))
    return np.asarray(jax.jit(members)(result.params, result.state))


def ring(radius_from, radius_to, n=500, seed=1):
    """``[n, 2]`` points spread evenly over the ring between the two radii."""
    rng = np.random.default_rng(seed)
    radius = np.sqrt(rng.uniform(radius_from**2, radius_to**2, n))
    angle = rng.uniform(0, 2 * np.pi, n)
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], -1).astype(np.float32)


def main(members: int = 8, epochs: int = 50, hidden: int = 16, dataset: str = "gauss") -> dict:
    """Trains the ensemble; returns its test accuracy and its spread near and far from the data."""
    points, labels = fn.datasets.playground_data(dataset, noise=0.1, seed=0)
    (x, y), (test_x, test_y) = fn.datasets.playground_split(points, labels, 50, seed=0)
    y = (y[:, None] > 0).astype(np.float32)  # the Playground's -1/+1 labels as 0/1
    net = fn.serial(fn.Dense(hidden, activation="relu"), fn.Dense(hidden, activation="relu"),
                    fn.Dense(1))  # fmt: skip
    result = fn.fit_many(net, x, y, loss=lambda p, t: fn.binary_crossentropy(p, t, from_logits=True),
                         optimizer=optax.adam(0.01), seeds=members, epochs=epochs, batch_size=25)  # fmt: skip

    regions = {"on the data": test_x, "radius 6-10": ring(6, 10), "radius 10-20": ring(10, 20)}
    # One call for every point: one compiled program predicts with every member at once.
    probabilities = ensemble_probabilities(net, result, np.concatenate(list(regions.values())))
    accuracy = float(np.mean((probabilities[:, : len(test_x)].mean(0) > 0.5) == (test_y > 0)))
    print(f"{members} members trained as one program; the mean's test accuracy {accuracy:.3f}")
    spread, start = {}, 0
    for name, points_there in regions.items():
        p = probabilities[:, start : start + len(points_there)]
        start += len(points_there)
        spread[name] = float(p.std(0).mean())
        disagree = float(np.mean((p > 0.5).any(0) & (p <= 0.5).any(0)))
        print(f"{name:>12}: spread between members (std of the probability) {spread[name]:.3f}, "
              f"members disagree on the class at {100 * disagree:.1f}% of points")  # fmt: skip
    return {"accuracy": accuracy, "spread": spread, "net": net, "result": result}


if __name__ == "__main__":
    fn.enable_compilation_cache()  # a second run loads its programs from disk
    main()
