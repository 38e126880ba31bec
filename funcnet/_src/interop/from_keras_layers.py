"""One Keras 3 layer, with its weights, as a funcnet layer with its params and state.

:func:`convert_layer` reads a built Keras layer's config and variables and
returns the equivalent funcnet layer (named as the Keras layer, so error
paths and summaries show Keras's names) together with the params and state
that hold the Keras weights in funcnet's layouts. Each Keras option that
funcnet cannot express is refused by :func:`unsupported`, naming the layer,
the option and the fix, rather than converted into a model that computes
something else. The whole-model graph walk is in ``from_keras.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from funcnet._src.combinators import fan_in_concat, fan_in_sum, serial
from funcnet._src.core import Lambda, Layer, Params, State
from funcnet._src.layers import (
    ACTIVATIONS,
    GRU,
    LSTM,
    Activation,
    AvgPool,
    BatchNorm,
    Bidirectional,
    Conv,
    ConvTranspose,
    Dense,
    Dropout,
    Elu,
    Embedding,
    Flatten,
    GlobalAvgPool,
    GlobalMaxPool,
    GroupNorm,
    Identity,
    LayerNorm,
    LeakyRelu,
    Masking,
    MaxPool,
    MultiHeadAttention,
    Relu,
    Reshape,
    RMSNorm,
    SimpleRNN,
    Softmax,
    SpatialDropout1D,
    SpatialDropout2D,
    SpatialDropout3D,
    pass_mask,
)


class Converted(NamedTuple):
    """A funcnet layer with the params and state that hold a Keras layer's weights."""

    layer: Layer
    params: Params
    state: State


class KerasLayerInfo(NamedTuple):
    """What a converter reads from one Keras layer call."""

    layer: Any  # the Keras layer
    config: dict[str, Any]
    input_shapes: tuple[tuple[int | None, ...], ...]  # one per Keras input tensor
    options: dict[str, Any]  # options of the call itself (use_causal_mask)


def describe_layer(layer: Any) -> str:
    return f"layer {layer.name!r} ({type(layer).__name__})"


def unsupported(layer: Any, option: str, fix: str) -> ValueError:
    """The error for a Keras option funcnet cannot express, with the fix."""
    return ValueError(f"from_keras: {describe_layer(layer)}: {option} is not supported. {fix}")


def _weights(layer: Any) -> dict[str, np.ndarray]:
    """The layer's own variables by their short names (kernel, bias, gamma, ...)."""
    return {w.name: np.asarray(w.numpy()) for w in layer.weights}


def _array(a: np.ndarray) -> jnp.ndarray:
    return jnp.asarray(a)


def activation_name(layer: Any, value: Any, option: str = "activation") -> str | None:
    """funcnet's name of a Keras activation (None for linear), or the unsupported error."""
    if value in (None, "linear"):
        return None
    if isinstance(value, str) and value in ACTIVATIONS:
        return value
    raise unsupported(
        layer,
        f"{option}={value!r}",
        f"funcnet knows the activations {', '.join(sorted(ACTIVATIONS))}. Use one of them in "
        "the Keras model (or a separate Keras Activation layer) before converting.",
    )


def _require(layer: Any, config: dict, option: str, allowed: Any, fix: str) -> None:
    """Refuses ``config[option]`` unless it is one of ``allowed`` (absent counts as allowed)."""
    value = config.get(option, allowed[0])
    if value not in allowed:
        raise unsupported(layer, f"{option}={value!r}", fix)


def _channels_last(layer: Any, config: dict) -> None:
    _require(
        layer,
        config,
        "data_format",
        ("channels_last", None),
        "funcnet's convolutions, pools and flatten are channels-last: build the Keras model "
        "with data_format='channels_last' (transpose the data with x.transpose(0, 2, 3, 1)).",
    )


