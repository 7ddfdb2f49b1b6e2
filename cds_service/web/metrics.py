"""Prometheus metrics: request counts and latency by service and status (no patient data).

Under gunicorn with several workers, set PROMETHEUS_MULTIPROC_DIR (gunicorn_conf does) so that a
scrape of any worker sums all of them.
"""

from __future__ import annotations

import time

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from cds_service.web.runtime import runtime


def install_metrics(app: Flask) -> None:
    registry = CollectorRegistry()
    requests_total = Counter(
        "cds_requests_total",
        "CDS Hooks requests by endpoint, service id and HTTP status",
        ["endpoint", "service", "status"],
        registry=registry,
    )
    latency = Histogram(
        "cds_request_duration_seconds",
        "CDS Hooks request latency by endpoint and service id",
        ["endpoint", "service"],
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        registry=registry,
    )
    skipped = Counter(
        "cds_fhir_fetches_skipped_total",
        "FHIR fetches not attempted: the server's circuit was open, or no fetch slot was free",
        ["reason"],
        registry=registry,
    )
    open_circuits = Gauge(
        "cds_fhir_circuits_open",
        "FHIR base URLs whose circuit breaker is open (summed over workers)",
        registry=registry,
        multiprocess_mode="livesum",
    )
    running = runtime(app)
    running.fetcher.on_skipped = lambda reason: skipped.labels(reason).inc()
    running.fetcher.breakers.on_change = open_circuits.set
    known_services = set(running.engine.knowledge.services)
    shared_dir = running.settings.metrics_dir

    @app.before_request
    def _start_timer() -> None:
        g.cds_started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        if not request.path.startswith("/cds-services") or request.method == "OPTIONS":
            return response
        parts = request.path.strip("/").split("/")
        service = parts[1] if len(parts) > 1 and parts[1] in known_services else "-"
        endpoint = (
            "discovery" if len(parts) == 1 else "feedback" if parts[-1] == "feedback" else "hook"
        )
        requests_total.labels(endpoint, service, str(response.status_code)).inc()
        started = g.get("cds_started")
        if started is not None:
            latency.labels(endpoint, service).observe(time.perf_counter() - started)
        return response

    @app.get("/metrics")
    def _metrics() -> Response:
        if shared_dir is not None:
            scrape = CollectorRegistry()
            multiprocess.MultiProcessCollector(scrape, path=str(shared_dir))  # type: ignore[no-untyped-call]
            return Response(generate_latest(scrape), mimetype=CONTENT_TYPE_LATEST)
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
