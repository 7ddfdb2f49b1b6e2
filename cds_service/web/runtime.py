"""The objects one running app holds, behind one typed accessor.

Blueprints ask ``runtime()`` for what they need instead of reading string keys of
``app.extensions``: a missing or misnamed service is then a type error, not a 500.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Flask, current_app

from cds_service.config import Settings
from cds_service.engine import CdsEngine
from cds_service.fhir.client import FhirFetcher
from cds_service.store.card_log import CardLog
from cds_service.store.pseudonyms import Pseudonyms
from cds_service.store.storage import Database, FeedbackStore
from cds_service.web.security import ClientVerifier
from cds_service.web.snooze import StoreSnooze

_KEY = "salivary_cds"


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    engine: CdsEngine
    fetcher: FhirFetcher
    database: Database
    feedback: FeedbackStore
    card_log: CardLog
    verifier: ClientVerifier
    #: Recent overrides of patient-view cards (the feedback store behind the engine's snooze).
    snooze: StoreSnooze
    #: Keyed hashes of what is kept but must not be revealed (a non-UUID hookInstance).
    pseudonyms: Pseudonyms
    #: Readiness probes by name (/readyz); each answers True when its dependency is usable.
    readiness: dict[str, Callable[[], bool]] = field(default_factory=dict)

    def attach(self, app: Flask) -> None:
        app.extensions[_KEY] = self


def runtime(app: Flask | None = None) -> Runtime:
    """The running app's objects (the current app's by default)."""
    found = (app or current_app).extensions[_KEY]
    assert isinstance(found, Runtime)
    return found