def _padding(layer: Any, config: dict, rank: int) -> str | list[tuple[int, int]]:
    padding = config["padding"]
    if padding in ("valid", "same"):
        return padding.upper()
    if padding == "causal" and rank == 1:
        # Keras's causal Conv1D pads (kernel - 1) * dilation zeros on the left only.
        (k,), (d,) = config["kernel_size"], config["dilation_rate"]
        return [((k - 1) * d, 0)]
    raise unsupported(layer, f"padding={padding!r}", "Use padding='valid' or 'same'.")


def _with_bias(params: dict, weights: dict, name: str = "bias", key: str = "b") -> dict:
    if name in weights:
        params[key] = _array(weights[name])
    return params


# --------------------------------------------------------------------------
# Core layers


def _dense(info: KerasLayerInfo) -> Converted:
    layer, cfg = info.layer, info.config
    w = _weights(layer)
    act = activation_name(layer, cfg["activation"])
    net = Dense(cfg["units"], act, use_bias=cfg["use_bias"], name=layer.name)
    return Converted(net, _with_bias({"w": _array(w["kernel"])}, w), {})


def _activation(info: KerasLayerInfo) -> Converted:
    act = activation_name(info.layer, info.config["activation"])
    return Converted(Activation(act or "linear", name=info.layer.name), {}, {})


def _relu(info: KerasLayerInfo) -> Converted:
    cfg = info.config
    if cfg.get("max_value") is not None or cfg.get("threshold", 0.0) != 0.0:
        raise unsupported(
            info.layer,
            f"max_value={cfg.get('max_value')!r}, threshold={cfg.get('threshold')!r}",
            "funcnet's Relu has neither; use ReLU() with its defaults, or "
            "Activation('relu6') for max_value=6.",
        )
    slope = cfg.get("negative_slope", 0.0)
    return Converted(LeakyRelu(slope) if slope else Relu(), {}, {})


def _leaky_relu(info: KerasLayerInfo) -> Converted:
    return Converted(LeakyRelu(info.config["negative_slope"]), {}, {})


def _elu(info: KerasLayerInfo) -> Converted:
    return Converted(Elu(info.config.get("alpha", 1.0)), {}, {})


def _softmax(info: KerasLayerInfo) -> Converted:
    axis = info.config.get("axis", -1)
    if not isinstance(axis, int):
        raise unsupported(info.layer, f"axis={axis!r}", "Use one integer axis.")
    return Converted(Softmax(axis), {}, {})


def _identity(info: KerasLayerInfo) -> Converted:
    return Converted(Identity(), {}, {})


def _rescaling(info: KerasLayerInfo) -> Converted:
    scale, offset = info.config["scale"], info.config["offset"]
    if not all(isinstance(v, (int, float)) for v in (scale, offset)):
        raise unsupported(
            info.layer,
            f"scale={scale!r}, offset={offset!r}",
            "Use one number for each (per-channel values have no funcnet twin).",
        )

    def rescale(x: Any) -> Any:
        return x * jnp.asarray(scale, x.dtype) + jnp.asarray(offset, x.dtype)

    return Converted(Lambda(rescale, name=info.layer.name), {}, {})


def _dropout(info: KerasLayerInfo) -> Converted:
    layer, cfg = info.layer, info.config
    noise_shape = cfg.get("noise_shape")
    if noise_shape is not None:
        noise_shape = tuple(noise_shape)
    return Converted(Dropout(cfg["rate"], noise_shape=noise_shape, name=layer.name), {}, {})


def _spatial_dropout(info: KerasLayerInfo) -> Converted:
    layer, cfg = info.layer, info.config
    spatial_rank = len(info.input_shapes[0]) - 2
    if cfg.get("data_format", "channels_last") == "channels_first":
        # Keras's channels-first spatial dropout is Dropout with this noise_shape.
        noise_shape = (None, None, *(1,) * spatial_rank)
        return Converted(Dropout(cfg["rate"], noise_shape=noise_shape, name=layer.name), {}, {})
    make = {1: SpatialDropout1D, 2: SpatialDropout2D, 3: SpatialDropout3D}[spatial_rank]
    return Converted(make(cfg["rate"], name=layer.name), {}, {})


def _flatten(info: KerasLayerInfo) -> Converted:
    _channels_last(info.layer, info.config)
    return Converted(Flatten(), {}, {})


