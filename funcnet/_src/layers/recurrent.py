"""Recurrent layers over ``[batch, time, features]``: SimpleRNN, LSTM, GRU.

Keras's cells, in Keras's params layout and gate order, run by a
``jax.lax.scan`` over time. An initial carry travels with the input
(``(x, initial_carry)``), and ``return_state=True`` returns the final one.
``dropout`` / ``recurrent_dropout`` and ``go_backwards`` mean what they mean
in Keras 3: one dropout mask per sequence, drawn from the ``key``, reused at
every step. The formulas and decisions are in
``docs/layers-attention-recurrent.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from funcnet._src.core import (
    InputShape,
    Layer,
    Params,
    State,
    check_float,
    expand_to,
    is_shape,
    shape_error,
    shape_of,
)
from funcnet._src.layers._checks import (
    GLOROT_UNIFORM,
    Initializer,
    check_flags,
    positive_int,
)
from funcnet._src.layers.activations import get_activation

_ORTHOGONAL = jax.nn.initializers.orthogonal()
ActivationLike = str | Callable[[jax.Array], jax.Array]


class _Cell(NamedTuple):
    """What distinguishes SimpleRNN, LSTM and GRU: their size, gates and step."""

    units: int  # the size of h (and c)
    gates: int  # number of units-sized blocks in w and u
    carries: int  # 1 (h) or 2 (h, c)
    init_bias: Callable[[jax.Array, int, Any], jax.Array]
    # (params, carry, x_t W, recurrent dropout masks or None) -> carry
    step: Callable[[dict, Any, jax.Array, Any], Any]


def _sequence_error(name: str, shape: tuple) -> Exception:
    return shape_error(
        name,
        f"expected an input of shape [batch, time, features], got shape {shape}. For a single "
        "time step use x[:, None, :]; to cut features into steps, reshape to "
        "(batch, time, features).",
    )


def describe(inputs: Any) -> str:
    """A short description of an input: arrays by their shapes, not their values."""
    if hasattr(inputs, "shape") and hasattr(inputs, "dtype"):
        return f"an array of shape {tuple(inputs.shape)}"
    if isinstance(inputs, (tuple, list)) and not is_shape(inputs):
        return "(" + ", ".join(describe(part) for part in inputs) + ")"
    return repr(inputs)


def _carry_error(name: str, n: int, units: int, got: Any) -> Exception:
    want = "h [batch, units]" if n == 1 else "a tuple (h, c), each [batch, units]"
    return shape_error(
        name,
        f"expected the initial carry as {want} with units {units}, got {got}. Pass "
        "(x, initial_carry), or x alone to start from zeros.",
    )


def _unpack(carry: Any, n: int) -> Any:
    """The carry as its ``n`` parts: users pass ``h`` alone, or the pair ``(h, c)``."""
    return (carry,) if n == 1 else carry


def _pack(parts: tuple) -> Any:
    """The inverse of ``_unpack``: ``h`` alone for one part, else the tuple."""
    return parts[0] if len(parts) == 1 else parts


def _check_carry_shapes(name: str, n: int, units: int, batch: Any, carry: Any) -> tuple:
    """The carry as a tuple of ``n`` shapes ``(batch, units)``, or an error saying what arrived."""
    parts = _unpack(carry, n)
    if (
        not isinstance(parts, (tuple, list))
        or len(parts) != n
        or not all(is_shape(p) for p in parts)
    ):
        got = shape_of(carry) if n == 1 and is_shape(carry) else carry
        raise _carry_error(name, n, units, got)
    for p in parts:
        s = shape_of(p)
        if len(s) != 2 or s[1] != units or (None not in (batch, s[0]) and s[0] != batch):
            got = tuple(shape_of(q) for q in parts) if n == 2 else s
            raise _carry_error(name, n, units, f"{got} for a batch of {batch}")
    return tuple(parts)


def _dropout_rate(name: str, argument: str, what: str, rate: Any) -> float:
    """``rate`` as a float in [0, 1), or an error saying what it means."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
        raise ValueError(
            f"{name}: {argument} is the fraction of {what} dropped while training and must be "
            f"a number in [0, 1), got {rate!r}. Pass e.g. {argument}=0.2, or 0 for none."
        )
    return float(rate)


