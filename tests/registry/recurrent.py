"""Registry cases for SimpleRNN, LSTM, GRU and Bidirectional (T=4, D=3, units 5)."""

import jax

import funcnet as fn
from tests.registry import Case


def _with_carry(key, shape, dtype):
    # (x, carry) inputs: the carry is a shape or, for an LSTM, a pair of shapes.
    if all(isinstance(d, int) for d in shape):
        return jax.random.normal(key, shape, dtype)
    keys = jax.random.split(key, len(shape))
    return tuple(_with_carry(k, s, dtype) for k, s in zip(keys, shape))


SEQ = (None, 4, 3)
H = (None, 5)

CASES = [
    Case("SimpleRNN", lambda: fn.SimpleRNN(5), SEQ),
    Case("SimpleRNN", lambda: fn.SimpleRNN(5, return_sequences=True), SEQ, id="sequences"),
    Case(
        "SimpleRNN",
        lambda: fn.SimpleRNN(5, "relu", return_state=True, use_bias=False),
        (SEQ, H),
        make_input=_with_carry,
        grad_check=False,  # relu has a kink
        id="carry-state",
    ),
    Case("LSTM", lambda: fn.LSTM(5), SEQ),
    Case(
        "LSTM",
        lambda: fn.LSTM(5, return_sequences=True, return_state=True),
        (SEQ, (H, H)),
        make_input=_with_carry,
        id="carry-state",
    ),
    Case("GRU", lambda: fn.GRU(5), SEQ),
    Case(
        "GRU",
        lambda: fn.GRU(5, return_sequences=True, return_state=True),
        (SEQ, H),
        make_input=_with_carry,
        id="carry-state",
    ),
    # Dropout is inactive in the generic (inference) tests; go_backwards reads x reversed.
    *(
        Case(
            kind,
            lambda kind=kind: getattr(fn, kind)(
                5, return_sequences=True, dropout=0.2, recurrent_dropout=0.2, go_backwards=True
            ),
            SEQ,
            id="dropout-backwards",
        )
        for kind in ("SimpleRNN", "LSTM", "GRU")
    ),
    Case("Bidirectional", lambda: fn.Bidirectional(fn.LSTM(5, return_sequences=True)), SEQ),
    Case("Bidirectional", lambda: fn.Bidirectional(fn.GRU(5), merge="ave"), SEQ, id="gru-ave"),
    Case(
        "Bidirectional",
        lambda: fn.Bidirectional(fn.SimpleRNN(5, return_state=True), merge=None),
        (SEQ, (H, H)),
        make_input=_with_carry,
        id="carry-state-pair",
    ),
]
