"""Mixed precision: one policy for the whole train step, and dynamic loss scaling.

A :class:`MixedPrecision` policy says in which dtype the model computes; the
params stay in the dtype they were stored in (float32), the model's outputs
are cast to ``output`` (float32) before the loss, and the gradients arrive in
the params' dtype because they flow back through the casts. This is jmp's
``Policy(param_dtype, compute_dtype, output_dtype)`` and Keras's
``mixed_precision.Policy("mixed_bfloat16")`` (variables float32, compute
bfloat16) as one argument of the train step, with no per-layer rewrite.

float16 has a narrow range (smallest normal 6e-5, largest 65504), so small
gradients underflow to zero. Dynamic loss scaling multiplies the loss by a
scale before differentiating and divides the gradients by it after: a step
whose gradients overflow is skipped and the scale halved; after
``dynamic_growth_steps`` good steps in a row the scale doubles (jmp's
``DynamicLossScale``, Keras's ``LossScaleOptimizer``, same defaults). The
scale is train state (:class:`LossScale` in ``TrainState.loss_scale``), so a
checkpoint saves it and a resumed run continues with it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

COMPUTE_DTYPES = ("float32", "bfloat16", "float16")
POLICY_NAMES = ("float32", "mixed_bfloat16", "mixed_float16")
"""Keras's policy names, with Keras's meanings (variables float32)."""


class LossScale(NamedTuple):
    """The dynamic loss scale's state, kept in ``TrainState.loss_scale``.

    Attributes:
        scale: the float32 scalar the loss is multiplied by.
        good_steps: int32 scalar, steps with finite gradients since the scale last changed.
    """

    scale: jax.Array
    good_steps: jax.Array


class MixedPrecision(NamedTuple):
    """A mixed-precision policy for training: params float32, compute in ``compute``.

    Give it (or its name) as ``mixed_precision=`` to :func:`funcnet.fit`,
    :func:`funcnet.make_train_step` and :func:`funcnet.init_train_state`.
    In the train step the params, the floating inputs and nothing else are
    cast to ``compute``; the model state (batch-norm statistics) stays in its
    stored dtype; the predictions are cast to ``output`` before the loss, so
    the loss, the metrics and the gradients are float32. ``predict``,
    ``evaluate`` and validation run the float32 params as they are.

    Attributes:
        compute: the dtype the model computes in: "bfloat16", "float16" or "float32".
        output: the dtype the predictions are cast to before the loss.
        loss_scale: "dynamic" or None (no scaling); "default" (the
            default) is dynamic for float16 and None otherwise (bfloat16's
            range is float32's).
        initial_scale: the first loss scale (Keras's default, ``2**15``).
        dynamic_growth_steps: good steps in a row before the scale doubles.

    Example:
        >>> import funcnet as fn
        >>> policy = fn.MixedPrecision.from_name("mixed_float16")
        >>> policy.compute, policy.loss_scale, policy.initial_scale
        ('float16', 'dynamic', 32768.0)
        >>> fn.MixedPrecision.from_name("mixed_bfloat16").loss_scale is None
        True
    """

    compute: str = "bfloat16"
    output: str = "float32"
    loss_scale: str | None = "default"
    initial_scale: float = 2.0**15
    dynamic_growth_steps: int = 2000

    @classmethod
    def from_name(cls, name: str) -> MixedPrecision:
        """The policy of a Keras policy name: "mixed_bfloat16", "mixed_float16" or "float32"."""
        policy = as_policy(name, "MixedPrecision.from_name")
        return cls("float32")._resolve("") if policy is None else policy

    def _resolve(self, where: str) -> MixedPrecision:
        """This policy with dtypes as names and the default loss scale resolved, or an error."""
        return _resolved(self, where)

    @property
    def scales_loss(self) -> bool:
        """Whether the train state carries a dynamic loss scale ("default": for float16)."""
        if self.loss_scale == "default":
            return _dtype_name(self.compute) == "float16"
        return self.loss_scale == "dynamic"

    def cast_to_compute(self, tree: Any) -> Any:
        """``tree`` with its floating leaves in the compute dtype (integers untouched)."""
        return _cast_floating(tree, self.compute)

    def cast_to_output(self, tree: Any) -> Any:
        """``tree`` with its floating leaves in the output dtype."""
        return _cast_floating(tree, self.output)

    def initial_loss_scale(self) -> LossScale | None:
        """The loss-scale state a train state starts with (None without scaling)."""
        if not self.scales_loss:
            return None
        return LossScale(jnp.asarray(self.initial_scale, jnp.float32), jnp.zeros((), jnp.int32))

    def adjust(self, loss_scale: LossScale, grads_finite: jax.Array) -> LossScale:
        """The next loss scale: halved (never below 1) on overflow, doubled after enough good steps."""
        grown = loss_scale.good_steps + 1 >= self.dynamic_growth_steps
        doubled = loss_scale.scale * 2
        scale = jnp.where(
            grads_finite,
            jnp.where(grown & jnp.isfinite(doubled), doubled, loss_scale.scale),
            jnp.maximum(loss_scale.scale / 2, 1.0),
        )
        good = jnp.where(grads_finite & ~grown, loss_scale.good_steps + 1, 0)
        return LossScale(scale.astype(jnp.float32), good.astype(jnp.int32))


def _cast_floating(tree: Any, dtype: str) -> Any:
    def cast(leaf: Any) -> Any:
        if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating):
            return leaf.astype(dtype)
        return leaf

    return jax.tree.map(cast, tree)


def cast_like(tree: Any, like: Any) -> Any:
    """``tree``'s leaves in the dtypes of ``like``'s (the model state keeps its stored dtypes)."""
    return jax.tree.map(
        lambda leaf, old: jnp.asarray(leaf).astype(jnp.result_type(old)), tree, like
    )


def _dtype_name(value: Any) -> str | None:
    try:
        return str(np.dtype(value))
    except TypeError:
        return None


def as_policy(value: Any, where: str) -> MixedPrecision | None:
    """``mixed_precision=`` as a checked policy, or None for plain float32 training.

    Accepts None, a Keras policy name (:data:`POLICY_NAMES`) or a
    :class:`MixedPrecision`; anything else is an error that starts with ``where``.
    """
    if value is None:
        return None
    if isinstance(value, str):
        names = {"float32": None, "mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}
        if value not in names:
            hint = (
                f' (did you mean "mixed_{value}"? params stay float32)'
                if value in COMPUTE_DTYPES
                else ""
            )
            raise ValueError(
                f"{where}: mixed_precision must be one of {', '.join(map(repr, POLICY_NAMES))} "
                f"or a fn.MixedPrecision, got {value!r}{hint}."
            )
        compute = names[value]
        return None if compute is None else MixedPrecision(compute)._resolve(where)
    if isinstance(value, MixedPrecision):
        return value._resolve(where)
    raise TypeError(
        f"{where}: mixed_precision must be a policy name ({', '.join(map(repr, POLICY_NAMES))}) "
        f"or a fn.MixedPrecision, got {type(value).__name__}: {value!r:.80}."
    )


def _resolved(policy: MixedPrecision, where: str) -> MixedPrecision:
    compute, output = _dtype_name(policy.compute), _dtype_name(policy.output)
    if compute not in COMPUTE_DTYPES:
        raise ValueError(
            f"{where}: MixedPrecision(compute=...) must be one of {', '.join(COMPUTE_DTYPES)}, "
            f"got {policy.compute!r}."
        )
    if output not in COMPUTE_DTYPES:
        raise ValueError(
            f"{where}: MixedPrecision(output=...) must be one of {', '.join(COMPUTE_DTYPES)}, "
            f"got {policy.output!r}. Keep the default, float32, so the loss is float32."
        )
    loss_scale = policy.loss_scale
    if loss_scale == "default":
        loss_scale = "dynamic" if compute == "float16" else None
    if loss_scale not in ("dynamic", None):
        raise ValueError(
            f'{where}: MixedPrecision(loss_scale=...) must be "dynamic" or None, got '
            f"{policy.loss_scale!r}."
        )
    if not (isinstance(policy.initial_scale, (int, float)) and policy.initial_scale >= 1):
        raise ValueError(
            f"{where}: MixedPrecision(initial_scale=...) must be a number >= 1, got "
            f"{policy.initial_scale!r}. Keras's default is 2**15."
        )
    growth = policy.dynamic_growth_steps
    if not isinstance(growth, (int, np.integer)) or isinstance(growth, bool) or growth < 1:
        raise ValueError(
            f"{where}: MixedPrecision(dynamic_growth_steps=...) must be an integer >= 1, got "
            f"{growth!r}."
        )
    return MixedPrecision(compute, output, loss_scale, float(policy.initial_scale), int(growth))


def check_loss_scale(policy: MixedPrecision | None, loss_scale: Any, where: str) -> None:
    """The train state's loss scale must be what the policy needs: present exactly when it scales."""
    wants = policy is not None and policy.scales_loss
    if wants and loss_scale is None:
        raise ValueError(
            f"{where}: mixed_precision={policy_name(policy)} scales the loss, but the train state "
            "has no loss scale (train_state.loss_scale is None). Build it with "
            "init_train_state(..., mixed_precision=<the same policy>)."
        )
    if not wants and loss_scale is not None:
        raise ValueError(
            f"{where}: the train state carries a loss scale (it was built for float16 mixed "
            f"precision) but mixed_precision={policy_name(policy)} does not scale the loss. Pass "
            'the policy the train state was built with, e.g. mixed_precision="mixed_float16".'
        )


def policy_name(policy: MixedPrecision | None) -> str:
    """How a policy reads in a message: its Keras name when it has one."""
    if policy is None:
        return "None"
    default = as_policy(f"mixed_{policy.compute}", "") if policy.compute != "float32" else None
    if policy == default:
        return repr(f"mixed_{policy.compute}")
    return repr(policy)
