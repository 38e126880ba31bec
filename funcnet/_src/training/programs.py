"""funcnet's own cache of compiled programs, shared by models built alike.

``jax.jit`` caches a compiled program per Python function object, so a model
rebuilt from the same code (a notebook cell run again, a playground reset, a
sweep that constructs its model in a loop) is traced *and compiled* again.
:func:`shared_jit` compiles through JAX's ahead-of-time API instead and keys
the executable by the text of the lowered program (plus the devices it runs
on), so a rebuilt model pays one trace and one lowering, never a second XLA
compilation. The cache is in memory, bounded (least recently used programs
are dropped) and private to funcnet: it changes no JAX setting and is not
seen by the user's other JAX code.

>>> import jax.numpy as jnp
>>> double = shared_jit(lambda x: 2 * x)
>>> double(jnp.arange(3.0)).tolist()
[0.0, 2.0, 4.0]
"""

from __future__ import annotations

import collections
import hashlib
import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import jax
import numpy as np

# Programs kept at once. A program of the small models funcnet compiles most
# often holds well under a megabyte; 128 is more than any one process that
# rebuilds its models in a loop keeps alive usefully.
MAX_PROGRAMS = 128


class _ProgramCache:
    """A bounded, thread-safe LRU map from a lowered program's digest to its executable."""

    def __init__(self, max_programs: int) -> None:
        self.max_programs = max_programs
        self._programs: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def compiled(self, lowered: Any) -> Any:
        digest = _digest(lowered)
        with self._lock:
            program = self._programs.get(digest)
            if program is not None:
                self._programs.move_to_end(digest)
                self.hits += 1
                return program
        program = lowered.compile()  # outside the lock: compiling takes long
        with self._lock:
            self.misses += 1
            self._programs[digest] = program
            self._programs.move_to_end(digest)
            while len(self._programs) > self.max_programs:
                self._programs.popitem(last=False)
        return program

    def __len__(self) -> int:
        return len(self._programs)

    def clear(self) -> None:
        with self._lock:
            self._programs.clear()
            self.hits = self.misses = 0


PROGRAMS = _ProgramCache(MAX_PROGRAMS)


def _digest(lowered: Any) -> str:
    # The text without debug information is the whole program, constants
    # included; the devices and the backend decide where (and for what) the
    # executable was built. The executable also holds the input and output
    # trees it was lowered with, which the text does not show (an empty
    # ``{}`` of params has no array, so no parameter): two programs that
    # print alike but take or give other trees need executables of their own.
    text = lowered.as_text(debug_info=False)
    devices = lowered._lowering.compile_args.get("device_assignment")
    where = repr([(d.platform, d.id) for d in devices]) if devices is not None else ""
    trees = f"{lowered.in_tree}\n{lowered.out_tree}"
    return hashlib.sha256(f"{jax.__version__}\n{where}\n{trees}\n{text}".encode()).hexdigest()


def _signature(leaves: Sequence[Any]) -> tuple:
    """What decides which executable a call needs: each leaf's type, shape and placement."""
    out: list[Any] = []
    for leaf in leaves:
        if isinstance(leaf, jax.Array):
            base = getattr(leaf, "_base_array", leaf)  # a PRNG key's raw data: cheaper to read
            out.append((leaf.shape, leaf.dtype, getattr(base, "weak_type", False), base.sharding))
        elif isinstance(leaf, np.ndarray | np.generic):
            out.append((leaf.shape, leaf.dtype))
        else:  # a Python scalar: jit treats it as weakly typed
            out.append(type(leaf))
    return tuple(out)


class SharedProgram:
    """A jitted function whose executables come from the shared program cache.

    Called like the function it wraps (static arguments included). Per input
    signature it lowers once and asks the cache for the executable.
    """

    def __init__(
        self,
        fun: Callable[..., Any],
        *,
        donate_argnums: int | Sequence[int] = (),
        static_argnums: int | Sequence[int] = (),
    ) -> None:
        self._static = (
            (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)
        )
        self._jitted = jax.jit(fun, donate_argnums=donate_argnums, static_argnums=static_argnums)
        self._executables: dict[Hashable, Any] = {}
        self._last: tuple[tuple, Any] | None = None  # (static arguments, executable)
        self.__wrapped__ = fun

    def __call__(self, *args: Any) -> Any:
        static = tuple(args[i] for i in self._static)
        dynamic = [a for i, a in enumerate(args) if i not in self._static]
        if self._last is not None and static == self._last[0]:
            # The common case, a call like the one before (every epoch of a
            # fit): the executable itself checks the arguments' tree, types,
            # shapes and shardings, in C++, before it runs (and so before it
            # consumes donated buffers), and refuses a mismatch with a
            # TypeError or ValueError; the lookup below then finds the right one.
            try:
                return self._last[1](*dynamic)
            except (TypeError, ValueError):
                pass
        leaves, treedef = jax.tree.flatten(dynamic)
        signature = (static, treedef, _signature(leaves))
        executable = self._executables.get(signature)
        if executable is None:
            executable = PROGRAMS.compiled(self._jitted.lower(*args))
            self._executables[signature] = executable
        self._last = (static, executable)
        return executable(*dynamic)

    def lower(self, *args: Any) -> Any:
        """The lowered program for these arguments (as ``jax.jit(fun).lower``)."""
        return self._jitted.lower(*args)

    def trace(self, *args: Any) -> Any:
        """The traced program for these arguments (as ``jax.jit(fun).trace``); a later
        call with the same signature reuses the trace."""
        return self._jitted.trace(*args)


def shared_jit(
    fun: Callable[..., Any],
    *,
    donate_argnums: int | Sequence[int] = (),
    static_argnums: int | Sequence[int] = (),
) -> SharedProgram:
    """``jax.jit`` whose compiled programs are shared by every function that lowers alike.

    Args:
        fun: the function to compile.
        donate_argnums, static_argnums: as for ``jax.jit``.

    Returns:
        A callable with ``fun``'s signature.
    """
    return SharedProgram(fun, donate_argnums=donate_argnums, static_argnums=static_argnums)
