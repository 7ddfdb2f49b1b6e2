"""A circuit breaker per FHIR server, per process.

An EHR's FHIR server that is down or hangs would otherwise cost every call its full deadline and
a thread. After ``failures`` failures within ``window`` seconds the circuit opens: for
``cool_off`` seconds no call contacts that server (it answers at once from what was prefetched),
then one probe is let through; its success closes the circuit, its failure opens it again.
Only failures that say the server is unwell count (timeouts, refused connections, 5xx, bodies
that are not FHIR); a 401/403 is about one call's token, not the server, and a request that
could not even be sent (a malformed header) is about the caller.

One caller must not open it for everyone: a failure counts once per patient within the window
(``who``: a hash of the patient in context), so one patient whose searches are slow, called
again and again, never opens it; ``failures`` different patients failing do. Circuits are keyed
by the normalised base (``…/fhir`` and ``…/fhir/`` are one server) and at most ``capacity`` are
kept: past it, closed circuits are forgotten first (oldest first), so distinct strings cannot
grow memory without bound.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

#: Fetch failure reasons that count against a server's health.
UNHEALTHY = frozenset({"timeout", "unreachable", "not-json", "not-fhir"})


def counts_against_server(reason: str) -> bool:
    return reason in UNHEALTHY or reason.startswith("http-5")


def server_key(base: str) -> str:
    """The server a base URL names: scheme and host lower-cased, default port dropped, trailing
    slashes cut (``HTTPS://EHR.example.org:443/fhir/`` is ``https://ehr.example.org/fhir``)."""
    try:
        parts = urlsplit(base)
        port = parts.port
    except ValueError:
        return base
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and (scheme, port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    return f"{scheme}://{host}{parts.path.rstrip('/')}"


@dataclass
class _Circuit:
    #: (time, who) of each counted failure in the window; one per ``who``.
    failures: deque[tuple[float, str | None]] = field(default_factory=deque)
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
        capacity: int = 1024,
    ) -> None:
        self._threshold = failures
        self._capacity = capacity
        self._window = window
        self._cool_off = cool_off
        self._clock = clock
        self._circuits: OrderedDict[str, _Circuit] = OrderedDict()
        self._lock = threading.Lock()
        #: Called with the number of open circuits whenever one opens or closes (metrics).
        self.on_change: Callable[[int], None] = lambda _open: None

    def allow(self, base: str) -> bool:
        """May a call contact ``base`` now? While open: no; after the cool-off: one probe."""
        with self._lock:
            circuit = self._circuits.get(server_key(base))
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
            circuit = self._circuits.get(server_key(base))
            if circuit is not None:
                circuit.probing = False

    def record(self, base: str, healthy: bool, who: str | None = None) -> None:
        """The outcome of a call that was allowed; ``who`` is the patient it was about (a
        hash), so that one patient's failures count once."""
        now = self._clock()
        key = server_key(base)
        with self._lock:
            circuit = self._circuits.get(key)
            if circuit is None:
                if healthy:
                    return  # nothing to remember about a healthy server
                circuit = self._circuits[key] = _Circuit()
                self._forget_beyond_capacity(now, keep=key)
            self._circuits.move_to_end(key)
            if healthy:
                if circuit.open_until or circuit.probing:
                    self._circuits[key] = _Circuit()  # the probe succeeded: closed
                    self.on_change(self._open_now(now))
                return
            circuit.probing = False
            if circuit.open_until:  # the probe failed: open again
                circuit.open_until = now + self._cool_off
                return
            while circuit.failures and circuit.failures[0][0] < now - self._window:
                circuit.failures.popleft()
            if who is not None and any(w == who for _, w in circuit.failures):
                return  # this patient's failure is counted already
            circuit.failures.append((now, who))
            if len(circuit.failures) >= self._threshold:
                circuit.open_until = now + self._cool_off
                circuit.failures.clear()
                self.on_change(self._open_now(now))

    def _forget_beyond_capacity(self, now: float, keep: str) -> None:
        """Past ``capacity`` circuits, forget the oldest closed ones (an open one is kept: it
        protects the others); if all are open, the oldest goes anyway: memory stays bounded.
        ``keep`` (the circuit being recorded) is never the one forgotten."""
        while len(self._circuits) > self._capacity:
            others = [k for k in self._circuits if k != keep]
            closed = [
                k
                for k in others
                if self._circuits[k].open_until <= now and not self._circuits[k].probing
            ]
            self._circuits.pop((closed or others)[0])

    def tracked(self) -> int:
        """How many servers are remembered (bounded by ``capacity``)."""
        with self._lock:
            return len(self._circuits)

    def open_count(self) -> int:
        """Circuits open or probing now."""
        with self._lock:
            return self._open_now(self._clock())

    def _open_now(self, now: float) -> int:
        return sum(1 for c in self._circuits.values() if c.open_until > now or c.probing)
