"""from_keras: a Keras 3 Sequential or functional model, with its weights, as a funcnet model.

The Keras graph (a DAG of layer calls) becomes funcnet combinators. A chain
of single-input layers is a plain :func:`~funcnet.serial`. Where the graph
branches, the model threads an *environment*, the tuple of the tensors still
needed later, in topological order: each layer call becomes one stage
``branches(keep_0, ..., keep_k, serial(take(inputs), layer))`` that keeps the
live tensors and appends the layer's output, so any DAG (several inputs,
shared tensors, several outputs) is expressed with funcnet's own combinators.
The per-layer conversions are in ``from_keras_layers.py``; the decisions are in
docs/interop.md ("Keras models with their weights").
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from funcnet._src.combinators import branches, serial
from funcnet._src.core import Lambda, Layer, Params, State
from funcnet._src.interop.from_keras_layers import (
    Converted,
    KerasLayerInfo,
    convert_layer,
    describe_layer,
    mask_out,
)


class _Call(NamedTuple):
    """One layer call of the Keras graph, with its tensors named by id."""

    layer: Any
    inputs: tuple[int, ...]  # ids of the Keras tensors it reads, in funcnet's order
    output: int
    options: dict[str, Any]  # call options the converter reads (MultiHeadAttention's mask)


def _check_model(model: Any) -> Any:
    """The model's functional graph (a keras.Functional), or the error saying why not."""
    # Subclassed models live in the user's module: look for Keras among the bases.
    if not any((c.__module__ or "").startswith("keras") for c in type(model).__mro__):
        got = (
            f"the funcnet layer {model.name!r}, which is native already"
            if isinstance(model, Layer)
            else f"{type(model).__name__}: {model!r:.60}"
        )
        raise TypeError(
            "from_keras: expected a Keras 3 Sequential or functional model (keras.Model), "
            f"got {got}. Build the model with keras.Sequential([keras.Input(shape), ...]) or "
            "keras.Model(inputs, outputs) first."
        )
    import keras  # the caller has it: the model is a Keras object

    if not isinstance(model, keras.Model):
        raise TypeError(
            f"from_keras: expected a Keras model, got the Keras {type(model).__name__} "
            f"{getattr(model, 'name', '')!r}. Wrap a layer in a model first: "
            "keras.Sequential([keras.Input(shape), layer])."
        )
    if isinstance(model, keras.Sequential):
        graph = getattr(model, "_functional", None)
        if graph is None:
            raise ValueError(
                f"from_keras: the Sequential model {model.name!r} has no input shape yet, so "
                "its weights do not exist. Start it with keras.Input(shape) (or call "
                "model.build((None, *shape))) before converting."
            )
        return graph
    if not hasattr(model, "_nodes_by_depth"):
        raise TypeError(
            f"from_keras: the model {model.name!r} is a subclassed keras.Model "
            f"({type(model).__name__}), whose call() is Python code with no graph to read. "
            "Rebuild it as a Sequential or functional model (keras.Model(inputs, outputs)), "
            "or write it with funcnet layers."
        )
    return model


def _is_model(layer: Any) -> bool:
    import keras  # only reached with a Keras graph in hand

    return isinstance(layer, keras.Model)


def _calls(graph: Any) -> list[_Call]:
    """The graph's layer calls in an order where every input comes first."""
    calls, seen_layers = [], set()
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        for node in graph._nodes_by_depth[depth]:
            if node.is_input:
                continue
            layer = node.operation
            if id(layer) in seen_layers:
                raise ValueError(
                    f"from_keras: {describe_layer(layer)} is called more than once, sharing its "
                    "weights between calls; funcnet keeps one set of params per layer. Give "
                    "each call its own layer."
                )
            seen_layers.add(id(layer))
            if len(node.outputs) != 1:
                raise ValueError(
                    f"from_keras: {describe_layer(layer)} returns {len(node.outputs)} tensors; "
                    "from_keras converts layers with one output."
                )
            calls.append(_Call(layer, *_arguments(node)))
    return calls


