"""Structured JSON-lines logs. Callers bind only ids of the call, never patient data.

Configured by the entry points (gunicorn's configuration, the command line), never by building
the app. Each record is written to standard output with a single ``write`` of one whole line,
looked up when written (a test's captured stream, or a worker's inherited descriptor), so
records of concurrent threads or processes sharing the stream do not interleave mid-line.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog


class _LineWriter:
    """A structlog logger that writes each rendered record as one line, in one call."""

    def msg(self, message: str) -> None:
        line = (message + "\n").encode("utf-8", "replace")
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
        os.write(fileno, line)  # one system call: appends whole lines under O_APPEND or a pipe

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


def _line_writer(*_args: Any) -> _LineWriter:
    return _LineWriter()


def configure_logging(level: str) -> None:
    """JSON lines on stdout, one per event, with ISO timestamps."""
    logging.basicConfig(format="%(message)s", stream=sys.stdout, level=level, force=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=_line_writer,
        cache_logger_on_first_use=False,
    )
