"""Liveness and readiness, for orchestrators (no authentication, no patient data)."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz() -> ResponseReturnValue:
    """The process answers."""
    return jsonify({"status": "ok"})


@blueprint.get("/readyz")
def readyz() -> ResponseReturnValue:
    """Knowledge loaded and every registered dependency (the database) reachable."""
    engine = current_app.extensions.get("cds_engine")
    checks: dict[str, str] = {
        "knowledge": "ok" if engine is not None and engine.knowledge.services else "missing"
    }
    probes: dict[str, Callable[[], bool]] = current_app.extensions.get("cds_readiness", {})
    for name, probe in probes.items():
        try:
            checks[name] = "ok" if probe() else "failing"
        except Exception:  # a readiness probe reports failure, it never raises
            checks[name] = "failing"
    ready = all(v == "ok" for v in checks.values())
    return jsonify({"status": "ready" if ready else "not-ready", "checks": checks}), (
        200 if ready else 503
    )