def _dropout_masks(key: jax.Array, rate: float, count: int, shape: tuple, dtype: Any) -> jax.Array:
    """``count`` inverted-dropout masks ``[count, *shape]``: 0, or ``1 / (1 - rate)`` kept."""
    keep = jax.random.bernoulli(key, 1.0 - rate, (count, *shape))
    return jnp.where(keep, jnp.asarray(1.0 / (1.0 - rate), dtype), jnp.zeros((), dtype))


def _dropped(h: jax.Array, masks: jax.Array | None, gate: int) -> jax.Array:
    """``h`` as gate ``gate``'s recurrent transformation sees it (masked when training)."""
    return h if masks is None else h * masks[gate]


def _recurrent_matmul(h: jax.Array, u: jax.Array, masks: jax.Array | None) -> jax.Array:
    """``h U`` for all gates; with recurrent dropout, each gate's block from its own masked h."""
    if masks is None:
        return h @ u
    blocks = jnp.split(u, masks.shape[0], axis=-1)
    return jnp.concatenate([(h * m) @ block for m, block in zip(masks, blocks)], axis=-1)


def _input_matmul(x: jax.Array, w: jax.Array, masks: jax.Array | None) -> jax.Array:
    """``x W`` for every step ``[time, batch, gates*units]``, the input dropout masks applied.

    ``masks`` is None, one mask ``[1, batch, features]`` shared by all gates, or
    one per gate; a mask holds for the whole sequence, so it broadcasts over time.
    """
    if masks is None:
        return jnp.einsum("btd,dg->tbg", x, w)
    blocks = jnp.split(w, masks.shape[0], axis=-1)
    return jnp.concatenate(
        [jnp.einsum("btd,dg->tbg", x * m[:, None, :], block) for m, block in zip(masks, blocks)],
        axis=-1,
    )


