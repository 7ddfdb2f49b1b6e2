"""Liveness and readiness, for orchestrators (no authentication, no patient data)."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from cds_service.web.runtime import runtime

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz() -> ResponseReturnValue:
    """The process answers."""
    return jsonify({"status": "ok"})


@blueprint.get("/readyz")
def readyz() -> ResponseReturnValue:
    """Knowledge loaded and every registered dependency (the database) reachable; names where
    the data lives."""
    running = runtime()
    checks: dict[str, str] = {"knowledge": "ok" if running.engine.knowledge.services else "missing"}
    for name, probe in running.readiness.items():
        try:
            checks[name] = "ok" if probe() else "failing"
        except Exception:  # a readiness probe reports failure, it never raises
            checks[name] = "failing"
    ready = all(v == "ok" for v in checks.values())
    body = {
        "status": "ready" if ready else "not-ready",
        "checks": checks,
        "knowledgeVersion": running.engine.version,
        # Where the data lives (a SQLite file's path, or the server database's host and name;
        # never a user or password): what an operator looking for the data needs first.
        "database": running.database.location,
    }
    return jsonify(body), (200 if ready else 503)
