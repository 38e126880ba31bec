"""Registry cases for Embedding: integer ids in, vectors in the table's dtype out."""

import jax
import jax.numpy as jnp

import funcnet as fn
from tests.registry import Case

VOCAB = 7


def random_ids(key, shape, dtype):
    return jax.random.randint(key, shape, 0, VOCAB, dtype)


CASES = [
    # The output follows the table's dtype, not the (integer) input's.
    Case(
        "Embedding",
        lambda: fn.Embedding(VOCAB, 3),
        (None, 5),
        make_input=random_ids,
        input_dtype=jnp.int32,
        float_dtypes=False,
    ),
    Case(
        "Embedding",
        lambda: fn.Embedding(VOCAB, 2),
        jax.ShapeDtypeStruct((None, 2, 3), jnp.int32),
        make_input=random_ids,
        input_dtype=jnp.int32,
        float_dtypes=False,
        id="spec-rank3",
    ),
]

# Masking's output is (x, mask); a masked recurrent layer after it gives one float array.
CASES.append(
    Case(
        "Masking",
        lambda: fn.serial(fn.Masking(0.0), fn.SimpleRNN(2, masked=True)),
        (None, 3, 2),
        id="into-masked-recurrent",
    )
)

# pass_mask carries Masking's mask past a Dense to the masked recurrent layer.
CASES.append(
    Case(
        "pass_mask",
        lambda: fn.serial(fn.Masking(0.0), fn.pass_mask(fn.Dense(3)), fn.SimpleRNN(2, masked=True)),
        (None, 3, 2),
        id="dense-into-masked-recurrent",
    )
)
