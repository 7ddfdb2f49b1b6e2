"""Log lines written off the request path (cds_service.store.background_writer), in batches.

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

import os
from collections.abc import Callable

from cds_service.store.background_writer import BackgroundWriter

#: Largest write that is atomic on a pipe (POSIX PIPE_BUF; 4,096 bytes on Linux).
ATOMIC_WRITE_BYTES = 4096
_Line = tuple[int, bytes]


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
        self._batch_bytes = batch_bytes
        self._writer: BackgroundWriter[_Line] = BackgroundWriter(
            self._write,
            name="log-lines",
            capacity=capacity,
            max_delay=max_delay,
            batch_limit=batch_bytes,
            weight=lambda item: len(item[1]),
        )

    def put(self, fileno: int, line: bytes) -> None:
        """Queue ``line`` for ``fileno``; written at once, here, when the queue is full."""
        self._writer.put((fileno, line))

    def flush(self, timeout: float = 5.0) -> None:
        """Return once every line queued before this call is written (or ``timeout`` passed)."""
        self._writer.flush(timeout)

    def _write(self, batch: list[_Line]) -> None:
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
