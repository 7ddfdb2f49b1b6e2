"""Records shown cards off the request path: a per-process writer thread, batched transactions.

A shown card is not an acknowledgement (feedback is): recording it must not add a database round
trip to the clinician's wait. Cards wait here at most ``max_delay`` seconds; feedback handling
calls ``flush()`` first, so feedback about a card shown a moment ago still finds it.

The queue is bounded (``capacity`` calls): when the database is slower than the traffic, the
request thread writes its own cards, so memory stays bounded and nothing is dropped. At exit,
and from gunicorn's ``worker_exit`` hook on SIGTERM, ``flush`` writes what is still queued.
"""

from __future__ import annotations

import atexit
import os
import queue
import threading
from collections.abc import Sequence

import structlog
from sqlalchemy.exc import SQLAlchemyError

from cds_service.engine import IssuedCard
from cds_service.store.storage import IssuedCardStore

log = structlog.get_logger("cds_service.cards")
_Batch = tuple[str, str, Sequence[IssuedCard], str]


class CardLog:
    def __init__(
        self,
        store: IssuedCardStore,
        max_batch: int = 200,
        max_delay: float = 0.05,
        capacity: int = 10_000,
    ) -> None:
        self._store = store
        self._max_batch = max_batch
        self._max_delay = max_delay
        self._capacity = capacity
        self._queue: queue.Queue[_Batch | threading.Event] = queue.Queue(capacity)
        self._pid: int | None = None
        self._lock = threading.Lock()

    def record(
        self,
        service_id: str,
        hook_instance: str,
        cards: Sequence[IssuedCard],
        client: str = "",
    ) -> None:
        """Queue the cards of one call; ``client`` is the caller (a hash of its issuer), so
        that only it may give feedback on them."""
        self._ensure_writer()
        batch = (service_id, hook_instance, cards, client)
        try:
            self._queue.put_nowait(batch)
        except queue.Full:  # the database lags behind: written here, never dropped
            try:
                self._write([batch])
            except Exception as exc:  # recording never fails the hook call
                log.error("cards-not-recorded", cards=len(cards), error_type=type(exc).__name__)

    def flush(self, timeout: float = 5.0) -> None:
        """Return once every card queued before this call is written (or has failed)."""
        if self._pid != os.getpid():
            return  # nothing was queued in this process
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout)
        except queue.Full:
            return
        done.wait(timeout)

    def _ensure_writer(self) -> None:
        # A thread does not survive fork: each gunicorn worker starts its own, on first use.
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():
                self._queue = queue.Queue(self._capacity)
                threading.Thread(target=self._run, name="card-log", daemon=True).start()
                self._pid = os.getpid()
                atexit.register(self.flush)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            pending: list[_Batch] = []
            waiters: list[threading.Event] = []
            item: _Batch | threading.Event | None = first
            while item is not None:
                if isinstance(item, threading.Event):
                    waiters.append(item)
                else:
                    pending.append(item)
                if len(pending) >= self._max_batch:
                    break
                try:
                    item = self._queue.get(timeout=self._max_delay if not waiters else 0)
                except queue.Empty:
                    item = None
            self._write(pending)
            for waiter in waiters:
                waiter.set()

    def _write(self, pending: list[_Batch]) -> None:
        if not pending:
            return
        try:
            self._store.record_batches(pending)
        except SQLAlchemyError as exc:
            log.error(
                "cards-not-recorded",
                cards=sum(len(c) for _, _, c, _ in pending),
                error_type=type(exc).__name__,
            )
