"""Converted public keys per worker process: a segmented LRU bounded by what the keys really hold.

New entries wait in a probation segment (a quarter of the budget); an entry used successfully a
second time moves to the protected segment (the rest). A flood of fresh key ids only churns
probation, so it cannot push out the keys of clients that keep coming back; and a key id that
wants a protected place must have been used more often than the least recently used one there.
Every operation is O(1) (amortised): sizes are measured once, when an entry is inserted.
"""

from __future__ import annotations

import ctypes
import math
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["KeyCache", "OPAQUE_FACTOR", "PROBATION_SHARE", "measure_keys"]

PROBATION_SHARE = 0.25
"""Share of the budget for keys used once; also the largest single entry that is cached."""

OPAQUE_FACTOR = 1.0
"""Default bytes charged per raw public-key byte when converted keys hold native objects that cannot
be measured: at least what they were made from. An adapter whose backend expands keys says by how
much (`ModelAdapter.key_expansion`) or measures them itself (`ModelAdapter.key_size`)."""

_MAX_DEPTH = 8


def measure_keys(value: Any, raw_size: int, opaque_factor: float = OPAQUE_FACTOR) -> int:
    """Bytes `value` holds: numpy arrays, ctypes objects, bytes and Python containers are measured;
    native objects that cannot be (pybind11, other extensions) add `opaque_factor * raw_size`."""
    seen: set[int] = set()
    opaque = False

    def walk(obj: Any, depth: int) -> int:
        nonlocal opaque
        if id(obj) in seen or depth > _MAX_DEPTH:
            return 0
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):  # a view holds its base alive: count the base, once
            return obj.nbytes + sys.getsizeof(obj, 0) if obj.base is None else walk(obj.base, depth + 1)
        if isinstance(obj, (ctypes._SimpleCData, ctypes.Array, ctypes.Structure, ctypes.Union)):
            return ctypes.sizeof(obj)
        if isinstance(obj, (bytes, bytearray, str, int, float, complex, bool, type(None))):
            return sys.getsizeof(obj)
        if isinstance(obj, memoryview):
            return obj.nbytes
        if isinstance(obj, dict):
            return sys.getsizeof(obj) + sum(walk(k, depth + 1) + walk(v, depth + 1) for k, v in obj.items())
        if isinstance(obj, (list, tuple, set, frozenset)):
            return sys.getsizeof(obj) + sum(walk(item, depth + 1) for item in obj)
        attrs = _attributes(obj)
        if attrs is None:
            opaque = True
            return sys.getsizeof(obj, 0)
        return sys.getsizeof(obj, 0) + sum(walk(v, depth + 1) for v in attrs)

    total = walk(value, 0)
    return total + (math.ceil(opaque_factor * raw_size) if opaque else 0)


def _attributes(obj: Any) -> list[Any] | None:
    """A Python object's attribute values; None for a native object whose memory we cannot see."""
    cls = type(obj)
    if type(cls).__name__ == "pybind11_type":
        return None  # a pybind11 object's attributes never show its native memory
    slots = [
        name
        for klass in cls.__mro__
        for name in ((klass.__dict__.get("__slots__") or ()) if not isinstance(klass.__dict__.get("__slots__"), str)
                     else (klass.__dict__["__slots__"],))
        if name not in ("__dict__", "__weakref__")
    ]  # fmt: skip
    attrs = getattr(obj, "__dict__", None)
    if not isinstance(attrs, dict) and not slots:
        return None
    values = list(attrs.values()) if isinstance(attrs, dict) else []
    return values + [getattr(obj, name) for name in slots if hasattr(obj, name)]


@dataclass
class _Entry:
    value: Any
    size: int
    uses: int = 0
    protected: bool = False