def _recurrent(
    cell: _Cell,
    return_sequences: bool,
    return_state: bool,
    use_bias: bool,
    w_init: Initializer,
    u_init: Initializer,
    dtype: Any,
    param_dtype: Any,
    name: str,
    masked: bool = False,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    go_backwards: bool = False,
) -> Layer:
    """The layer skeleton shared by every cell: checks, params, carry, scan and outputs."""
    units, n = positive_int(name, "units", cell.units), cell.carries
    check_flags(
        name,
        return_sequences=return_sequences,
        return_state=return_state,
        use_bias=use_bias,
        masked=masked,
        go_backwards=go_backwards,
    )
    dropout = _dropout_rate(name, "dropout", "the input units", dropout)
    recurrent_dropout = _dropout_rate(
        name, "recurrent_dropout", "the recurrent state units", recurrent_dropout
    )
    # Keras 3's cells: with recurrent dropout (its implementation 1) every gate
    # draws its own input and recurrent masks; without it, one input mask
    # serves all gates (the fused implementation 2).
    input_masks = cell.gates if recurrent_dropout > 0 else 1

    def split(inputs: Any, is_one: Callable[[Any], bool]) -> tuple[Any, Any]:
        def is_x(a: Any) -> bool:  # x alone, or the pair (x, mask) when masked
            if not masked:
                return is_one(a)
            return isinstance(a, (tuple, list)) and len(a) == 2 and all(map(is_one, a))

        if is_x(inputs):
            return inputs, None
        if isinstance(inputs, (tuple, list)) and len(inputs) == 2 and is_x(inputs[0]):
            return inputs[0], inputs[1]
        if masked:
            raise shape_error(
                name,
                "built with masked=True, expected (x, mask) with x [batch, time, features] and "
                "mask [batch, time], or ((x, mask), initial_carry), got "
                f"{describe(inputs)}. Put fn.Masking() or fn.Embedding(..., mask_zero=True) "
                "in front, or build the layer with masked=False.",
            )
        raise shape_error(
            name,
            f"expected x [batch, time, features] or (x, initial_carry), got {describe(inputs)}.",
        )

    def check_mask(x_shape: tuple, mask_shape: tuple) -> None:
        if tuple(mask_shape) != tuple(x_shape[:2]):
            raise shape_error(
                name,
                f"expected a mask of shape [batch, time] = {tuple(x_shape[:2])} for x of shape "
                f"{tuple(x_shape)}, got mask shape {tuple(mask_shape)}. Give the mask of this "
                "x, True for its real steps (fn.Masking computes one from padded x).",
            )

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Any, Params, State]:
        x_spec, carry_spec = split(input_shape, is_shape)
        mask_spec = None
        if masked:
            x_spec, mask_spec = x_spec
        shape = shape_of(x_spec)
        if len(shape) != 3:
            raise _sequence_error(name, shape)
        if mask_spec is not None:
            check_mask(shape, shape_of(mask_spec))
        if shape[2] is None:
            raise shape_error(name, f"the feature dimension must be known at init, got {shape}.")
        if carry_spec is not None:
            _check_carry_shapes(name, n, units, shape[0], carry_spec)
        w_key, u_key, b_key = jax.random.split(key, 3)
        params = {
            "w": w_init(w_key, (shape[2], cell.gates * units), param_dtype),
            "u": u_init(u_key, (units, cell.gates * units), param_dtype),
        }
        if use_bias:
            params["b"] = cell.init_bias(b_key, units, param_dtype)
        y_shape: Any = (shape[0], shape[1], units) if return_sequences else (shape[0], units)
        if masked and return_sequences:  # the mask goes on to the next layer, as in Keras
            y_shape = (y_shape, shape_of(mask_spec))
        if not return_state:
            return y_shape, params, {}
        return (y_shape, _pack(((shape[0], units),) * n)), params, {}

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[Any, State]:
        x, carry = split(x, lambda a: not isinstance(a, (tuple, list)))
        mask = None
        if masked:
            x, mask = x
        x = check_float(name, x)
        if x.ndim != 3:
            raise _sequence_error(name, x.shape)
        if mask is not None:
            mask = jnp.asarray(mask)
            check_mask(x.shape, mask.shape)
            mask = mask.astype(bool)
        w = params["w"]
        if x.shape[2] != w.shape[0]:
            raise shape_error(
                name,
                f"expected input with {w.shape[0]} features (the size given at init), got "
                f"shape {x.shape}. Check the previous layer's output, or re-run init with this "
                "input shape.",
            )
        compute_dtype = dtype or x.dtype
        p = {k: v.astype(compute_dtype) for k, v in params.items()}
        batch = x.shape[0]
        if carry is None:
            parts = tuple(jnp.zeros((batch, units), compute_dtype) for _ in range(n))
        else:
            arrays = jax.tree.map(jnp.asarray, carry)
            shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), arrays)
            _check_carry_shapes(name, n, units, batch, shapes)
            parts = tuple(a.astype(compute_dtype) for a in _unpack(arrays, n))
        x_masks = h_masks = None
        if train and (dropout > 0 or recurrent_dropout > 0):
            if key is None:
                raise shape_error(
                    name,
                    f"{name} with dropout={dropout} and recurrent_dropout={recurrent_dropout} "
                    "needs a key when train=True: call net.apply(params, state, x, train=True, "
                    "key=jax.random.key(0)) (fit and the train step pass one for you).",
                )
            x_key, h_key = jax.random.split(key)
            if dropout > 0:
                shape = (batch, x.shape[2])
                x_masks = _dropout_masks(x_key, dropout, input_masks, shape, compute_dtype)
            if recurrent_dropout > 0:
                shape = (batch, units)
                h_masks = _dropout_masks(h_key, recurrent_dropout, cell.gates, shape, compute_dtype)
        step_mask = mask
        if go_backwards:  # Keras's: read the sequence (and its mask) from its last step
            x = jnp.flip(x, axis=1)
            step_mask = None if mask is None else jnp.flip(mask, axis=1)
        # x W for every step at once: one large matmul outside the sequential scan.
        xw = _input_matmul(x.astype(compute_dtype), p["w"], x_masks)

        def body(c: tuple[jax.Array, ...], xw_t: jax.Array) -> tuple[Any, jax.Array]:
            c = cell.step(p, c, xw_t, h_masks)
            return c, c[0]

        def masked_body(c: tuple[jax.Array, ...], step_in: tuple) -> tuple[Any, jax.Array]:
            # Keras's rule: a masked step keeps the carry, and its output repeats
            # the previous output (the carried h).
            xw_t, m_t = step_in
            new = cell.step(p, c, xw_t, h_masks)
            c = tuple(jnp.where(m_t[:, None], a, b) for a, b in zip(new, c))
            return c, c[0]

        if step_mask is None:
            final, hs = jax.lax.scan(body, parts, xw)
        else:
            final, hs = jax.lax.scan(masked_body, parts, (xw, jnp.swapaxes(step_mask, 0, 1)))
        # With go_backwards the sequences stay in the order they were read, as Keras's do.
        y: Any = jnp.swapaxes(hs, 0, 1) if return_sequences else final[0]
        if mask is not None and return_sequences:
            y = (y, mask)  # the mask as it came in, as Keras's compute_mask passes it on
        if not return_state:
            return y, state
        return (y, _pack(final)), state

    return Layer(init, apply, name)


