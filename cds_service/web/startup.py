"""Start-up failures in one line: what failed, which setting or path, what to do; exit code 2.

A deployment engineer reads the last screen of output. A configuration, path or database error
at start-up (gunicorn's master, or any ``salivary-cds`` subcommand) is therefore printed as one
line on standard error, ``salivary-cds: <message>``, and the process exits with code 2, the
usual code for "wrong usage". The Python traceback is printed too only with
``CDS_LOG_LEVEL=DEBUG``: it is for the developer, and it buried the useful line 30-140 lines up.

Only errors the service raises on purpose (``ServiceError``: settings, knowledge, site, trust,
database at start-up, input files) are shortened; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import NoReturn

from cds_service.contract.errors import ServiceError

#: The exit code of every start-up or subcommand error ("wrong usage or configuration").
EXIT_CONFIGURATION = 2
PROGRAM = "salivary-cds"


def debugging() -> bool:
    """Tracebacks wanted: ``CDS_LOG_LEVEL=DEBUG`` (read raw: the settings may be what failed)."""
    return os.environ.get("CDS_LOG_LEVEL", "").strip().upper() == "DEBUG"


def one_line(message: str) -> str:
    """A message on one line: multi-line validation errors (pydantic's) joined with ``; ``."""
    parts = [" ".join(line.split()) for line in message.splitlines()]
    return "; ".join(part for part in parts if part)


def report(exc: BaseException) -> None:
    """Print ``salivary-cds: <message>`` (after the traceback when debugging) to stderr."""
    if debugging():
        traceback.print_exception(exc, file=sys.stderr)
    print(f"{PROGRAM}: {one_line(str(exc))}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """A start-up warning (an unknown ``CDS_`` variable) on stderr, one line."""
    print(f"{PROGRAM}: warning: {one_line(message)}", file=sys.stderr, flush=True)


def fail(exc: BaseException) -> NoReturn:
    """Report ``exc`` and exit with code 2."""
    report(exc)
    sys.exit(EXIT_CONFIGURATION)


Hook = Callable[[type[BaseException], BaseException, TracebackType | None], object]


def install_excepthook() -> None:
    """Make an uncaught ``ServiceError`` end the process in one line with exit code 2.

    For gunicorn's master: it loads the app (``preload_app``) and runs its start-up hooks
    outside any handler of its own, so an error there reaches the interpreter's top level,
    which would print the whole traceback and exit with 1.
    """
    previous: Hook = sys.excepthook

    def _hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if not isinstance(exc, ServiceError):
            previous(kind, exc, tb)
            return
        report(exc.with_traceback(tb))
        sys.stdout.flush()
        os._exit(EXIT_CONFIGURATION)  # the interpreter would exit with 1 after this hook

    sys.excepthook = _hook