def _read_calls(calls: list[_Call], output_ids: list[int]) -> list[_Call]:
    """The calls whose output something reads: drops the ops computing Keras's masks
    (``not_equal`` of ``Embedding(mask_zero=True)``, ...), read only as ``mask=``
    arguments, which from_keras traces itself."""
    while True:
        read = {t for call in calls for t in call.inputs} | set(output_ids)
        kept = [call for call in calls if call.output in read]
        if len(kept) == len(calls):
            return calls
        calls = kept


def _arguments(node: Any) -> tuple[tuple[int, ...], int, dict[str, Any]]:
    """``(input ids, output id, options)`` of one call; MultiHeadAttention's reordered."""
    layer, args, kwargs = node.operation, node.arguments.args, dict(node.arguments.kwargs)
    kwargs.pop("training", None)
    # Keras records the mask it propagates (Embedding(mask_zero=True), Masking) as a call
    # argument; from_keras traces those masks itself (see from_keras's masked set).
    keras_mask_tensor = kwargs.pop("mask", None)
    if type(layer).__name__ == "MultiHeadAttention":
        # Keras calls mha(query, value, key=None); funcnet takes (query, key, value).
        names = ("query", "value", "key")
        given = dict(zip(names, args))
        given.update({n: kwargs.pop(n) for n in names if n in kwargs})
        query, value = given["query"], given["value"]
        key = given.get("key") if given.get("key") is not None else value
        ids = tuple(id(t) for t in (query, key, value))
        # Keras's attention_mask [batch, Tq, Tk] is one more input: (query, key, value, mask).
        attention_mask = kwargs.pop("attention_mask", None)
        if attention_mask is not None:
            ids = (*ids, id(attention_mask))
        elif len(set(ids)) == 1:
            ids = ids[:1]  # self-attention: funcnet's x, or the (x, mask) pair of a masked x
        # The causal mask is the layer's to build (funcnet's causal=True): keep it aside.
        options: dict[str, Any] = {"use_causal_mask": bool(kwargs.pop("use_causal_mask", False))}
    else:
        ids = tuple(id(t) for t in node.arguments.keras_tensors if t is not keras_mask_tensor)
        options = {}
    unknown = {k: v for k, v in kwargs.items() if v is not None and v is not False}
    if unknown:
        given_options = ", ".join(f"{k}={v!r:.40}" for k, v in unknown.items())
        raise ValueError(
            f"from_keras: {describe_layer(layer)} is called with {given_options}, which from_keras "
            "does not convert (masks and call options are not carried over). Call the layer "
            "on its input tensors alone."
        )
    options["keras_mask"] = keras_mask_tensor is not None
    return ids, id(node.outputs[0]), options


def _first(pair: Any) -> Any:
    return pair[0]


def _identity(x: Any) -> Any:
    return x


def _take(indices: tuple[int, ...], width: int) -> Layer | None:
    """Picks ``indices`` of an environment of ``width`` tensors (None: nothing to do)."""
    if width == 1 and indices == (0,):
        return None
    label = ",".join(map(str, indices))
    if width == 1:  # a lone tensor travels bare, not as a 1-tuple
        return Lambda(lambda x: tuple(x for _ in indices), name=f"take[{label}]")
    if len(indices) == 1:
        (i,) = indices
        return Lambda(lambda env: env[i], name=f"take[{label}]")
    return Lambda(lambda env: tuple(env[i] for i in indices), name=f"take[{label}]")


def _chain(parts: list[Converted]) -> Converted:
    if len(parts) == 1:
        return parts[0]
    return Converted(
        serial(*(p.layer for p in parts)),
        tuple(p.params for p in parts),
        tuple(p.state for p in parts),
    )


def _stage(
    env: list[int], chain: list[_Call], keep: list[int], parts: list[Converted]
) -> Converted:
    """A chain of layer calls on the environment ``env``: keeps ``keep``, appends the output."""
    take = _take(tuple(env.index(t) for t in chain[0].inputs), len(env))
    applied = _chain(parts if take is None else [Converted(take, {}, {}), *parts])
    if not keep:
        return applied
    keepers = [_take((env.index(t),), len(env)) or Lambda(_identity, name="keep") for t in keep]
    children = [*(Converted(k, {}, {}) for k in keepers), applied]
    names = chain[0].layer.name + ("" if len(chain) == 1 else f"..{chain[-1].layer.name}")
    return Converted(
        branches(*(c.layer for c in children), name=names),
        tuple(c.params for c in children),
        tuple(c.state for c in children),
    )


