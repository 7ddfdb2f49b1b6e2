"""Keyed hashes (pseudonyms) for what the service may keep but must not reveal: a hookInstance
that is not a UUID (logged and stored only hashed) and the order key (patient and order ids)
that lets the outcome report count an ordering session once.

A plain SHA-256 of such a value can be reversed by trying candidates (an MRN-like hookInstance
was recovered in 0.5 s). These are HMAC-SHA256 under a random key the service creates once in
its database, so every worker and instance shares it and nobody without the database can try
candidates. If the database cannot be read when the key is first needed, a per-process random
key is used for that call (the hash then only differs between processes: logs and the report
stay free of the value) and the database is asked again on the next call.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections.abc import Callable

import structlog
from sqlalchemy.exc import SQLAlchemyError

log = structlog.get_logger("cds_service.pseudonyms")

#: The name of the shared key in the database's service_secrets table.
KEY_NAME = "pseudonym-key"


def keyed_hash(key: bytes, *parts: str) -> str:
    """64 bits of HMAC-SHA256 over ``parts`` (joined by newlines), as 16 hex digits."""
    message = "\n".join(parts).encode("utf-8", "surrogatepass")
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:16]


class Pseudonyms:
    """The shared key, read lazily (in each worker, after the fork) from ``load``."""

    def __init__(self, load: Callable[[], str]) -> None:
        self._load = load
        self._key: bytes | None = None
        self._lock = threading.Lock()

    def key(self) -> bytes:
        if self._key is None:
            with self._lock:
                if self._key is None:
                    try:
                        self._key = bytes.fromhex(self._load())
                    except (SQLAlchemyError, ValueError) as exc:
                        log.error("pseudonym-key-unreadable", error_type=type(exc).__name__)
                        return secrets.token_bytes(32)
        return self._key

    def __call__(self, *parts: str) -> str:
        return keyed_hash(self.key(), *parts)