def _reshape(info: KerasLayerInfo) -> Converted:
    return Converted(Reshape(tuple(info.config["target_shape"])), {}, {})


# --------------------------------------------------------------------------
# Convolutions, pooling, normalisation


def _conv(info: KerasLayerInfo) -> Converted:
    layer, cfg = info.layer, info.config
    _channels_last(layer, cfg)
    rank = len(cfg["kernel_size"])
    w = _weights(layer)
    net = Conv(
        cfg["filters"],
        tuple(cfg["kernel_size"]),
        tuple(cfg["strides"]),
        _padding(layer, cfg, rank),
        dilation=tuple(cfg["dilation_rate"]),
        feature_group_count=cfg.get("groups", 1),
        use_bias=cfg["use_bias"],
        activation=activation_name(layer, cfg["activation"]),
        name=layer.name,
    )
    return Converted(net, _with_bias({"w": _array(w["kernel"])}, w), {})


def _transpose_padding(layer: Any, cfg: dict, input_shape: tuple) -> tuple[list, list]:
    """funcnet's ``(low, high)`` trims and ``output_padding`` for Keras's output_padding.

    Keras's JAX backend pads the stride-dilated input by ``(left, right)``
    before a stride-1 correlation; ``extent - 1`` on each side is the full
    scatter, so funcnet trims ``extent - 1 - left`` and ``extent - 1 - right``
    elements, and a negative trim on the right is output_padding.
    """
    from keras.src.backend.common.backend_utils import (
        compute_conv_transpose_padding_args_for_jax,
    )

    kernel = tuple(cfg["kernel_size"])
    jax_pads = compute_conv_transpose_padding_args_for_jax(
        input_shape=input_shape,
        kernel_shape=(*kernel, cfg["filters"], input_shape[-1]),
        strides=cfg["strides"],
        padding=cfg["padding"],
        output_padding=cfg["output_padding"],
        dilation_rate=cfg["dilation_rate"],
    )
    trims, extra = [], []
    for (left, right), k, d in zip(jax_pads, kernel, cfg["dilation_rate"]):
        full = (k - 1) * d  # extent - 1
        if left > full:
            raise unsupported(
                layer,
                f"output_padding={cfg['output_padding']!r}",
                "It pads the low end of the output, which funcnet's ConvTranspose cannot.",
            )
        trims.append((full - left, max(full - right, 0)))
        extra.append(max(right - full, 0))
    return trims, extra


def _conv_transpose(info: KerasLayerInfo) -> Converted:
    layer, cfg = info.layer, info.config
    _channels_last(layer, cfg)
    if cfg["padding"] not in ("valid", "same"):
        raise unsupported(layer, f"padding={cfg['padding']!r}", "Use padding='valid' or 'same'.")
    padding: Any = cfg["padding"].upper()
    extra: Any = 0
    if cfg.get("output_padding") is not None:
        padding, extra = _transpose_padding(layer, cfg, info.input_shapes[0])
    w = _weights(layer)
    # Keras stores [*kernel, out, in], funcnet [*kernel, in, out]; both scatter
    # x[i] * w[k] to output i * stride + k (tested against Keras).
    kernel = np.swapaxes(w["kernel"], -1, -2)
    net = ConvTranspose(
        cfg["filters"],
        tuple(cfg["kernel_size"]),
        tuple(cfg["strides"]),
        padding,
        dilation=tuple(cfg["dilation_rate"]),
        output_padding=extra,
        use_bias=cfg["use_bias"],
        activation=activation_name(layer, cfg["activation"]),
        name=layer.name,
    )
    return Converted(net, _with_bias({"w": _array(np.ascontiguousarray(kernel))}, w), {})


def _pool(kind: str) -> Callable[[KerasLayerInfo], Converted]:
    def convert(info: KerasLayerInfo) -> Converted:
        layer, cfg = info.layer, info.config
        _channels_last(layer, cfg)
        make = MaxPool if kind == "max" else AvgPool
        net = make(
            tuple(cfg["pool_size"]),
            tuple(cfg["strides"]) if cfg["strides"] is not None else None,
            _padding(layer, {**cfg, "padding": cfg["padding"]}, 0),
            name=layer.name,
        )
        return Converted(net, {}, {})

    return convert


