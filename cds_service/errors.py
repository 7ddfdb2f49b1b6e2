"""Typed errors: each maps to one HTTP status and a JSON body, never a stack trace."""

from __future__ import annotations

from typing import Any


class CdsError(Exception):
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


class StorageUnavailableError(CdsError):
    """The feedback database cannot be written: nothing was acknowledged."""

    status = 503
    error = "storage-unavailable"