def _gate(p: dict, h: jax.Array, xw_t: jax.Array, h_masks: jax.Array | None) -> jax.Array:
    z = xw_t + _recurrent_matmul(h, p["u"], h_masks)
    return z + expand_to(p["b"], 2) if "b" in p else z


def _zeros_bias(
    shape_of_units: Callable[[int], tuple],
) -> Callable[[jax.Array, int, Any], jax.Array]:
    return lambda key, units, dtype: jnp.zeros(shape_of_units(units), dtype)


def SimpleRNN(
    units: int,
    activation: ActivationLike | None = "tanh",
    *,
    return_sequences: bool = False,
    return_state: bool = False,
    use_bias: bool = True,
    w_init: Initializer = GLOROT_UNIFORM,
    u_init: Initializer = _ORTHOGONAL,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
    masked: bool = False,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    go_backwards: bool = False,
    name: str = "SimpleRNN",
) -> Layer:
    """The Elman recurrent layer: ``h_t = activation(x_t W + h_{t-1} U + b)``.

    Args:
        units: the size of the hidden state ``h``.
        activation: a name from ``funcnet.ACTIVATIONS``, a function, or None (linear).
        return_sequences: return every step ``[batch, time, units]`` instead of
            the last ``[batch, units]``.
        return_state: return ``(y, h_final)`` so the sequence can be continued.
        use_bias: whether to add ``b``.
        w_init: initializer of ``w`` ``[features, units]``.
        u_init: initializer of ``u`` ``[units, units]``.
        dtype: the computation dtype; None computes in the input's dtype.
        param_dtype: the dtype in which the params are stored.
        masked: take ``(x, mask)``, mask ``[batch, time]`` (True for real
            steps): a masked step keeps the carry and repeats the previous
            output, as Keras's masks do. With ``return_sequences`` the output
            is ``(y, mask)``. See ``docs/layers-attention-recurrent.md``.
        dropout: the fraction of the input units dropped, for the input
            transformation, when ``train=True`` (Keras's ``dropout``): one mask
            ``[batch, features]`` per sequence, the same at every step, kept
            values scaled by ``1 / (1 - dropout)``. Training then needs ``key=``.
        recurrent_dropout: the fraction of the recurrent state units dropped,
            for the recurrent transformation, when ``train=True``: one mask
            ``[batch, units]`` per sequence, the same at every step.
        go_backwards: read each sequence from its last step to its first
            (Keras's ``go_backwards``); with ``return_sequences`` the outputs
            stay in that reversed order, and a mask passes on unchanged.
            ``Bidirectional`` reverses the sequence itself: give it layers
            built with ``go_backwards=False``.
        name: the name used in error paths and summaries.

    Returns:
        A layer taking ``x`` ``[batch, time, features]`` or ``(x, h0)`` with
        ``h0`` ``[batch, units]``; params ``{"w", "u", "b": [units]}``.

    Example:
        >>> import jax, funcnet as fn
        >>> rnn = fn.SimpleRNN(5, return_sequences=True)
        >>> rnn.init(jax.random.key(0), (None, 4, 3))[0]
        (None, 4, 5)
        >>> backwards = fn.SimpleRNN(5, return_sequences=True, go_backwards=True)
        >>> _, params, state = backwards.init(jax.random.key(0), (None, 4, 3))
        >>> x = jax.random.normal(jax.random.key(1), (2, 4, 3))
        >>> y, _ = backwards.apply(params, state, x)
        >>> y_flipped, _ = rnn.apply(params, state, x[:, ::-1])  # the same as reading x reversed
        >>> bool(jax.numpy.allclose(y, y_flipped))
        True
    """
    act = get_activation(activation, name)

    def step(
        p: dict[str, jax.Array],
        carry: tuple[jax.Array, ...],
        xw_t: jax.Array,
        h_masks: jax.Array | None,
    ) -> tuple[jax.Array, ...]:
        return (act(_gate(p, carry[0], xw_t, h_masks)),)

    cell = _Cell(units, 1, 1, _zeros_bias(lambda u: (u,)), step)
    return _recurrent(
        cell,
        return_sequences,
        return_state,
        use_bias,
        w_init,
        u_init,
        dtype,
        param_dtype,
        name,
        masked,
        dropout,
        recurrent_dropout,
        go_backwards,
    )