def _global_pool(kind: str) -> Callable[[KerasLayerInfo], Converted]:
    def convert(info: KerasLayerInfo) -> Converted:
        layer, cfg = info.layer, info.config
        _channels_last(layer, cfg)
        _require(
            layer,
            cfg,
            "keepdims",
            (False,),
            "funcnet's global pools drop the pooled axes; use keepdims=False "
            "(and a Reshape after it if the axes are needed).",
        )
        if info.options.get("masked"):  # only GlobalAveragePooling1D reads a mask (Keras too)
            return Converted(GlobalAvgPool(name=layer.name, masked=True), {}, {})
        make = GlobalMaxPool if kind == "max" else GlobalAvgPool
        return Converted(make(name=layer.name), {}, {})

    return convert


def _affine(weights: dict) -> dict:
    params = {}
    if "gamma" in weights:
        params["scale"] = _array(weights["gamma"])
    if "beta" in weights:
        params["bias"] = _array(weights["beta"])
    return params


def _batch_norm(info: KerasLayerInfo) -> Converted:
    layer, cfg = info.layer, info.config
    _require(layer, cfg, "renorm", (False,), "Batch renormalization has no funcnet twin.")
    axis = cfg["axis"]
    rank = len(info.input_shapes[0])
    axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
    if not isinstance(axis, int):
        raise unsupported(layer, f"axis={cfg['axis']!r}", "Normalise over one feature axis.")
    w = _weights(layer)
    net = BatchNorm(
        # Keras's momentum is the weight of the old running value, as funcnet's.
        momentum=cfg["momentum"],
        epsilon=cfg["epsilon"],
        axis=-1 if axis % rank == rank - 1 else axis % rank,
        use_scale=cfg["scale"],
        use_bias=cfg["center"],
        name=layer.name,
    )
    state = {"mean": _array(w["moving_mean"]), "var": _array(w["moving_variance"])}
    return Converted(net, _affine(w), state)


def _layer_norm(info: KerasLayerInfo) -> Converted:
    layer, cfg = info.layer, info.config
    _require(
        layer, cfg, "rms_scaling", (False,), "Use funcnet's RMSNorm in a funcnet model instead."
    )
    axis = cfg["axis"]
    net = LayerNorm(
        epsilon=cfg["epsilon"],
        axis=tuple(axis) if isinstance(axis, (list, tuple)) else axis,
        use_scale=cfg["scale"],
        use_bias=cfg["center"],
        name=layer.name,
    )
    return Converted(net, _affine(_weights(layer)), {})


def _group_norm(info: KerasLayerInfo) -> Converted:
    layer, cfg = info.layer, info.config
    axis = cfg["axis"]
    if not isinstance(axis, int):
        raise unsupported(layer, f"axis={axis!r}", "Give GroupNormalization one channel axis.")
    channels = int(info.input_shapes[0][axis] or 0)  # a built layer knows its channels
    groups = channels if cfg["groups"] == -1 else cfg["groups"]
    rank = len(info.input_shapes[0])
    net = GroupNorm(
        groups,
        epsilon=cfg["epsilon"],
        axis=-1 if axis % rank == rank - 1 else axis % rank,
        use_scale=cfg["scale"],
        use_bias=cfg["center"],
        name=layer.name,
    )
    return Converted(net, _affine(_weights(layer)), {})


