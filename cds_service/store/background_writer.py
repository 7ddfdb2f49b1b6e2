"""Items kept off the request path: a bounded queue and one writer thread per process, batches.

What the service keeps of a call (shown cards in the database, its log line on stdout) must not
add a write to the clinician's wait. A request thread queues the item; the writer thread writes
what has gathered as one batch, once the batch is full (``batch_limit``, by each item's
``weight``) or no item came for ``max_delay`` seconds. Used by the card log
(cds_service.store.card_log) and by the log lines (cds_service.web.line_queue).

Nothing is dropped: past ``capacity`` queued items the request thread writes its own item (memory
stays bounded; the call waits only when the sink lags), and ``flush`` (at exit, and from
gunicorn's ``worker_exit`` hook on SIGTERM) returns once everything queued before it is written.
A SIGKILL loses what is queued: at most ``max_delay`` seconds of items. A failed write is
handed to ``on_error`` and never reaches the hook call.
"""

from __future__ import annotations

import atexit
import os
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


def _ignore(_exc: Exception, _count: int) -> None:
    """The default ``on_error``: a sink that cannot say anything about its own failure."""


class BackgroundWriter(Generic[T]):
    """``write(batch)`` called with the items queued by ``put``, in order, from one thread."""

    def __init__(
        self,
        write: Callable[[list[T]], None],
        *,
        name: str,
        capacity: int,
        max_delay: float,
        batch_limit: int,
        weight: Callable[[T], int] = lambda _item: 1,
        on_error: Callable[[Exception, int], None] = _ignore,
    ) -> None:
        """``name``: the writer thread's; ``on_error(exception, items)``: told of a write that
        failed (the items are lost: a sink that fails now would fail again)."""
        self._write = write
        self._name = name
        self._capacity = capacity
        self._max_delay = max_delay
        self._batch_limit = batch_limit
        self._weight = weight
        self._on_error = on_error
        self._queue: queue.Queue[T | threading.Event] = queue.Queue(capacity)
        self._pid: int | None = None
        self._lock = threading.Lock()

    def put(self, item: T) -> None:
        """Queue ``item``; written at once, on this thread, when the queue is full."""
        self._ensure_writer()
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._write_safely([item])

    def flush(self, timeout: float = 5.0) -> None:
        """Return once every item queued before this call is written (or ``timeout`` passed)."""
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
                threading.Thread(target=self._run, name=self._name, daemon=True).start()
                self._pid = os.getpid()
                atexit.register(self.flush)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch: list[T] = []
            waiters: list[threading.Event] = []
            weight = 0
            while True:
                if isinstance(item, threading.Event):
                    waiters.append(item)
                else:
                    batch.append(item)
                    weight += self._weight(item)
                if weight >= self._batch_limit:
                    break
                try:
                    item = self._queue.get(timeout=0 if waiters else self._max_delay)
                except queue.Empty:
                    break
            if batch:
                self._write_safely(batch)
            for waiter in waiters:
                waiter.set()

    def _write_safely(self, batch: list[T]) -> None:
        try:
            self._write(batch)
        except Exception as exc:  # the writer thread must live on; a request must not fail
            self._on_error(exc, len(batch))