class KeyCache:
    """Converted keys by slot ((cache key, model)); at most `max_bytes` in all, measured.

    Bound: protected entries <= (1 - PROBATION_SHARE) * max_bytes, probation entries <=
    PROBATION_SHARE * max_bytes, and an entry larger than PROBATION_SHARE * max_bytes is never
    cached (it serves its own request and is dropped).
    """

    def __init__(self, max_bytes: int, *, sizer: Callable[[Any, int], int] = measure_keys) -> None:
        self.max_bytes = max_bytes
        self.probation_max = int(max_bytes * PROBATION_SHARE)
        self.protected_max = max_bytes - self.probation_max
        self.max_entry_bytes = self.probation_max
        self.sizer = sizer
        self._probation: OrderedDict[Hashable, _Entry] = OrderedDict()  # least recently used first
        self._protected: OrderedDict[Hashable, _Entry] = OrderedDict()
        self.probation_bytes = 0
        self.protected_bytes = 0
        self._lock = threading.Lock()

    @property
    def total_bytes(self) -> int:
        return self.probation_bytes + self.protected_bytes

    def get(self, slot: Hashable) -> Any | None:
        """The converted keys in `slot`, or None; a hit makes the entry the most recently used."""
        with self._lock:
            segment = self._protected if slot in self._protected else self._probation
            entry = segment.get(slot)
            if entry is None:
                return None
            segment.move_to_end(slot)
            return entry.value

    def put(self, slot: Hashable, value: Any, raw_size: int, size: int | None = None) -> bool:
        """Cache checked, converted keys (in probation); False when the entry is too large to cache."""
        if size is None:
            size = self.sizer(value, raw_size)
        if size > self.max_entry_bytes:
            return False
        with self._lock:
            self._remove(slot)
            self._probation[slot] = _Entry(value, size)
            self.probation_bytes += size
            self._trim_probation()
            return True

    def used(self, slot: Hashable) -> None:
        """Count a successful use; the second one promotes the entry out of probation."""
        with self._lock:
            entry = self._protected.get(slot) or self._probation.get(slot)
            if entry is None:
                return
            entry.uses += 1
            if not entry.protected and entry.uses >= 2:
                self._promote(slot, entry)

    def _promote(self, slot: Hashable, entry: _Entry) -> None:
        victims, freed = [], 0
        for victim_slot, victim in self._protected.items():  # least recently used first
            if self.protected_bytes - freed + entry.size <= self.protected_max:
                break
            if victim.uses >= entry.uses:
                victim.uses -= 1  # ages: a key used more often than this one keeps its place, for now
                return
            victims.append(victim_slot)
            freed += victim.size
        if self.protected_bytes - freed + entry.size > self.protected_max:
            return
        del self._probation[slot]
        self.probation_bytes -= entry.size
        for victim_slot in victims:  # demoted to probation, most recently used there
            victim = self._protected.pop(victim_slot)
            self.protected_bytes -= victim.size
            victim.protected = False
            self._probation[victim_slot] = victim
            self.probation_bytes += victim.size
        entry.protected = True
        self._protected[slot] = entry
        self.protected_bytes += entry.size
        self._trim_probation()

    def _trim_probation(self) -> None:
        while self.probation_bytes > self.probation_max and self._probation:
            _, oldest = self._probation.popitem(last=False)
            self.probation_bytes -= oldest.size

    def _remove(self, slot: Hashable) -> None:
        for segment in (self._probation, self._protected):
            entry = segment.pop(slot, None)
            if entry is not None:
                if entry.protected:
                    self.protected_bytes -= entry.size
                else:
                    self.probation_bytes -= entry.size

    def is_protected(self, slot: Hashable) -> bool:
        with self._lock:
            return slot in self._protected

    def clear(self) -> None:
        with self._lock:
            self._probation.clear()
            self._protected.clear()
            self.probation_bytes = self.protected_bytes = 0

    def __contains__(self, slot: Hashable) -> bool:
        with self._lock:
            return slot in self._probation or slot in self._protected

    def __len__(self) -> int:
        return len(self._probation) + len(self._protected)
