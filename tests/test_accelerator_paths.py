"""funcnet's CPU-only code paths are chosen by the platform in use, and never on an accelerator.

The im2col convolution and slice-based pooling kernels (``impl="auto"``)
are chosen per platform when a program is lowered (``lax.platform_dependent``),
so a program lowered for CUDA or TPU (here by cross-lowering with
``jax.export``, without the accelerator) holds the native
``convolution``/``reduce_window``. ``fit``'s loop choice (a Python loop for
native convolutions on XLA:CPU) is decided from the platform of the data's
devices (``platform_of``), not JAX's default backend.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

import funcnet as fn
from funcnet._src.training.engine import platform_of, resolve_loop


def boom():
    raise AssertionError("the program is traced only for the CPU's choice")


@pytest.mark.parametrize("platform", ["gpu", "cuda", "rocm", "tpu"])
def test_the_loop_choice_is_the_scan_on_an_accelerator_without_tracing(platform):
    assert resolve_loop("auto", boom, platform) == "scan"


def test_the_loop_choice_on_the_cpu_looks_for_a_native_convolution():
    def conv(x, w):
        return jax.lax.conv_general_dilated(x, w, (1, 1), "VALID")

    args = (jnp.zeros((1, 1, 5, 5)), jnp.zeros((2, 1, 3, 3)))
    assert resolve_loop("auto", lambda: jax.make_jaxpr(conv)(*args), "cpu") == "python"
    assert resolve_loop("auto", lambda: jax.make_jaxpr(jnp.sin)(1.0), "cpu") == "scan"


def test_platform_of_reads_the_devices_of_the_data():
    assert platform_of((jax.device_put(jnp.zeros(2), jax.devices("cpu")[0]), 3)) == "cpu"
    assert platform_of({}) == jax.default_backend()


@pytest.fixture(scope="module")
def lowered():
    """The StableHLO text of a Conv + MaxPool forward pass, lowered for each platform."""
    net = fn.serial(fn.Conv(4, (3, 3)), fn.MaxPool((2, 2)))
    _, params, state = net.init(jax.random.key(0), (None, 8, 8, 1))
    forward = jax.jit(lambda p, x: net.apply(p, state, x)[0])
    x = jnp.zeros((2, 8, 8, 1))
    return {
        platform: jax.export.export(forward, platforms=[platform])(params, x).mlir_module()
        for platform in ("cpu", "cuda", "tpu")
    }


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
def test_conv_and_pool_lowered_for_an_accelerator_are_native(lowered, platform):
    assert "stablehlo.convolution" in lowered[platform]
    assert "reduce_window" in lowered[platform]


def test_conv_and_pool_lowered_for_the_cpu_are_the_rewrites(lowered):
    assert "stablehlo.convolution" not in lowered["cpu"]
    assert "reduce_window" not in lowered["cpu"]
