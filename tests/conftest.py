"""Suite-wide settings: accidental broadcasting fails loudly; compiled programs persist.

Most of the suite's time is XLA compiling small programs, the same ones on
every run. The suite therefore keeps JAX's persistent compilation cache in a
folder of its own (never the user's funcnet cache): a second run of
``python -m pytest`` loads its programs instead of compiling them.
``FUNCNET_TEST_COMPILATION_CACHE=0`` turns that off (e.g. to time a cold run).

For the same reason the suite asks XLA's CPU backend for quick code generation:
LLVM at -O0 without its expensive passes (a cold run spends about 40% less CPU
time compiling), and fusions emitted by XLA's classic elemental emitter
instead of its newer MLIR fusion emitters (each program compiles in a third to
a half of the CPU time: 2.15 s -> 0.65 s for a small CNN's epoch program). The
programs XLA builds (its HLO passes, which ops fuse) are unchanged; only the
code generated for them differs, which can move the last bits of a float
result (no fused multiply-add), well inside the tests' tolerances. A test must not compare chaotic runs (a divergence amplifies
those bits) across two programs.
``FUNCNET_TEST_FULL_CODEGEN=1`` keeps XLA's default code generation.

Beside the tests marked ``@pytest.mark.slow`` in place, the tests listed in
``tests/slow_tests.txt`` (each measured over 1 s in a cold run on 2 cores) are
marked slow here, so that the README's ``python -m pytest`` stays under 5
minutes; ``python -m pytest -m slow`` (CI's second step) runs them all.
"""

import os
import pathlib

import jax
import pytest

# Importing jax reads no flags: XLA_FLAGS is read once, when JAX creates its
# CPU backend (the first computation), which is after this. The worker
# processes that xdist starts load this file too.
_QUICK_CODEGEN = (
    "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    " --xla_cpu_use_fusion_emitters=false"
)
if os.environ.get("FUNCNET_TEST_FULL_CODEGEN", "0") != "1":
    _flags = os.environ.get("XLA_FLAGS", "")
    if _QUICK_CODEGEN not in _flags:  # the workers inherit the controller's setting
        os.environ["XLA_FLAGS"] = f"{_flags} {_QUICK_CODEGEN}".strip()

jax.config.update("jax_numpy_rank_promotion", "raise")


def _test_cache_dir() -> pathlib.Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "funcnet" / "pytest-jax"


if os.environ.get("FUNCNET_TEST_COMPILATION_CACHE", "1") != "0":
    try:
        _test_cache_dir().mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # a read-only home: the suite runs, only slower
    else:
        # Unbounded on purpose: the suite compiles the same programs every run,
        # and JAX's size-bounded cache takes a file lock per entry, which the
        # parallel workers would contend for.
        jax.config.update("jax_compilation_cache_dir", str(_test_cache_dir()))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


_SLOW_LIST = pathlib.Path(__file__).with_name("slow_tests.txt")
_SLOW_IDS = frozenset(
    line.strip()
    for line in _SLOW_LIST.read_text().splitlines()
    if line.strip() and not line.startswith("#")
)


@pytest.hookimpl(tryfirst=True)  # before pytest's own -m selection reads the marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid in _SLOW_IDS:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def key():
    return jax.random.key(0)
