"""Layers with a hand-written backward pass, and a checker for their gradients.

:func:`custom_vjp_layer` builds a layer from a forward function that also
returns what its backward needs, and a backward function that maps those
residuals and the output's cotangent to the cotangents of the params and of
the input; it is ``jax.custom_vjp`` in the layer contract.
:func:`check_layer_grads` compares the gradients a model actually uses with
autodiff of the plain forward (or of a reference rule) and with central
finite differences, in float64, path by path. The decisions behind both are
in ``docs/combinators.md`` (section "Custom backward passes").
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.typing import ArrayLike

from funcnet._src.core import (
    InputShape,
    Layer,
    Params,
    Shape,
    State,
    describe,
    infer_output_shape,
    is_shape,
    shape_error,
    shape_of,
    type_error,
)

_AUTODIFF: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "funcnet_custom_vjp_autodiff", default=False
)


@contextlib.contextmanager
def _autodiff_forward() -> Iterator[None]:
    """Inside the block, custom_vjp layers traced are differentiated by autodiff."""
    token = _AUTODIFF.set(True)
    try:
        yield
    finally:
        _AUTODIFF.reset(token)


def _zero_cotangent(primal: Any) -> Any:
    dtype = jnp.result_type(primal)
    if jnp.issubdtype(dtype, jnp.inexact):
        return jnp.zeros(jnp.shape(primal), dtype)
    return np.zeros(jnp.shape(primal), jax.dtypes.float0)


def _cotangent(name: str, what: str, got: Any, primal: Any) -> Any:
    """``got`` checked against the structure and shapes of ``primal``, in its dtypes."""
    if got is None:
        return jax.tree.map(_zero_cotangent, primal)
    got_tree: Any = jax.tree.structure(got)
    primal_tree: Any = jax.tree.structure(primal)
    if got_tree != primal_tree:
        raise shape_error(
            name,
            f"backward returned d{what} with structure {got_tree}, expected the "
            f"structure of {what}, {primal_tree}. Return one cotangent per "
            f"entry of {what} (or None for zeros).",
        )
    paths = jax.tree_util.tree_leaves_with_path(primal)
    out = []
    for (path, p), g in zip(paths, got_tree.flatten_up_to(got)):
        if jnp.shape(g) != jnp.shape(p):
            raise shape_error(
                name,
                f"backward returned d{what}{jax.tree_util.keystr(path)} of shape {jnp.shape(g)}, "
                f"expected {jnp.shape(p)}, the shape of {what}{jax.tree_util.keystr(path)}. "
                "Sum over the axes that the forward broadcast.",
            )
        zero = _zero_cotangent(p)
        out.append(zero if zero.dtype == jax.dtypes.float0 else jnp.asarray(g).astype(zero.dtype))
    return jax.tree.unflatten(jax.tree.structure(primal), out)


def custom_vjp_layer(
    forward: Callable[[Params, Any], tuple[Any, Any]],
    backward: Callable[[Any, Any], tuple[Any, Any]],
    init_params: Callable[[jax.Array, Shape], Params],
    name: str = "custom_vjp",
) -> Layer:
    """A layer with a hand-written backward pass, over ``jax.custom_vjp``.

    Args:
        forward: ``forward(params, x) -> (y, residuals)``; ``residuals`` is a
            pytree of arrays that ``backward`` needs (e.g. ``x``).
        backward: ``backward(residuals, dy) -> (dparams, dx)``, the cotangents
            of ``params`` and ``x`` for an output cotangent ``dy`` of ``y``'s
            shape. Either may be ``None`` for zeros.
        init_params: ``init_params(key, input_shape) -> params``; the output
            shape is inferred from ``forward`` with ``jax.eval_shape``.
        name: the name used in error paths and summaries.

    Returns:
        A stateless layer that runs ``forward`` and differentiates with
        ``backward``, under ``jit``, ``vmap``, ``grad`` and inside combinators.

    Example:
        >>> import jax, jax.numpy as jnp, funcnet as fn
        >>> halve_grad = fn.custom_vjp_layer(
        ...     lambda params, x: (x, ()),
        ...     lambda residuals, dy: (None, dy / 2),
        ...     lambda key, shape: {},
        ...     name="HalveGrad",
        ... )
        >>> jax.grad(lambda x: halve_grad.apply({}, {}, x)[0].sum())(jnp.ones(2)).tolist()
        [0.5, 0.5]
    """
    for argument, value, form in (
        ("forward", forward, "forward(params, x) -> (y, residuals)"),
        ("backward", backward, "backward(residuals, dy) -> (dparams, dx)"),
        ("init_params", init_params, "init_params(key, input_shape) -> params"),
    ):
        if not callable(value) or isinstance(value, Layer):
            raise TypeError(
                f"custom_vjp_layer: {argument} must be a function {form}, got {describe(value)}. "
                "Pass custom_vjp_layer(forward, backward, init_params, name=...)."
            )

    def call_forward(params: Params, x: Any) -> tuple[Any, Any]:
        result = forward(params, x)
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise type_error(
                name,
                f"forward must return a pair (y, residuals), got {type(result).__name__}. "
                "Return (y, ()) when backward needs no residuals.",
            )
        return result[0], result[1]

    def with_custom_vjp(params: Params, x: Any) -> Any:
        @jax.custom_vjp
        def fn(params: Params, x: Any) -> Any:
            return call_forward(params, x)[0]

        def bwd(residuals: Any, dy: Any) -> tuple[Any, Any]:
            result = backward(residuals, dy)
            if not isinstance(result, (tuple, list)) or len(result) != 2:
                raise type_error(
                    name,
                    f"backward must return a pair (dparams, dx), got {type(result).__name__}.",
                )
            return _cotangent(name, "params", result[0], params), _cotangent(
                name, "x", result[1], x
            )

        fn.defvjp(call_forward, bwd)
        return fn(params, x)

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Any, Params, State]:
        params = init_params(key, shape_of(input_shape) if is_shape(input_shape) else input_shape)
        output_shape = infer_output_shape(lambda x: call_forward(params, x)[0], input_shape)
        return output_shape, params, {}

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[Any, State]:
        del key, train
        if _AUTODIFF.get():
            return call_forward(params, x)[0], state
        return with_custom_vjp(params, x), state

    return Layer(init, apply, name)


# --------------------------------------------------------------------------
# Gradient checks


class GradCheckError(AssertionError):
    """A gradient check failed; ``report`` holds the per-path errors."""

    def __init__(self, report: GradCheckReport):
        self.report = report
        super().__init__(str(report))


class GradCheckReport(NamedTuple):
    """The result of :func:`check_layer_grads`.

    Attributes:
        errors: ``{comparison: {path: max abs error}}``; comparisons are
            ``"autodiff"`` (or ``"reference"``) and ``"numerical"``, paths are
            ``params[...]`` and ``x[...]``.
        failures: the ``(comparison, path)`` pairs outside the tolerance.
        worst: ``(comparison, path, error)`` of the largest error, failing ones first.
    """

    errors: dict[str, dict[str, float]]
    failures: tuple[tuple[str, str], ...]
    worst: tuple[str, str, float] | None

    @property
    def ok(self) -> bool:
        return not self.failures

    def __str__(self) -> str:
        lines = []
        if self.worst is not None:
            comparison, path, error = self.worst
            verdict = "mismatch" if self.failures else "ok"
            lines.append(
                f"gradient check {verdict}: worst {path} against {comparison}, max abs error {error:.3g}"
            )
        for comparison, per_path in self.errors.items():
            for path, error in per_path.items():
                flag = "FAIL" if (comparison, path) in self.failures else "ok"
                lines.append(f"  {comparison:<10} {path:<24} {error:>10.3g}  {flag}")
        return "\n".join(lines)


def _to_float64(a: ArrayLike) -> jax.Array:
    # Cast in numpy: an eager astype would compile a program per leaf shape.
    a = np.asarray(a)
    return jnp.asarray(a.astype(np.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a)


def _float_mask(x: Any) -> Any:
    return jax.tree.map(lambda a: jnp.issubdtype(jnp.result_type(a), jnp.floating), x)


def check_layer_grads(
    layer: Layer,
    params: Params,
    x: Any,
    *,
    state: State | None = None,
    key: jax.Array | None = None,
    train: bool = False,
    reference: Callable[[Params, Any], Any] | None = None,
    autodiff: bool = True,
    numerical: bool = True,
    cotangent: Any = None,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    raise_on_error: bool = True,
) -> GradCheckReport:
    """Checks a model's gradients against autodiff and finite differences, in float64.

    The gradients of ``sum(y * v)`` for a fixed random cotangent ``v`` (the
    ones the model trains with, custom backward passes included) are compared,
    path by path, with (1) autodiff of the same model with every
    :func:`custom_vjp_layer`'s backward replaced by autodiff of its forward, or
    the autodiff of ``reference`` if given, and (2) central finite
    differences of the forward.

    Args:
        layer: the layer or model to check.
        params: its params; cast to float64.
        x: an input ``[batch, ...]`` (or tuple of inputs); float leaves are cast
            to float64 and checked, other leaves are held fixed.
        state: the model state; None takes the one ``layer.init`` gives.
        key: passed to ``apply``.
        train: passed to ``apply``.
        reference: ``reference(params, x) -> y`` whose autodiff gradient is the
            intended rule (e.g. ``lambda p, x: x`` for a straight-through estimator).
        autodiff: compare with autodiff (of ``reference`` if given); turn off
            when the forward is not differentiable and no reference is given.
        numerical: compare with finite differences; turn off for a forward
            with jumps (rounding) or a backward that is not its derivative.
        cotangent: the output cotangent ``v`` (a pytree like ``y``); None draws
            standard normals from ``numpy.random.default_rng(0)``, leaf by leaf.
        eps: the finite-difference step.
        atol: the absolute tolerance: an element fails when
            ``|got - want| > atol + rtol * |want|``.
        rtol: the relative tolerance (see ``atol``).
        raise_on_error: raise :class:`GradCheckError` naming the worst path on failure.

    Returns:
        A :class:`GradCheckReport` with the max abs error per comparison and path.

    Example:
        >>> import jax, jax.numpy as jnp, funcnet as fn
        >>> net = fn.serial(fn.Dense(3), jnp.tanh)
        >>> _, params, _ = net.init(jax.random.key(0), (None, 2))
        >>> fn.check_layer_grads(net, params, jnp.ones((4, 2))).ok
        True
    """
    if not isinstance(layer, Layer):
        fix = (
            "A layer constructor is a call (fn.Dense(3), not fn.Dense); a plain function "
            "x -> y becomes a layer with fn.Lambda(f)."
            if callable(layer)
            else "Pass the layer or model itself, e.g. check_layer_grads(net, params, x)."
        )
        raise TypeError(
            f"check_layer_grads: layer must be a funcnet Layer (a layer or a model built "
            f"with serial(...)), got {describe(layer)}. {fix}"
        )
    with jax.enable_x64(True):
        params, x = jax.tree.map(_to_float64, (params, x))
        if state is None:
            spec = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), x)
            # One compiled program instead of an eager dispatch per op of init.
            state = jax.jit(lambda k: layer.init(k, spec)[2])(jax.random.key(0))
        mask = _float_mask(x)
        x_fixed = jax.tree.map(lambda a, m: None if m else a, x, mask)
        x_float = jax.tree.map(lambda a, m: a if m else None, x, mask)

        def merge(xf):
            return jax.tree.map(
                lambda f, c: c if f is None else f, xf, x_fixed, is_leaf=lambda a: a is None
            )

        def model(p, xf):
            return layer.apply(p, state, merge(xf), key=key, train=train)[0]

        if cotangent is None:
            rng = np.random.default_rng(0)
            cotangent = jax.tree.map(
                lambda a: rng.standard_normal(a.shape), jax.eval_shape(model, params, x_float)
            )
        cotangent = jax.tree.map(lambda v: np.asarray(v, np.float64), cotangent)

        def scalar(f):
            def loss(p, xf):
                out = jax.tree.map(
                    lambda a, v: jnp.sum(a.astype(jnp.float64) * v), f(p, xf), cotangent
                )
                return sum(jax.tree.leaves(out))

            return loss

        got = jax.jit(jax.grad(scalar(model), argnums=(0, 1)))(params, x_float)
        wants = {}
        if reference is not None and autodiff:
            wants["reference"] = jax.jit(
                jax.grad(scalar(lambda p, xf: reference(p, merge(xf))), argnums=(0, 1))
            )(params, x_float)
        elif autodiff:
            with _autodiff_forward():
                wants["autodiff"] = jax.jit(jax.grad(scalar(model), argnums=(0, 1)))(
                    params, x_float
                )
        if numerical:
            wants["numerical"] = _finite_differences(scalar(model), (params, x_float), eps)
        return _report(got, wants, atol, rtol, raise_on_error)


def _finite_differences(loss: Callable, args: tuple, eps: float) -> Any:
    flat, unravel = ravel_pytree(args)
    if flat.size == 0:
        return args

    def central(i):
        step = jnp.zeros_like(flat).at[i].set(eps)
        return (loss(*unravel(flat + step)) - loss(*unravel(flat - step))) / (2 * eps)

    return unravel(jax.jit(lambda: jax.lax.map(central, jnp.arange(flat.size), batch_size=64))())


def _path_name(path: tuple) -> str:
    head = "params" if path[0].idx == 0 else "x"
    return head + jax.tree_util.keystr(path[1:])


def _report(
    got: Any, wants: dict[str, Any], atol: float, rtol: float, raise_on_error: bool
) -> GradCheckReport:
    errors: dict[str, dict[str, float]] = {}
    failures = []
    ranked = []
    got_leaves = jax.tree_util.tree_leaves_with_path(got)
    for comparison, want in wants.items():
        errors[comparison] = {}
        for (path, g), w in zip(got_leaves, jax.tree.leaves(want)):
            g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
            diff = np.abs(g - w)
            error = float(diff.max()) if diff.size else 0.0
            name = _path_name(path)
            errors[comparison][name] = error
            failed = bool(np.any(diff > atol + rtol * np.abs(w)))
            if failed:
                failures.append((comparison, name))
            ranked.append((failed, error, comparison, name))
    worst = max(ranked, default=None, key=lambda r: r[:2])
    report = GradCheckReport(
        errors, tuple(failures), None if worst is None else (worst[2], worst[3], worst[1])
    )
    if failures and raise_on_error:
        raise GradCheckError(report)
    return report
