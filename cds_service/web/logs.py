"""Structured JSON-lines logs. Callers bind only ids of the call, never patient data.

Configured by the entry points (gunicorn's configuration, the command line), never by building
the app. Each record is rendered by orjson into one whole line for standard output, looked up
when written (a test's captured stream, or a worker's inherited descriptor). Under gunicorn
(``queued``) a worker's line is handed to a writer thread (cds_service.web.line_queue) that writes
batches of whole lines, each batch in one atomic ``write``; elsewhere (the command line, whose
own output shares stdout) each line is one ``write`` at once. Either way records of concurrent
threads or processes sharing the stream never interleave mid-line.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

import orjson
import structlog

from cds_service.web.line_queue import LineQueue

#: The writer thread's queue (gunicorn workers); None: each line is written at once.
_queue: LineQueue | None = None
#: The process that configured logging (gunicorn's master): its start-up lines are written at
#: once, so they are in the log before any worker answers; only forked workers queue theirs.
_configured_in: int | None = None


class _LineWriter:
    """A structlog logger that writes each rendered record as one line, in one call."""

    def msg(self, message: str | bytes) -> None:
        line = (  # _render gives UTF-8 bytes: written as they are, not decoded and encoded again
            message + b"\n"
            if isinstance(message, bytes)
            else (message + "\n").encode("utf-8", "replace")
        )
        stream = sys.stdout
        try:
            fileno = stream.fileno()
        except (AttributeError, OSError, ValueError):
            fileno = None  # an in-memory stream (tests): one write of the whole line
        if fileno is None:
            stream.write(line.decode("utf-8"))
            stream.flush()
            return
        stream.flush()  # nothing earlier may be left in Python's buffer behind this line
        if _queue is not None and os.getpid() != _configured_in:
            _queue.put(fileno, line)
        else:
            os.write(fileno, line)  # one system call: appends whole lines under O_APPEND or a pipe

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


def _line_writer(*_args: Any) -> _LineWriter:
    return _LineWriter()


def flush_logs(timeout: float = 5.0) -> None:
    """Write every queued line now (gunicorn's ``worker_exit``; at exit by itself too)."""
    if _queue is not None:
        _queue.flush(timeout)


def _render(event: Any, **_kwargs: Any) -> bytes:
    """The record as JSON by orjson (~5x json's speed); json for what orjson refuses (an
    integer past 64 bits)."""
    try:
        return orjson.dumps(event, default=repr, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return json.dumps(event, default=repr).encode("utf-8")


def configure_logging(level: str, queued: bool = False) -> None:
    """JSON lines on stdout, one per event, with ISO timestamps; ``queued``: the lines of
    processes forked from this one (gunicorn's workers) are written off the request path by a
    writer thread; this process's own (start-up) lines are written at once."""
    global _queue, _configured_in
    _queue = LineQueue() if queued else None
    _configured_in = os.getpid()
    logging.basicConfig(format="%(message)s", stream=sys.stdout, level=level, force=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(serializer=_render),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=_line_writer,
        cache_logger_on_first_use=False,
    )