def LSTM(
    units: int,
    activation: ActivationLike | None = "tanh",
    recurrent_activation: ActivationLike | None = "sigmoid",
    *,
    return_sequences: bool = False,
    return_state: bool = False,
    use_bias: bool = True,
    unit_forget_bias: bool = True,
    w_init: Initializer = GLOROT_UNIFORM,
    u_init: Initializer = _ORTHOGONAL,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
    masked: bool = False,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    go_backwards: bool = False,
    name: str = "LSTM",
) -> Layer:
    """Long short-term memory, Keras's formulation (gates ``i, f, c, o``).

    Args:
        units: the size of the hidden state ``h`` and cell state ``c``.
        activation: applied to the candidate and to ``c`` (default tanh).
        recurrent_activation: applied to the gates ``i, f, o`` (default sigmoid).
        return_sequences: return every ``h_t`` ``[batch, time, units]`` instead
            of the last ``[batch, units]``.
        return_state: return ``(y, (h_final, c_final))``.
        use_bias: whether to add ``b`` ``[4*units]``.
        unit_forget_bias: initialise the forget-gate bias to 1 (else 0).
        w_init: initializer of ``w`` ``[features, 4*units]``.
        u_init: initializer of ``u`` ``[units, 4*units]``.
        dtype: the computation dtype; None computes in the input's dtype.
        param_dtype: the dtype in which the params are stored.
        masked: take ``(x, mask)``, mask ``[batch, time]`` (True for real
            steps): a masked step keeps the carry and repeats the previous
            output, as Keras's masks do. With ``return_sequences`` the output
            is ``(y, mask)``. See ``docs/layers-attention-recurrent.md``.
        dropout: the fraction of the input units dropped, for the input
            transformation, when ``train=True`` (Keras's ``dropout``): one mask
            ``[batch, features]`` per sequence, the same at every step, kept
            values scaled by ``1 / (1 - dropout)``. Training then needs ``key=``.
        recurrent_dropout: the fraction of the recurrent state units dropped,
            for the recurrent transformation, when ``train=True``: one mask
            ``[batch, units]`` per sequence, the same at every step.
            With it each gate draws its own input and recurrent masks, as
            Keras 3's cells do; without it one input mask serves all gates.
        go_backwards: read each sequence from its last step to its first
            (Keras's ``go_backwards``); with ``return_sequences`` the outputs
            stay in that reversed order, and a mask passes on unchanged.
            ``Bidirectional`` reverses the sequence itself: give it layers
            built with ``go_backwards=False``.
        name: the name used in error paths and summaries.

    Returns:
        A layer taking ``x`` ``[batch, time, features]`` or ``(x, (h0, c0))``.

    Example:
        >>> import jax, jax.numpy as jnp, funcnet as fn
        >>> lstm = fn.LSTM(5)
        >>> out_shape, params, state = lstm.init(jax.random.key(0), (None, 4, 3))
        >>> out_shape, jax.tree.map(jnp.shape, params)
        ((None, 5), {'b': (20,), 'u': (5, 20), 'w': (3, 20)})
        >>> params["b"][5:10].tolist()  # the forget gate starts open
        [1.0, 1.0, 1.0, 1.0, 1.0]
        >>> drop = fn.LSTM(5, dropout=0.2, recurrent_dropout=0.2)
        >>> x = jnp.ones((2, 4, 3))
        >>> y_plain, _ = lstm.apply(params, state, x)
        >>> bool((drop.apply(params, state, x)[0] == y_plain).all())
        True
        >>> y, _ = drop.apply(params, state, x, train=True, key=1)  # training: masks from the key
        >>> bool((y == y_plain).all())
        False
    """
    check_flags(name, unit_forget_bias=unit_forget_bias)
    act = get_activation(activation, name)
    gate_act = get_activation(recurrent_activation, name)

    def init_bias(key: jax.Array, units: int, dtype: Any) -> jax.Array:
        forget = jnp.ones if unit_forget_bias else jnp.zeros
        return jnp.concatenate(
            [jnp.zeros(units, dtype), forget(units, dtype), jnp.zeros(2 * units, dtype)]
        )

    def step(
        p: dict[str, jax.Array],
        carry: tuple[jax.Array, ...],
        xw_t: jax.Array,
        h_masks: jax.Array | None,
    ) -> tuple[jax.Array, ...]:
        h, c = carry
        i, f, g, o = jnp.split(_gate(p, h, xw_t, h_masks), 4, axis=-1)
        c = gate_act(f) * c + gate_act(i) * act(g)
        return gate_act(o) * act(c), c

    cell = _Cell(units, 4, 2, init_bias, step)
    return _recurrent(
        cell,
        return_sequences,
        return_state,
        use_bias,
        w_init,
        u_init,
        dtype,
        param_dtype,
        name,
        masked,
        dropout,
        recurrent_dropout,
        go_backwards,
    )