def _rms_norm(info: KerasLayerInfo) -> Converted:
    layer, cfg = info.layer, info.config
    rank = len(info.input_shapes[0])
    axis = cfg["axis"]
    axes = sorted(axis) if isinstance(axis, (list, tuple)) else [axis]  # Keras's own order
    trailing = list(range(rank - len(axes), rank))
    if [a % rank for a in axes] != trailing:
        # Keras multiplies its scale [sizes of axes] into x from the right, so it
        # scales the normalised axes only when they are the last ones.
        raise unsupported(
            layer,
            f"axis={axis!r}",
            "Keras's RMSNormalization lines its scale up with the input's last axes (it "
            f"broadcasts from the right), not with the axes it normalises over ({axes} here, "
            f"the last being {trailing}); funcnet's RMSNorm scales the normalised axes. Use "
            "trailing axes (axis=-1, or e.g. [1, 2] for [batch, time, features]).",
        )
    net = RMSNorm(
        epsilon=cfg["epsilon"],
        axis=-1 if trailing == [rank - 1] else tuple(trailing),
        name=layer.name,
    )
    return Converted(net, {"scale": _array(_weights(layer)["scale"])}, {})


# --------------------------------------------------------------------------
# Merges


def _merge(fn: Callable[[tuple], Any], name: str) -> Callable[[KerasLayerInfo], Converted]:
    def convert(info: KerasLayerInfo) -> Converted:
        return _masks_merged(info, Lambda(fn, name=info.layer.name or name))

    return convert


def _masks_merged(info: KerasLayerInfo, merge: Layer) -> Converted:
    """An elementwise merge; where inputs carry sequence masks, Keras's Merge.compute_mask:
    ``merge`` runs on the arrays and the output carries the AND of the inputs' masks."""
    flags = tuple(info.options.get("masked_inputs", ()))
    if not any(flags):
        return Converted(merge, {}, {})

    def split(items: Any) -> tuple[tuple, list]:
        arrays = tuple(item[0] if masked else item for item, masked in zip(items, flags))
        return arrays, [item[1] for item, masked in zip(items, flags) if masked]

    def init(key: Any, input_shape: Any) -> tuple[Any, Params, State]:
        arrays, masks = split(input_shape)
        out_shape, params, state = merge.init(key, arrays)
        return (out_shape, tuple(masks[0])), params, state

    def apply(
        params: Params, state: State, x: Any, *, key: Any = None, train: bool = False
    ) -> tuple[Any, State]:
        arrays, masks = split(x)
        y, state = merge.apply(params, state, arrays, key=key, train=train)
        mask = masks[0]
        for other in masks[1:]:
            mask = mask & other
        return (y, mask), state

    return Converted(Layer(init, apply, info.layer.name), {}, {})


def _subtract(xs: tuple) -> Any:
    return xs[0] - xs[1]


def _product(xs: tuple) -> Any:
    out = xs[0]
    for x in xs[1:]:
        out = out * x
    return out


def _average(xs: tuple) -> Any:
    return sum(xs[1:], xs[0]) / len(xs)


def _maximum(xs: tuple) -> Any:
    out = xs[0]
    for x in xs[1:]:
        out = jnp.maximum(out, x)
    return out


def _minimum(xs: tuple) -> Any:
    out = xs[0]
    for x in xs[1:]:
        out = jnp.minimum(out, x)
    return out


def _add(info: KerasLayerInfo) -> Converted:
    return _masks_merged(info, fan_in_sum(name=info.layer.name))


def _concatenate(info: KerasLayerInfo) -> Converted:
    return Converted(fan_in_concat(info.config["axis"], name=info.layer.name), {}, {})


# --------------------------------------------------------------------------
# Embeddings, recurrent layers, attention


def _embedding(info: KerasLayerInfo) -> Converted:
    layer, cfg = info.layer, info.config
    mask_zero = bool(cfg.get("mask_zero"))
    net = Embedding(cfg["input_dim"], cfg["output_dim"], mask_zero=mask_zero, name=layer.name)
    params = {"embedding": _array(_weights(layer)["embeddings"])}
    if layer.input.dtype in ("int32", "int64", "int16", "int8", "uint8", "uint16", "uint32"):
        return Converted(net, params, {})
    # Keras feeds float Inputs to Embedding and casts them to ids; funcnet refuses
    # float ids, so the cast is made explicit in front.
    cast = Lambda(lambda x: jnp.asarray(x).astype(jnp.int32), name=f"{layer.name}.ids")
    return Converted(serial(cast, net, name=layer.name), ({}, params), ({}, {}))


