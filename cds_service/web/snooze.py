"""The engine's snooze, answered from the feedback store: a patient-view card stays away for a
patient and rule a clinician overrode lately (the service's ``snoozeDays``).

The engine never imports the store; it asks this object, which keys the patient by a salted
hash (cds_service.store.storage.SnoozeStore) and says "snoozed" when the store cannot answer:
without the memory of an override, the fail-safe choice is to say less.
"""

from __future__ import annotations

import structlog
from sqlalchemy.exc import SQLAlchemyError

from cds_service.knowledge.rules import RuleId
from cds_service.store.storage import SnoozeStore

log = structlog.get_logger("cds_service.snooze")


class StoreSnooze:
    """``cds_service.engine.Snooze`` over the database."""

    def __init__(self, store: SnoozeStore) -> None:
        self._store = store

    def key(self, patient_id: str, rule: RuleId) -> str:
        try:
            return self._store.key(patient_id, rule)
        except SQLAlchemyError as exc:
            # No salt, no key: "" matches no stored card, and ``snoozed`` then answers True.
            log.error("snooze-key-unavailable", error_type=type(exc).__name__)
            return ""

    def snoozed(self, service_id: str, key: str, rule: RuleId, days: int) -> bool:
        if not key:
            return True
        try:
            return self._store.overridden_since(service_id, key, rule, days)
        except SQLAlchemyError as exc:
            log.error("snooze-check-failed", service=service_id, error_type=type(exc).__name__)
            return True
