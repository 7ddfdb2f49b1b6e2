"""patient-view snooze (issue 30): a card a clinician overrode stays away for that patient and
rule for the service's snoozeDays, on SQLite and PostgreSQL, over HTTP as the EHR calls it; the
store finds it by a salted key, never by the patient id."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update

from cds_service.config import Settings
from cds_service.engine import order_key
from cds_service.knowledge.rules import RuleId
from cds_service.store.report import build_report, format_report
from cds_service.store.storage import (
    Database,
    SnoozeStore,
    feedback_items,
    issued_cards,
    service_secrets,
)
from cds_service.web.runtime import runtime
from cds_service.web.snooze import StoreSnooze
from tests.conftest import VIEW_SERVICE_ID, body_of, build_app, vignette

URL = f"/cds-services/{VIEW_SERVICE_ID}"
BASELINE = "patient_view_baseline_mri_due_after_adjuvant_imrt"
FOLLOW_UP = "patient_view_follow_up_mri_overdue_after_indeterminate_report"


@pytest.fixture
def app(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    monkeypatch.setattr("cds_service.engine.utc_today", lambda: date(2026, 11, 24))
    flask_app = build_app(Settings(database_url=database_url))
    yield flask_app
    runtime(flask_app).database.dispose()


def _cards(app: Flask, name: str) -> list[dict[str, Any]]:
    response = app.test_client().post(URL, json=vignette(name))
    assert response.status_code == 200
    cards: list[dict[str, Any]] = body_of(response)["cards"]
    return cards


def _feedback(app: Flask, card: dict[str, Any], outcome: str) -> None:
    item: dict[str, Any] = {
        "card": card["uuid"],
        "outcome": outcome,
        "outcomeTimestamp": "2026-11-24T09:00:00Z",
    }
    if outcome == "accepted":
        item["acceptedSuggestions"] = [{"id": card["suggestions"][0]["uuid"]}]
    else:
        item["overrideReason"] = {"reason": card["overrideReasons"][0]}
    response = app.test_client().post(f"{URL}/feedback", json={"feedback": [item]})
    assert response.status_code == 200


def test_an_overridden_card_stays_away_for_that_patient_and_rule(app: Flask) -> None:
    (card,) = _cards(app, BASELINE)
    _feedback(app, card, "overridden")
    assert _cards(app, BASELINE) == []
    assert len(_cards(app, FOLLOW_UP)) == 1  # another patient (and rule): not snoozed


def test_an_accepted_card_is_not_snoozed(app: Flask) -> None:
    (card,) = _cards(app, BASELINE)
    _feedback(app, card, "accepted")
    assert len(_cards(app, BASELINE)) == 1


def test_the_snooze_ends_after_snooze_days(app: Flask) -> None:
    (card,) = _cards(app, BASELINE)
    _feedback(app, card, "overridden")
    assert _cards(app, BASELINE) == []
    database = runtime(app).database
    with database.sql.begin() as connection:  # the override was received 31 days ago
        connection.execute(
            update(feedback_items).values(received_at=datetime.now(UTC) - timedelta(days=31))
        )
    assert len(_cards(app, BASELINE)) == 1


def test_no_patient_id_is_stored_in_clear_or_as_an_unsalted_hash(app: Flask) -> None:
    (card,) = _cards(app, BASELINE)
    _feedback(app, card, "overridden")
    runtime(app).card_log.flush()
    with runtime(app).database.sql.connect() as connection:
        rows = [
            dict(r)
            for table in (issued_cards, feedback_items, service_secrets)
            for r in connection.execute(select(table)).mappings()
        ]
    flat = json.dumps(rows, default=str)
    assert "pt-pv-baseline" not in flat
    (issued,) = [r for r in rows if r.get("card_uuid") == card["uuid"] and "order_key" in r]
    key = issued["order_key"]
    assert len(key) == 32 and int(key, 16) >= 0
    plain = hashlib.sha256(f"pt-pv-baseline\n{RuleId.BASELINE_IMAGING_DUE}".encode()).hexdigest()
    assert not plain.startswith(key) and key != order_key("pt-pv-baseline", "", b"")


def test_each_database_salts_its_keys(tmp_path: Path) -> None:
    keys = []
    for name in ("a", "b"):
        database = Database(f"sqlite:///{tmp_path / name}.sqlite3")
        database.create_schema()
        store = SnoozeStore(database)
        keys.append(store.key("pt-1", RuleId.BASELINE_IMAGING_DUE))
        assert store.key("pt-1", RuleId.BASELINE_IMAGING_DUE) == keys[-1]  # stable
        assert SnoozeStore(database).key("pt-1", RuleId.BASELINE_IMAGING_DUE) == keys[-1]
        assert store.key("pt-2", RuleId.BASELINE_IMAGING_DUE) != keys[-1]
        assert store.key("pt-1", RuleId.FOLLOW_UP_IMAGING_OVERDUE) != keys[-1]
        database.dispose()
    assert keys[0] != keys[1]


def test_a_store_that_cannot_answer_says_less(tmp_path: Path) -> None:
    """Without the memory of overrides the card could be the tenth of the day: no card."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    snooze = StoreSnooze(SnoozeStore(Database(f"sqlite:///{blocker}/db.sqlite3")))
    key = snooze.key("pt-1", RuleId.BASELINE_IMAGING_DUE)
    assert key == ""
    assert snooze.snoozed(VIEW_SERVICE_ID, key, RuleId.BASELINE_IMAGING_DUE, 30)


def test_the_report_by_rule_counts_patient_view_cards_once_per_chart_session(app: Flask) -> None:
    """A chart opened twice within the session window is one card shown; its override is
    counted with its reason (``salivary-cds report --by rule``)."""
    (first,) = _cards(app, BASELINE)
    (again,) = _cards(app, BASELINE)
    _feedback(app, again, "overridden")
    runtime(app).card_log.flush()
    rows = {r.rule_id: r for r in build_report(runtime(app).database, by="rule")}
    row = rows[RuleId.BASELINE_IMAGING_DUE]
    assert (row.shown, row.accepted, row.overridden) == (1, 0, 1)
    assert row.top_override_reasons == [(first["overrideReasons"][0]["display"], 1)]
    table = format_report(list(rows.values()), "table", "rule")
    assert "baseline-imaging-due" in table
