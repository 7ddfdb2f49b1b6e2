"""Authentication of CDS clients on the /cds-services endpoints (before each request)."""

from __future__ import annotations

from flask import Flask, current_app, request
from sqlalchemy.exc import SQLAlchemyError

from cds_service.config import Settings
from cds_service.feedback import FeedbackStore
from cds_service.security import ClientVerifier, load_trusted_issuers


def called_url(settings: Settings) -> str:
    """The exact URL the client called, as the JWT's aud must name it."""
    if settings.public_base_url:
        return settings.public_base_url.rstrip("/") + request.path
    return request.base_url


def _authenticate() -> None:
    if request.method == "OPTIONS" or not request.path.startswith("/cds-services"):
        return  # CORS preflights carry no credentials; health and metrics are open
    settings: Settings = current_app.config["CDS_SETTINGS"]
    verifier: ClientVerifier = current_app.extensions["cds_verifier"]
    header = request.headers.get("Authorization")
    is_discovery = request.path.rstrip("/") == "/cds-services"
    if not settings.auth_required() or (is_discovery and header is None):
        return  # discovery reveals nothing about patients; a token sent to it is still checked
    verifier.verify(header, called_url(settings))


class DatabaseReplayGuard:
    """jti replay detection shared by every gunicorn worker, through the service's database."""

    def __init__(self, store: FeedbackStore) -> None:
        self._store = store

    def first_use(self, iss: str, jti: str, expires: float) -> bool:
        try:
            return self._store.first_use_of_token(iss, jti, expires)
        except SQLAlchemyError:
            # Without the shared memory a replay cannot be ruled out: refuse (fail closed).
            return False


def install_authentication(app: Flask, settings: Settings, store: FeedbackStore) -> None:
    """Build the verifier once (trusted issuers are read and validated at start-up)."""
    issuers = load_trusted_issuers(
        settings.trusted_issuers, settings.trusted_issuers_file, settings.trust_sandbox
    )
    if settings.auth_required() and not issuers:
        raise ValueError("authentication is required but no trusted issuer is configured")
    app.extensions["cds_verifier"] = ClientVerifier(
        issuers, leeway=settings.jwt_leeway_seconds, replays=DatabaseReplayGuard(store)
    )
    app.before_request(_authenticate)