def _chain_first(calls: list[_Call], inputs: list[int]) -> list[_Call]:
    """A topological order of ``calls`` that runs on along a chain while it can.

    Keras orders calls by depth, interleaving parallel branches; continuing
    with the call that reads the last output keeps each branch's layers
    together, so they become one ``serial`` (see ``_stages``).
    """
    produced, remaining = set(inputs), list(calls)
    order: list[_Call] = []
    while remaining:
        ready = [c for c in remaining if all(t in produced for t in c.inputs)]
        follow = [c for c in ready if order and c.inputs == (order[-1].output,)]
        call = (follow or ready)[0]
        order.append(call)
        produced.add(call.output)
        remaining.remove(call)
    return order


def _stages(
    calls: list[_Call], converted: list[Converted], inputs: list[int], outputs: list[int]
) -> list[Converted]:
    """The stages over the environment of live tensors, from the model's inputs to its outputs."""
    needed_after = []  # needed_after[i]: tensors read by calls after call i, or returned
    later = set(outputs)
    for call in reversed(calls):
        needed_after.append(set(later))
        later |= set(call.inputs)
    needed_after.reverse()
    env, stages, i = list(inputs), [], 0
    while i < len(calls):
        chain, parts = [calls[i]], [converted[i]]
        keep = [t for t in env if t in needed_after[i]]
        # A call that alone reads the chain's last output joins the chain.
        while (
            i + 1 < len(calls)
            and calls[i + 1].inputs == (calls[i].output,)
            and calls[i].output not in needed_after[i + 1]
        ):
            i += 1
            chain.append(calls[i])
            parts.append(converted[i])
        stages.append(_stage(env, chain, keep, parts))
        env = [*keep, calls[i].output]
        i += 1
    if env != outputs:
        final = _take(tuple(env.index(t) for t in outputs), len(env))
        stages.append(Converted(final or Lambda(_identity, name="output"), {}, {}))
    return stages


def _spec(tensor: Any) -> jax.ShapeDtypeStruct | tuple:
    return jax.ShapeDtypeStruct(tuple(tensor.shape), jnp.dtype(tensor.dtype))


