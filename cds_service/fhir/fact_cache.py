"""A bounded, per-process memory of what was read from a resource, keyed by its content.

An EHR calls order-select for every selection and order-sign at the end, for the same patient,
with the same prefetched resources, within minutes. Reading a resource (screening it, validating
it, tying it to the patient) costs tens of microseconds and gives the same answer
every time for the same content, so the answer is kept here, keyed by a hash of the resource's
canonical JSON (and what else the answer depends on); and a whole record, keyed by the hash of
all the resources it was read from, so the later calls of a session read none of them again.
The same id with new content has another key: it is read again. Entries expire a TTL (minutes)
after they were stored, and past the capacity (a count, and bytes: each entry counted at its
resource's size) the oldest go first, so memory stays bounded whatever the traffic.

What is kept is patient data (the facts: codes, names, dates), in this process's memory only:
never written anywhere, gone when the worker stops. ``CDS_FACT_CACHE=off`` switches it off.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

T = TypeVar("T")
Clock = Callable[[], float]
#: What stands for "nothing kept": None is a value worth keeping (a resource that cannot matter).
_ABSENT = object()


def key_prefix(namespace: str, context: str) -> bytes:
    """What a key depends on besides the resource: the namespace (which reading, under which
    knowledge) and the context (the patient in context). Built once per call."""
    return b"%s\x00%s\x00" % (namespace.encode(), context.encode("utf-8", "surrogatepass"))


def _canonical(resource: Mapping[str, Any]) -> bytes | None:
    try:
        return orjson.dumps(resource, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return None


def content_key(prefix: bytes, resource: Mapping[str, Any]) -> bytes | None:
    """sha256 of the prefix and the resource's canonical JSON (keys sorted). None when the
    resource cannot be serialised canonically (an integer past 64 bits, nesting past orjson's
    limit): it is then read without the cache, as if the cache were off."""
    canonical = _canonical(resource)
    return None if canonical is None else hashlib.sha256(prefix + canonical).digest()


def whole_record_key(
    prefix: bytes, resources: Sequence[Mapping[str, Any]]
) -> tuple[bytes | None, int]:
    """sha256 of the prefix and the resources' JSON as sent (keys in their order), and that
    JSON's size: the key of a whole record and what its entry is counted at. An ordering
    session sends the same prefetch with each call, in the same order, so one key answers for
    all of it; the same content in another order is only a miss (read again), never a wrong
    answer. A key of None when the JSON cannot be written (see ``content_key``)."""
    try:
        serialised = orjson.dumps(resources)
    except TypeError:
        return None, 0
    return hashlib.sha256(prefix + serialised).digest(), len(serialised)


#: What an entry costs besides its resource's size (key, tuple, the fact object itself).
ENTRY_OVERHEAD = 512


def read_through(
    cache: FactCache | None, prefix: bytes, resource: Mapping[str, Any], read: Callable[[], T]
) -> T:
    """What ``read()`` gives for ``resource``: from ``cache`` when there is one and it holds the
    answer (keyed by ``prefix`` and the resource's content), else read now (and kept). An
    entry is counted at its resource's canonical size, an upper bound of what its fact holds."""
    if cache is None:
        return read()
    canonical = _canonical(resource)
    if canonical is None:
        return read()
    key = hashlib.sha256(prefix + canonical).digest()
    return cache.get_or_compute(key, read, size=len(canonical) + ENTRY_OVERHEAD)


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    expirations: int = 0


class FactCache:
    """At most ``capacity`` entries, each valid for ``ttl_seconds`` after it was stored.

    Entries are kept in the order they were stored, so the expired ones are always at the
    front, where ``sweep`` drops them; an expired entry is never answered from. Thread-safe
    (gunicorn's threads share one per worker process). Values must be immutable: every caller
    with the same key gets the same object.
    """

    def __init__(
        self,
        capacity: int,
        ttl_seconds: float,
        clock: Clock = time.monotonic,
        max_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        if capacity < 1 or ttl_seconds <= 0 or max_bytes < 1:
            raise ValueError("a fact cache needs a capacity of at least 1 and a positive TTL")
        self.capacity = capacity
        self.ttl_seconds = ttl_seconds
        #: Bytes the entries may hold together (each counted at its resource's size): 150 calls
        #: of 4 MB unique text once grew a worker by 624 MB under a count bound alone.
        self.max_bytes = max_bytes
        self.size = 0
        self._clock = clock
        self._entries: OrderedDict[bytes, tuple[float, object, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._entries)

    def get_or_compute(self, key: bytes | None, compute: Callable[[], T], size: int = 0) -> T:
        """The value kept under ``key`` while it is fresh; else ``compute()``, kept and returned.
        A key of None (the content could not be hashed) always computes and keeps nothing;
        neither does an entry of ``size`` bytes larger than the whole cache may hold."""
        if key is None:
            return compute()
        found = self._lookup(key)
        if found is not _ABSENT:
            return found  # type: ignore[return-value]  # stored by this method: a T
        value = compute()  # outside the lock: other threads read on meanwhile
        if size <= self.max_bytes:
            self._store(key, value, size)
        return value

    def sweep(self) -> None:
        """Drop the expired entries: called once per hook call, so patient data outlives its
        TTL by no more than the time to the worker's next call."""
        with self._lock:
            now = self._clock()
            entries = self._entries
            while entries:
                stored_at = next(iter(entries.values()))[0]
                if now - stored_at < self.ttl_seconds:
                    return
                self.size -= entries.popitem(last=False)[1][2]
                self.stats.expirations += 1

    def _lookup(self, key: bytes) -> object:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or self._clock() - entry[0] >= self.ttl_seconds:
                self.stats.misses += 1
                return _ABSENT
            self.stats.hits += 1
            return entry[1]

    def _store(self, key: bytes, value: object, size: int = 0) -> None:
        with self._lock:
            earlier = self._entries.pop(key, None)  # stored anew: its TTL starts again
            if earlier is not None:
                self.size -= earlier[2]
            self._entries[key] = (self._clock(), value, size)
            self.size += size
            while len(self._entries) > self.capacity or self.size > self.max_bytes:
                self.size -= self._entries.popitem(last=False)[1][2]
                self.stats.evictions += 1
