"""gunicorn settings shared by `salivary-cds serve`, the Dockerfile and the CI smoke test.

Start: gunicorn -c python:cds_service.web.gunicorn_conf 'cds_service.web.app:create_app()'

Everything comes from the service's one ``Settings`` object (CDS_BIND, CDS_WORKERS, CDS_THREADS,
...), so a bad value stops start-up naming its variable. This is an entry point: it configures
logging, warns about ``CDS_`` variables that are no setting, and runs the one-time start-up step
(database tables) before the app is loaded and the workers fork. A start-up error (settings,
database, knowledge, site, trust) ends the master in one line with exit code 2
(``cds_service.web.startup``).
"""

import os
import tempfile
from typing import Any

# Prometheus metrics summed over workers: each worker writes its samples under this folder. It
# must be in the environment before prometheus_client is imported (by the app).
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="cds-metrics-")

import structlog

from cds_service.config import load_settings, unknown_variables
from cds_service.contract.errors import ServiceError
from cds_service.web import startup
from cds_service.web.app import initialise
from cds_service.web.logs import configure_logging

startup.install_excepthook()  # the app is loaded (preload_app) outside this module
try:
    settings = load_settings()
    configure_logging(settings.log_level, queued=True)  # lines written off the request path
    for warning in unknown_variables():
        structlog.get_logger("cds_service.config").warning("unknown-variable", message=warning)
    initialise(settings)  # the database tables, once, in the master
except ServiceError as exc:
    startup.fail(exc)

bind = settings.bind
workers = settings.workers
# Requests are CPU-bound and short; threads only help when the FHIR fallback waits on I/O.
threads = settings.threads
# gthread, but each request is received whole by the worker's event loop before a thread is
# taken: a client that drips its headers or body (slowloris) costs a buffer, never a thread.
worker_class = "cds_service.web.buffered_worker.BufferedThreadWorker"
timeout = 30
graceful_timeout = 10
accesslog = None  # the app logs one JSON line per hook call itself
errorlog = "-"
preload_app = True  # load and validate hooks/ once, before forking: bad knowledge stops start-up
# gunicorn >= 27 opens a control socket under $HOME by default; the container user has no home
# and nothing here uses it.
control_socket_disable = True
# Request limits, set deliberately: a request line (method, URL, version) of at most 4,094
# bytes (414 above), at most 50 header fields of at most 8,190 bytes each (431 above). CDS
# Hooks calls are short-URL POSTs whose size is in the body (CDS_MAX_BODY_BYTES, 413 above); an
# EHR's JWT header is 1-2 KB. gunicorn answers these itself, before the app: in JSON, see below.
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190


def _json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:  # noqa: ARG001
    """gunicorn's own error answers (414, 431, a malformed request) as JSON like the app's,
    not HTML. The detail gunicorn would echo (part of the request line or a header) is left
    out: it may carry request data."""
    import json

    from gunicorn.util import write_nonblock

    body = json.dumps(
        {"error": reason.lower().replace(" ", "-"), "message": reason}, ensure_ascii=True
    )
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    write_nonblock(sock, (head + body).encode("latin-1"))


def _install_json_errors() -> None:
    from gunicorn import util

    util.write_error = _json_error


_install_json_errors()


def child_exit(server: Any, worker: Any) -> None:  # noqa: ARG001 - gunicorn's hook signature
    """Drop a dead worker's live gauges from the shared metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def worker_exit(server: Any, worker: Any) -> None:  # noqa: ARG001 - gunicorn's hook signature
    """On SIGTERM (or any exit) of a worker: the cards shown and the log lines still queued are
    written before it goes (the queues' threads are daemons, stopped with the process)."""
    from cds_service.web.logs import flush_logs
    from cds_service.web.runtime import runtime

    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "extensions"):
        runtime(app).card_log.flush()
    flush_logs()


def when_ready(server: Any) -> None:  # noqa: ARG001 - gunicorn's hook signature
    """With the app preloaded, move every start-up object (FHIR models, knowledge, schemas) out
    of the garbage collector's reach before forking: full collections stay short (the large
    request's p95 drops from ~70 ms to ~8 ms) and the workers share those pages."""
    import gc

    gc.collect()
    gc.freeze()
