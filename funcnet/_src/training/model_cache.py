"""Programs cached per model, dropped when the model is garbage-collected.

A jitted training or inference program calls the model it was built for, so a
cache that held it next to a strong reference to the model would keep every
model ever trained alive. :class:`ModelCache` keeps each model's programs in a
``weakref.WeakKeyDictionary`` keyed by the model's ``apply`` function, and the
programs reach the model only through weak references: once the user drops
the model, its programs go too.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from funcnet._src.core import Layer

T = TypeVar("T")

# Programs kept per model (one per batch size, optimizer, ...): bounded, as a
# model trained with ever new settings would otherwise grow its entry forever.
_PER_MODEL = 16
# Models whose functions cannot be weakly referenced are cached strongly, a few.
_STRONG = 8


def _weakly(fn: Callable) -> Callable:
    """A function that calls ``fn`` through a weak reference (TypeError if ``fn`` has none)."""
    ref = weakref.ref(fn)

    def call(*args: Any, **kwargs: Any) -> Any:
        target = ref()
        if target is None:  # only a program kept past its model could get here
            raise RuntimeError("funcnet: this program's model has been garbage-collected.")
        return target(*args, **kwargs)

    return call


class ModelCache(Generic[T]):
    """``cache.get(net, key, build)``: ``build(weak_net)``, computed once per model and key.

    ``build`` receives a :class:`Layer` equal to ``net`` in behaviour whose
    ``init`` and ``apply`` hold ``net``'s functions weakly, and must not keep
    ``net`` itself. ``key`` (hashable) names what else the result depends on.

    Example:
        >>> import funcnet as fn
        >>> cache = ModelCache()
        >>> net = fn.Dense(2)
        >>> cache.get(net, "name", lambda weak: weak.name) is cache.get(net, "name", len)
        True
    """

    def __init__(self) -> None:
        self._by_apply: weakref.WeakKeyDictionary[Callable, OrderedDict[Hashable, T]] = (
            weakref.WeakKeyDictionary()
        )
        self._strong: OrderedDict[Hashable, T] = OrderedDict()

    def get(self, net: Layer, key: Hashable, build: Callable[[Layer], T]) -> T:
        try:
            programs = self._by_apply.setdefault(net.apply, OrderedDict())
            if key not in programs:
                weak_net = Layer(_weakly(net.init), _weakly(net.apply), net.name)
        except TypeError:  # a function without weak references (a builtin)
            programs, key, weak_net = self._strong, (net, key), net
        if key in programs:
            programs.move_to_end(key)
            return programs[key]
        value = programs[key] = build(weak_net)
        if len(programs) > (_STRONG if programs is self._strong else _PER_MODEL):
            programs.popitem(last=False)
        return value