def GRU(
    units: int,
    activation: ActivationLike | None = "tanh",
    recurrent_activation: ActivationLike | None = "sigmoid",
    *,
    return_sequences: bool = False,
    return_state: bool = False,
    use_bias: bool = True,
    reset_after: bool = True,
    w_init: Initializer = GLOROT_UNIFORM,
    u_init: Initializer = _ORTHOGONAL,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
    masked: bool = False,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    go_backwards: bool = False,
    name: str = "GRU",
) -> Layer:
    """Gated recurrent unit, Keras's formulation (gates ``z, r, h``).

    Args:
        units: the size of the hidden state ``h``.
        activation: applied to the candidate state (default tanh).
        recurrent_activation: applied to the gates ``z, r`` (default sigmoid).
        return_sequences: return every ``h_t`` ``[batch, time, units]`` instead
            of the last ``[batch, units]``.
        return_state: return ``(y, h_final)``.
        use_bias: whether to add ``b``: ``[2, 3*units]`` (input and recurrent biases)
            with ``reset_after``, else ``[3*units]``.
        reset_after: apply the reset gate after the recurrent matmul,
            ``r * (h U_h + b_h)`` (Keras's default, the cuDNN form); False gives
            the original GRU, ``(r * h) U_h``, as Keras's ``reset_after=False``.
        w_init: initializer of ``w`` ``[features, 3*units]``.
        u_init: initializer of ``u`` ``[units, 3*units]``.
        dtype: the computation dtype; None computes in the input's dtype.
        param_dtype: the dtype in which the params are stored.
        masked: take ``(x, mask)``, mask ``[batch, time]`` (True for real
            steps): a masked step keeps the carry and repeats the previous
            output, as Keras's masks do. With ``return_sequences`` the output
            is ``(y, mask)``. See ``docs/layers-attention-recurrent.md``.
        dropout: the fraction of the input units dropped, for the input
            transformation, when ``train=True`` (Keras's ``dropout``): one mask
            ``[batch, features]`` per sequence, the same at every step, kept
            values scaled by ``1 / (1 - dropout)``. Training then needs ``key=``.
        recurrent_dropout: the fraction of the recurrent state units dropped,
            for the recurrent transformation, when ``train=True``: one mask
            ``[batch, units]`` per sequence, the same at every step.
            With it each gate draws its own input and recurrent masks, as
            Keras 3's cells do; without it one input mask serves all gates.
        go_backwards: read each sequence from its last step to its first
            (Keras's ``go_backwards``); with ``return_sequences`` the outputs
            stay in that reversed order, and a mask passes on unchanged.
            ``Bidirectional`` reverses the sequence itself: give it layers
            built with ``go_backwards=False``.
        name: the name used in error paths and summaries.

    Returns:
        A layer taking ``x`` ``[batch, time, features]`` or ``(x, h0)``.

    Example:
        >>> import jax, jax.numpy as jnp, funcnet as fn
        >>> gru = fn.GRU(5, return_sequences=True)
        >>> out_shape, params, state = gru.init(jax.random.key(0), (None, 4, 3))
        >>> out_shape, jax.tree.map(jnp.shape, params)
        ((None, 4, 5), {'b': (2, 15), 'u': (5, 15), 'w': (3, 15)})
        >>> drop = fn.GRU(5, return_sequences=True, dropout=0.5, go_backwards=True)
        >>> y, _ = drop.apply(params, state, jnp.ones((2, 4, 3)), train=True, key=0)
        >>> y.shape
        (2, 4, 5)
    """
    check_flags(name, reset_after=reset_after)
    act = get_activation(activation, name)
    gate_act = get_activation(recurrent_activation, name)

    def step_reset_before(
        p: dict[str, jax.Array],
        carry: tuple[jax.Array, ...],
        xw_t: jax.Array,
        h_masks: jax.Array | None,
    ) -> tuple[jax.Array, ...]:
        h = carry[0]
        if "b" in p:
            xw_t = xw_t + expand_to(p["b"], 2)
        x_z, x_r, x_h = jnp.split(xw_t, 3, axis=-1)
        u_z, u_r, u_h = jnp.split(p["u"], 3, axis=-1)
        z = gate_act(x_z + _dropped(h, h_masks, 0) @ u_z)
        r = gate_act(x_r + _dropped(h, h_masks, 1) @ u_r)
        candidate = act(x_h + (r * _dropped(h, h_masks, 2)) @ u_h)
        return (z * h + (1 - z) * candidate,)

    def step(
        p: dict[str, jax.Array],
        carry: tuple[jax.Array, ...],
        xw_t: jax.Array,
        h_masks: jax.Array | None,
    ) -> tuple[jax.Array, ...]:
        h = carry[0]
        hu = _recurrent_matmul(h, p["u"], h_masks)
        if "b" in p:
            xw_t = xw_t + p["b"][0:1]
            hu = hu + p["b"][1:2]
        x_z, x_r, x_h = jnp.split(xw_t, 3, axis=-1)
        h_z, h_r, h_h = jnp.split(hu, 3, axis=-1)
        z = gate_act(x_z + h_z)
        r = gate_act(x_r + h_r)
        candidate = act(x_h + r * h_h)
        return (z * h + (1 - z) * candidate,)

    if not reset_after:
        cell = _Cell(units, 3, 1, _zeros_bias(lambda u: (3 * u,)), step_reset_before)
    else:
        cell = _Cell(units, 3, 1, _zeros_bias(lambda u: (2, 3 * u)), step)
    return _recurrent(
        cell,
        return_sequences,
        return_state,
        use_bias,
        w_init,
        u_init,
        dtype,
        param_dtype,
        name,
        masked,
        dropout,
        recurrent_dropout,
        go_backwards,
    )