def _recurrent(info: KerasLayerInfo, *, backward: bool = False) -> Converted:
    """SimpleRNN, LSTM or GRU; ``backward`` for Bidirectional's backward copy."""
    layer, cfg = info.layer, info.config
    kind = type(layer).__name__
    for option, fix in (
        ("return_state", "Use return_state=False (the final state is the last output)."),
        ("stateful", "Use stateful=False: funcnet carries no state between batches."),
    ):
        _require(layer, cfg, option, (False,), fix)
    dropout, recurrent_dropout = cfg.get("dropout", 0.0), cfg.get("recurrent_dropout", 0.0)
    if getattr(layer.cell, "implementation", 2) == 1 and dropout and not recurrent_dropout:
        raise unsupported(
            layer,
            "implementation=1 with dropout and no recurrent_dropout",
            f"Keras then draws one input mask per gate; funcnet's {kind} draws one for all "
            "gates unless recurrent_dropout > 0 (as Keras's default implementation=2 does): "
            "build the Keras layer without implementation=1 (predictions do not change; only "
            "training's masks do).",
        )
    w = _weights(layer)
    common: dict[str, Any] = {
        "return_sequences": cfg["return_sequences"],
        "use_bias": cfg["use_bias"],
        "masked": bool(info.options.get("masked")),
        "dropout": dropout,
        "recurrent_dropout": recurrent_dropout,
        # funcnet's Bidirectional reverses the sequence for its backward layer
        # itself; Keras's backward layer reverses it (go_backwards=True) instead.
        "go_backwards": bool(cfg.get("go_backwards")) != backward,
        "name": layer.name,
    }
    act = activation_name(layer, cfg["activation"])
    if kind == "SimpleRNN":
        net = SimpleRNN(cfg["units"], act, **common)
    else:
        gate = activation_name(layer, cfg["recurrent_activation"], "recurrent_activation")
        if kind == "LSTM":
            net = LSTM(cfg["units"], act, gate, **common)
        else:
            net = GRU(cfg["units"], act, gate, reset_after=cfg["reset_after"], **common)
    # Keras's gate orders (LSTM i, f, c, o; GRU z, r, h) are funcnet's.
    params = {"w": _array(w["kernel"]), "u": _array(w["recurrent_kernel"])}
    return Converted(net, _with_bias(params, w), {})


def _recurrent_layer(info: KerasLayerInfo) -> Converted:
    return _recurrent(info)


def _bidirectional(info: KerasLayerInfo) -> Converted:
    layer, cfg = info.layer, info.config
    merge = cfg["merge_mode"]
    if merge not in ("concat", "sum", "mul", "ave", None):
        raise unsupported(layer, f"merge_mode={merge!r}", "Use concat, sum, mul, ave or None.")
    halves = {}
    for role, child in (("forward", layer.forward_layer), ("backward", layer.backward_layer)):
        child_info = KerasLayerInfo(child, child.get_config(), info.input_shapes, info.options)
        if type(child).__name__ not in ("SimpleRNN", "LSTM", "GRU"):
            raise unsupported(
                layer, f"a {type(child).__name__} inside", "Wrap a SimpleRNN, LSTM or GRU."
            )
        halves[role] = _recurrent(child_info, backward=role == "backward")
    net = Bidirectional(
        halves["forward"].layer,
        merge,
        backward_layer=halves["backward"].layer,
        masked=bool(info.options.get("masked")),
        name=layer.name,
    )
    params = {role: c.params for role, c in halves.items()}
    state = {role: c.state for role, c in halves.items()}
    return Converted(net, params, state)


