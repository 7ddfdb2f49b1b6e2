"""A circuit breaker per FHIR base URL, per process.

An EHR's FHIR server that is down or hangs would otherwise cost every call its full deadline and
a thread. After ``failures`` failures within ``window`` seconds the circuit opens: for
``cool_off`` seconds no call contacts that server (it answers at once from what was prefetched),
then one probe is let through; its success closes the circuit, its failure opens it again.
Only failures that say the server is unwell count (timeouts, refused connections, 5xx, bodies
that are not FHIR); a 401/403 is about one call's token, not the server.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

#: Fetch failure reasons that count against a server's health.
UNHEALTHY = frozenset({"timeout", "unreachable", "not-json", "not-fhir"})


def counts_against_server(reason: str) -> bool:
    return reason in UNHEALTHY or reason.startswith("http-5")


@dataclass
class _Circuit:
    failures: deque[float] = field(default_factory=deque)
    open_until: float = 0.0
    probing: bool = False


class CircuitBreakers:
    """Thread-safe; ``clock`` is injectable so tests need not sleep."""

    def __init__(
        self,
        failures: int = 5,
        window: float = 30.0,
        cool_off: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = failures
        self._window = window
        self._cool_off = cool_off
        self._clock = clock
        self._circuits: dict[str, _Circuit] = {}
        self._lock = threading.Lock()
        #: Called with the number of open circuits whenever one opens or closes (metrics).
        self.on_change: Callable[[int], None] = lambda _open: None

    def allow(self, base: str) -> bool:
        """May a call contact ``base`` now? While open: no; after the cool-off: one probe."""
        with self._lock:
            circuit = self._circuits.get(base)
            if circuit is None or circuit.open_until == 0.0:
                return True
            if self._clock() < circuit.open_until or circuit.probing:
                return False
            circuit.probing = True  # the one probe; others wait for its outcome
            return True

    def unused(self, base: str) -> None:
        """A call that was allowed contacted nothing after all: hand back its probe, if it held
        one, so the next call may probe (else the circuit would stay 'probing' for good)."""
        with self._lock:
            circuit = self._circuits.get(base)
            if circuit is not None:
                circuit.probing = False

    def record(self, base: str, healthy: bool) -> None:
        """The outcome of a call that was allowed."""
        now = self._clock()
        with self._lock:
            circuit = self._circuits.setdefault(base, _Circuit())
            if healthy:
                if circuit.open_until or circuit.probing:
                    self._circuits[base] = _Circuit()  # the probe succeeded: closed
                    self.on_change(self._open_now(now))
                return
            circuit.probing = False
            if circuit.open_until:  # the probe failed: open again
                circuit.open_until = now + self._cool_off
                return
            circuit.failures.append(now)
            while circuit.failures and circuit.failures[0] < now - self._window:
                circuit.failures.popleft()
            if len(circuit.failures) >= self._threshold:
                circuit.open_until = now + self._cool_off
                circuit.failures.clear()
                self.on_change(self._open_now(now))

    def open_count(self) -> int:
        """Circuits open or probing now."""
        with self._lock:
            return self._open_now(self._clock())

    def _open_now(self, now: float) -> int:
        return sum(1 for c in self._circuits.values() if c.open_until > now or c.probing)
