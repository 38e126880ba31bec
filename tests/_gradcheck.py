"""``jax.test_util.check_grads`` in reverse mode, as one compiled program.

``check_grads`` runs its finite differences, random projections and inner
products as eager operations, and every eager operation compiles a program of
its own: a second-order check of a tiny loss costs seconds of XLA time. This
helper makes the same checks (the same random directions, ``eps`` and default
float64/float32 tolerances) but computes every number of every order in a
single ``jax.jit`` program and compares them on the host.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import tree_leaves, tree_map

_DEFAULT_TOL = {np.dtype(np.float64): 1e-5, np.dtype(np.float32): 1e-3}


def _inner(xs, ys):
    return sum(jnp.vdot(x, y) for x, y in zip(tree_leaves(xs), tree_leaves(ys)))


def _rand_like(rng, x):
    x = np.asarray(x)
    return rng.standard_normal(x.shape).astype(x.dtype)


def _directions(funcs, args):
    """check_grads' random tangent and cotangent of each order, drawn in its order."""
    rng = np.random.RandomState(0)
    out = []
    for g in funcs:
        tangent = tree_map(functools.partial(_rand_like, rng), args)
        out_shape = jax.eval_shape(g, *args)
        zeros = tree_map(lambda s: np.zeros(s.shape, s.dtype), out_shape)
        out.append((tangent, tree_map(functools.partial(_rand_like, rng), zeros)))
    return out


def _next_order(f):
    """check_grads' next function: the VJP of ``f`` pulled back along its own output."""

    def f_vjp(*args):
        out, vjp = jax.vjp(f, *args)
        return vjp(out)

    return f_vjp


def check_grads_rev(f, args, order, *, atol=None, rtol=None, eps=1e-4):
    """Check ``f``'s VJPs up to ``order`` against central differences, in one program."""
    check_many_grads_rev({"f": (f, args)}, order, atol=atol, rtol=rtol, eps=eps)


def check_many_grads_rev(cases, order, *, atol=None, rtol=None, eps=1e-4):
    """``check_grads_rev`` for each ``name: (f, args)`` of ``cases``, all in one program."""
    funcs, all_args, directions = {}, {}, {}
    for name, (f, args) in cases.items():
        args = tuple(args)
        funcs[name] = [f]
        for _ in range(order - 1):
            funcs[name].append(_next_order(funcs[name][-1]))
        directions[name] = _directions(funcs[name], args)
        all_args[name] = args

    @jax.jit
    def numbers(all_args, directions):
        out = {}
        for name, args in all_args.items():
            out[name] = []
            for g, (tangent, cotangent) in zip(funcs[name], directions[name]):
                _, vjp = jax.vjp(g, *args)
                plus = g(*tree_map(lambda a, t: a + eps * t, args, tangent))
                minus = g(*tree_map(lambda a, t: a - eps * t, args, tangent))
                numerical = tree_map(lambda p, m: (p - m) * (0.5 / eps), plus, minus)
                out[name].append((_inner(tangent, vjp(cotangent)), _inner(numerical, cotangent)))
        return out

    for name, levels in numbers(all_args, directions).items():
        for level, (ip, ip_expected) in enumerate(levels, start=1):
            tol = _DEFAULT_TOL.get(np.dtype(np.asarray(ip).dtype), 1e-3)
            np.testing.assert_allclose(
                np.asarray(ip),
                np.asarray(ip_expected),
                atol=tol if atol is None else atol,
                rtol=tol if rtol is None else rtol,
                err_msg=f"{name}: order {level} VJP cotangent projection",
            )