def from_keras(model: Any) -> tuple[Layer, Params, State]:
    """A Keras 3 model, with its trained weights, as a funcnet model, params and state.

    Reads a built ``keras.Sequential`` or functional ``keras.Model`` (on any
    Keras backend) and returns the equivalent model made of funcnet layers and
    combinators, with the Keras weights copied into funcnet's layouts:
    kernels, the recurrent gate orders, BatchNormalization's moving mean and
    variance (into ``state``), attention projections. Each funcnet layer is
    named as its Keras layer. The result predicts what Keras predicts (to
    float32 rounding) and trains further with :func:`funcnet.fit`.

    Supported layers are listed in docs/keras.md; a layer or an option that
    funcnet cannot express (a sequence mask reaching a layer that reads or
    drops it, ``data_format='channels_first'`` convolutions, a subclassed
    model...) is refused with an error naming the Keras layer, the option
    and the fix. Masks from ``Masking`` and ``Embedding(mask_zero=True)``
    reach the recurrent layers past the layers Keras lets them through
    (Dense, Dropout, activations, LayerNormalization...: ``fn.pass_mask``),
    and ``MultiHeadAttention`` (built with ``masked=True``), the elementwise
    merges and ``GlobalAveragePooling1D`` read them as Keras does; a
    ``MultiHeadAttention`` called with ``attention_mask=`` takes it as one
    more input (a ``keras.Input`` mask is then an input of the model).

    Args:
        model: a Keras 3 model whose inputs have known shapes (a Sequential
            started with ``keras.Input``, or ``keras.Model(inputs, outputs)``).

    Returns:
        ``(net, params, state)``. ``net`` takes what the Keras model takes:
        one array ``[batch, ...]``, or a tuple of arrays in ``model.inputs``
        order; it returns one array or a tuple in ``model.outputs`` order.
        ``net.init`` with the Keras input shapes gives params of the same tree
        structure, shapes and dtypes.

    Example:
        >>> import os; _ = os.environ.setdefault("KERAS_BACKEND", "jax")
        >>> import jax, keras, numpy as np, funcnet as fn
        >>> model = keras.Sequential([keras.Input((3,)),
        ...                           keras.layers.Dense(4, activation="relu", name="hidden"),
        ...                           keras.layers.Dense(2, name="out")], name="mlp")
        >>> net, params, state = fn.from_keras(model)
        >>> net.name, jax.tree.map(np.shape, params)
        ('mlp', (({'b': (4,), 'w': (3, 4)}, {'b': (2,), 'w': (4, 2)}),))
        >>> w1, b1, w2, b2 = model.get_weights()
        >>> x = np.ones((5, 3), np.float32)
        >>> y = fn.predict(net, params, state, x)
        >>> bool(np.allclose(y, np.maximum(x @ w1 + b1, 0) @ w2 + b2, atol=1e-5))
        True
    """
    graph = _check_model(model)
    inputs, outputs = list(graph.inputs), list(graph.outputs)
    if len(set(map(id, outputs))) != len(outputs):
        raise ValueError(
            f"from_keras: the model {model.name!r} returns the same tensor twice; give each "
            "output its own layer."
        )
    input_ids, output_ids = [id(t) for t in inputs], [id(t) for t in outputs]
    calls = _chain_first(_read_calls(_calls(graph), output_ids), input_ids)
    read = {t for call in calls for t in call.inputs}
    unused = [t.name for t in inputs if id(t) not in read | set(output_ids)]
    if unused:
        raise ValueError(
            f"from_keras: the model {model.name!r} never reads its input(s) {unused}; "
            "remove them from keras.Model(inputs=...)."
        )
    shapes = {id(t): tuple(t.shape) for t in inputs}
    masked: set[int] = set()  # tensors that carry a sequence mask, as funcnet's (x, mask)
    converted = []
    for call in calls:
        shapes[call.output] = tuple(call.layer.output.shape)
        if _is_model(call.layer):  # a model used as a layer: rebuilt the same way
            converted.append(Converted(*from_keras(call.layer)))
            continue
        mask_in = any(t in masked for t in call.inputs)
        info = KerasLayerInfo(
            call.layer,
            call.layer.get_config(),
            tuple(shapes[t] for t in call.inputs),
            {
                **call.options,
                "masked": mask_in,
                "masked_inputs": tuple(t in masked for t in call.inputs),
            },
        )
        converted.append(convert_layer(info))
        if mask_out(info):
            masked.add(call.output)
            if call.output in output_ids and call.output not in read:
                # A model output: Keras returns the tensor, its mask stays inside Keras.
                c = converted[-1]
                without_mask = serial(c.layer, Lambda(_first, name=f"{c.layer.name}.drop_mask"))
                converted[-1] = Converted(without_mask, (c.params, {}), (c.state, {}))
    stages = _stages(calls, converted, input_ids, output_ids)
    net = serial(*(s.layer for s in stages), name=model.name)
    params = tuple(s.params for s in stages)
    state = tuple(s.state for s in stages)
    _check_against_init(model, net, params, state, inputs)
    return net, params, state


def _check_against_init(model: Any, net: Layer, params: Params, state: State, inputs: list) -> None:
    """The copied weights must have the tree, shapes and dtypes that ``net.init`` gives."""
    spec = _spec(inputs[0]) if len(inputs) == 1 else tuple(_spec(t) for t in inputs)
    want_params, want_state = jax.eval_shape(lambda key: net.init(key, spec)[1:], jax.random.key(0))
    for what, got, want in (("params", params, want_params), ("state", state, want_state)):
        got_shapes = jax.tree.map(lambda a: (a.shape, jnp.dtype(a.dtype)), got)
        want_shapes = jax.tree.map(lambda a: (a.shape, jnp.dtype(a.dtype)), want)
        if got_shapes != want_shapes:
            raise AssertionError(
                f"from_keras: the {what} copied from {model.name!r} do not fit the converted "
                f"model (a bug in from_keras, please report it): got {got_shapes}, "
                f"expected {want_shapes}."
            )