def _multi_head_attention(info: KerasLayerInfo) -> Converted:
    layer, cfg = info.layer, info.config
    if cfg.get("dropout", 0.0):
        raise unsupported(
            layer,
            f"dropout={cfg['dropout']!r}",
            "funcnet's MultiHeadAttention has no attention dropout: set dropout=0.0 in the "
            "Keras layer (predictions do not change; only training does).",
        )
    rank = len(info.input_shapes[0])
    axes = cfg.get("attention_axes")
    axes = None if axes is None else tuple(axes) if isinstance(axes, (list, tuple)) else (axes,)
    causal = bool(info.options.get("use_causal_mask", False))
    masked = bool(info.options.get("masked"))
    # Keras builds its causal mask and reads padding masks along axis 1 of rank-3 inputs only.
    if (causal or masked) and (rank != 3 or (axes is not None and [a % rank for a in axes] != [1])):
        raise unsupported(
            layer,
            f"{'use_causal_mask=True' if causal else 'a padding mask'} with attention over "
            f"axes {axes} of a rank-{rank} query",
            "funcnet applies causal and padding masks over the sequence axis of [batch, "
            "length, features] inputs: pass an explicit attention_mask instead.",
        )
    _require(layer, cfg, "use_gate", (False,), "Use use_gate=False.")
    _require(layer, cfg, "sliding_window", (None,), "Use sliding_window=None.")
    output_shape = cfg.get("output_shape")
    if output_shape is not None and not isinstance(output_shape, int):
        output_shape = tuple(output_shape)
        if len(output_shape) != 1:
            raise unsupported(
                layer, f"output_shape={cfg['output_shape']!r}", "Use one output size."
            )
        output_shape = output_shape[0]
    net = MultiHeadAttention(
        cfg["num_heads"],
        cfg["key_dim"],
        cfg.get("value_dim") or cfg["key_dim"],
        output_shape,
        # Keras's causal mask is funcnet's: query i attends to keys j <= i.
        causal=causal,
        use_bias=cfg["use_bias"],
        attention_axes=axes,
        # Keras's query_mask and value_mask: the (x, mask) pairs from_keras threads.
        masked=masked,
        name=layer.name,
    )
    # Keras's projections have funcnet's layouts: [features, heads, size] and
    # [heads, size, out], biases [heads, size] and [out].
    params = {}
    for role, dense in (
        ("query", layer.query_dense),
        ("key", layer.key_dense),
        ("value", layer.value_dense),
        ("output", layer.output_dense),
    ):
        params[role] = _with_bias({"w": _array(dense.kernel.numpy())}, _weights(dense))
    return Converted(net, params, {})


CONVERTERS: dict[str, Callable[[KerasLayerInfo], Converted]] = {
    "Dense": _dense,
    "Activation": _activation,
    "ReLU": _relu,
    "LeakyReLU": _leaky_relu,
    "ELU": _elu,
    "Softmax": _softmax,
    "Dropout": _dropout,
    "Identity": _identity,
    "Rescaling": _rescaling,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Conv1D": _conv,
    "Conv2D": _conv,
    "Conv3D": _conv,
    "Conv1DTranspose": _conv_transpose,
    "Conv2DTranspose": _conv_transpose,
    "Conv3DTranspose": _conv_transpose,
    "MaxPooling1D": _pool("max"),
    "MaxPooling2D": _pool("max"),
    "MaxPooling3D": _pool("max"),
    "AveragePooling1D": _pool("avg"),
    "AveragePooling2D": _pool("avg"),
    "AveragePooling3D": _pool("avg"),
    "GlobalMaxPooling1D": _global_pool("max"),
    "GlobalMaxPooling2D": _global_pool("max"),
    "GlobalMaxPooling3D": _global_pool("max"),
    "GlobalAveragePooling1D": _global_pool("avg"),
    "GlobalAveragePooling2D": _global_pool("avg"),
    "GlobalAveragePooling3D": _global_pool("avg"),
    "BatchNormalization": _batch_norm,
    "LayerNormalization": _layer_norm,
    "GroupNormalization": _group_norm,
    "RMSNormalization": _rms_norm,
    "SpatialDropout1D": _spatial_dropout,
    "SpatialDropout2D": _spatial_dropout,
    "SpatialDropout3D": _spatial_dropout,
    "Add": _add,
    "Concatenate": _concatenate,
    "Subtract": _merge(_subtract, "Subtract"),
    "Multiply": _merge(_product, "Multiply"),
    "Average": _merge(_average, "Average"),
    "Maximum": _merge(_maximum, "Maximum"),
    "Minimum": _merge(_minimum, "Minimum"),
    "Embedding": _embedding,
    "SimpleRNN": _recurrent_layer,
    "LSTM": _recurrent_layer,
    "GRU": _recurrent_layer,
    "Bidirectional": _bidirectional,
    "MultiHeadAttention": _multi_head_attention,
}
"""Every Keras layer class ``from_keras`` converts, by its class name."""

