"""Authentication of CDS clients on the /cds-services endpoints (before each request)."""

from __future__ import annotations

from flask import Flask, g, request

from cds_service.config import Settings
from cds_service.web.runtime import runtime


def called_url(settings: Settings) -> str:
    """The exact URL the client called, as the JWT's aud must name it."""
    if settings.public_base_url:
        return settings.public_base_url.rstrip("/") + request.path
    return request.base_url


def _authenticate() -> None:
    if request.method == "OPTIONS" or not request.path.startswith("/cds-services"):
        return  # CORS preflights carry no credentials; health and metrics are open
    running = runtime()
    settings = running.settings
    header = request.headers.get("Authorization")
    is_discovery = request.path.rstrip("/") == "/cds-services"
    if not settings.auth_required() or (is_discovery and header is None):
        return  # discovery reveals nothing about patients; a token sent to it is still checked
    claims = running.verifier.verify(header, called_url(settings))
    # The FHIR servers this caller's EHR serves: its fhirServer is fetched from only if listed
    # (a token from EHR B must not read EHR A's patients through A's allow-listed server).
    g.cds_fhir_servers = running.verifier.fhir_servers(str(claims["iss"]))
    g.cds_issuer = str(claims["iss"])  # cards and their feedback belong to this caller


def install_authentication(app: Flask) -> None:
    app.before_request(_authenticate)
