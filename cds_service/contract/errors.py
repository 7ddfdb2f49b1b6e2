"""The service's errors, under one root.

- ``ConfigurationError``: the service must not start (bad settings, knowledge or trust).
- ``CdsError``: a caller's request cannot be answered; each maps to one HTTP status and a JSON
  body, never a stack trace.
- ``InputFileError``: a file given to the command line cannot be used.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """Root of every error the service raises on purpose."""


class ConfigurationError(ServiceError):
    """Settings, knowledge or trust configuration that the service refuses to start with."""


class DatabaseUnavailableError(ConfigurationError):
    """The feedback database cannot be opened, reached or written at start-up."""


class InputFileError(ServiceError):
    """A file handed to the command line (replay, onboarding) cannot be used."""


class ReplayCheckUnavailableError(ServiceError):
    """The store of used token ids cannot be asked: a replay cannot be ruled out."""


class CdsError(ServiceError):
    """An error the client can act on. ``status`` is the HTTP status it is answered with."""

    status = 400
    error = "bad-request"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.error, "message": self.message}
        body.update({k: v for k, v in self.details.items() if v not in (None, "", [], {})})
        return body


class InvalidRequestError(CdsError):
    status = 400
    error = "invalid-request"


class UnknownServiceError(CdsError):
    status = 404
    error = "unknown-service"


class UnsupportedMediaTypeError(CdsError):
    status = 415
    error = "unsupported-media-type"


class PrefetchUnavailableError(CdsError):
    """CDS Hooks 2.0 "Prefetch": required data neither prefetched nor fetchable -> 412."""

    status = 412
    error = "prefetch-unavailable"


class QuotaExceededError(CdsError):
    """More feedback than a card (or the unknown cards together) may have: nothing stored."""

    status = 429
    error = "feedback-quota-exceeded"


class StorageUnavailableError(CdsError):
    """The feedback database cannot be written: nothing was acknowledged."""

    status = 503
    error = "storage-unavailable"


class UnauthorizedError(CdsError):
    """CDS Hooks 2.0 "Trusting CDS Clients": no valid client JWT -> 401."""

    status = 401
    error = "unauthorized"
    #: The WWW-Authenticate challenge (RFC 6750 §3): a token was sent and is not acceptable.
    challenge = 'Bearer error="invalid_token"'


class MissingCredentialsError(UnauthorizedError):
    """No bearer token was sent (no Authorization header, or another scheme): RFC 6750 §3.1
    says the challenge then carries no error code, as the client may not know auth is needed."""

    challenge = "Bearer"