# Keras's elementwise merges AND their inputs' masks (Merge.compute_mask).
_ELEMENTWISE_MERGES = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")
_MASK_CONSUMERS = (
    "SimpleRNN",
    "LSTM",
    "GRU",
    "Bidirectional",
    "MultiHeadAttention",
    "GlobalAveragePooling1D",
    *_ELEMENTWISE_MERGES,
)

# Keras layers with supports_masking whose call ignores the mask and whose
# compute_mask returns it unchanged: their twins run under pass_mask.
# (Softmax and BatchNormalization read the mask, RMSNormalization drops it: refused.)
_MASK_PASSERS = (
    "Activation",
    "Dense",
    "Dropout",
    "ELU",
    "GroupNormalization",
    "Identity",
    "LayerNormalization",
    "LeakyReLU",
    "ReLU",
    "Rescaling",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
)


def _masking(info: KerasLayerInfo) -> Converted:
    return Converted(Masking(info.config["mask_value"], name=info.layer.name), {}, {})


CONVERTERS["Masking"] = _masking


def mask_out(info: KerasLayerInfo) -> bool:
    """Whether this call's output carries a sequence mask on (funcnet's ``(x, mask)``)."""
    kind = type(info.layer).__name__
    if kind == "Masking" or (kind == "Embedding" and info.config.get("mask_zero")):
        return True
    if not info.options.get("masked"):
        return False
    if kind in _MASK_PASSERS:
        return True
    if kind == "MultiHeadAttention":  # Keras's output carries the query's mask
        return bool(info.options.get("masked_inputs", (False,))[0])
    if kind in _ELEMENTWISE_MERGES:
        return True
    # Recurrent layers pass the mask on with their sequences, as Keras's compute_mask.
    return bool(getattr(info.layer, "return_sequences", False))


def convert_layer(info: KerasLayerInfo) -> Converted:
    """The funcnet twin of one Keras layer call, or an error naming what is missing."""
    kind = type(info.layer).__name__
    masked = bool(info.options.get("masked"))
    if masked and kind not in _MASK_CONSUMERS + _MASK_PASSERS:
        raise unsupported(
            info.layer,
            "a sequence mask (from Masking or Embedding(mask_zero=True)) reaching this layer",
            f"funcnet carries masks into {', '.join(_MASK_CONSUMERS)}, and past "
            f"{', '.join(_MASK_PASSERS)} (which pass them on unread, as in Keras): put the "
            "recurrent layer before this one (after the mask's source, or after another "
            "recurrent layer with return_sequences=True), or build the model without the mask.",
        )
    if info.options.get("keras_mask") and not info.options.get("masked"):
        raise unsupported(
            info.layer,
            "a mask given by hand (mask=...)",
            "from_keras carries the masks of Masking and Embedding(mask_zero=True) only: "
            "pad with mask_value and put a Masking layer in front instead.",
        )
    converter = CONVERTERS.get(kind)
    if converter is None:
        raise ValueError(
            f"from_keras: {describe_layer(info.layer)} has no funcnet twin. Supported Keras "
            f"layers: {', '.join(sorted(CONVERTERS))} (docs/keras.md). Rebuild the model "
            "from these, or convert the rest by hand with funcnet layers."
        )
    converted = converter(info)
    if masked and kind in _MASK_PASSERS:
        # funcnet's twin takes x alone: it runs on x and the mask goes on beside it.
        wrapped = pass_mask(converted.layer)
        return Converted(wrapped, converted.params, converted.state)
    return converted
