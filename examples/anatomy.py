"""Layers fit together by shape: Dense(32) on 784 inputs, then Dense(32) with no input size.

As in the anatomy-of-a-network tutorial, only the first layer is told its input
size; every later layer takes its input size from the layer before it.

    python examples/anatomy.py
"""

from __future__ import annotations

import funcnet as fn


def main() -> str:
    model = fn.serial(fn.Dense(32), fn.Dense(32))
    table = fn.summary(model, (None, 784))
    print(table)
    return table


if __name__ == "__main__":
    fn.enable_compilation_cache()  # a second run loads its programs from disk
    main()
