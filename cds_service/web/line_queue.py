"""Log lines written off the request path: a bounded queue, one writer thread per process, batches.

A hook call's JSON line used to be one ``write`` system call on the request thread. Here the
request thread only queues the line; a writer thread writes what has gathered in one call of up
to ``PIPE_BUF`` bytes (4,096 on Linux), so lines of concurrent workers sharing a pipe still never
interleave mid-line (POSIX: such writes are atomic), and a busy worker makes one system call for
several lines.

Nothing is lost on a graceful exit: when the queue is full (the stream is slower than the service),
the request thread writes its line itself, as before (2,000 lines of at most a few KB: a stalled
stream holds a worker's memory to a few MB); ``flush`` (at exit, and from gunicorn's
``worker_exit`` hook on SIGTERM) returns once every line queued before it is written. A line may
wait up to ``max_delay`` seconds for its batch to fill: a SIGKILL (the OOM killer, gunicorn's
timeout escalating) loses at most that much.
"""

from __future__ import annotations

import atexit
import os
import queue
import threading
from collections.abc import Callable

#: Largest write that is atomic on a pipe (POSIX PIPE_BUF; 4,096 bytes on Linux).
ATOMIC_WRITE_BYTES = 4096


class LineQueue:
    """Whole lines (bytes ending in a newline) for one file descriptor each, written in order."""

    def __init__(
        self,
        capacity: int = 2_000,
        max_delay: float = 0.2,
        batch_bytes: int = ATOMIC_WRITE_BYTES,
        write: Callable[[int, bytes], None] | None = None,
    ) -> None:
        """``write``: how bytes reach a descriptor (``os.write`` until all is written; the
        tests watch it)."""
        self._write_bytes = write or _write_all
        self._capacity = capacity
        self._max_delay = max_delay
        self._batch_bytes = batch_bytes
        self._queue: queue.Queue[tuple[int, bytes] | threading.Event] = queue.Queue(capacity)
        self._pid: int | None = None
        self._lock = threading.Lock()

    def put(self, fileno: int, line: bytes) -> None:
        """Queue ``line`` for ``fileno``; written at once, here, when the queue is full."""
        self._ensure_writer()
        try:
            self._queue.put_nowait((fileno, line))
        except queue.Full:
            self._write_bytes(fileno, line)

    def flush(self, timeout: float = 5.0) -> None:
        """Return once every line queued before this call is written (or ``timeout`` passed)."""
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
                threading.Thread(target=self._run, name="log-lines", daemon=True).start()
                self._pid = os.getpid()
                atexit.register(self.flush)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch: list[tuple[int, bytes]] = []
            waiters: list[threading.Event] = []
            size = 0
            while True:
                if isinstance(item, threading.Event):
                    waiters.append(item)
                else:
                    batch.append(item)
                    size += len(item[1])
                if size >= self._batch_bytes:
                    break
                try:
                    item = self._queue.get(timeout=0 if waiters else self._max_delay)
                except queue.Empty:
                    break
            self._write(batch)
            for waiter in waiters:
                waiter.set()

    def _write(self, batch: list[tuple[int, bytes]]) -> None:
        """Consecutive lines for the same descriptor joined into writes of at most
        ``batch_bytes`` (a longer line alone, as it was written before)."""
        chunk: list[bytes] = []
        size = 0
        target: int | None = None
        for fileno, line in batch:
            if chunk and (fileno != target or size + len(line) > self._batch_bytes):
                self._write_bytes(target, b"".join(chunk))  # type: ignore[arg-type]  # set
                chunk, size = [], 0
            chunk.append(line)
            size += len(line)
            target = fileno
        if chunk and target is not None:
            self._write_bytes(target, b"".join(chunk))


def _write_all(fileno: int, data: bytes) -> None:
    """One ``write`` for data up to PIPE_BUF; a rare short write (a full disk, a signal) is
    finished rather than dropped. A stream that cannot be written loses the line, as the
    ``write`` on the request thread did before (logging never fails a hook call)."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fileno, view) :]
    except OSError:
        return
