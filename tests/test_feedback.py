"""Feedback endpoint and outcome report, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, text

from cds_service.cli.main import main
from cds_service.config import Settings
from cds_service.store.report import build_report, format_report
from cds_service.store.storage import FEEDBACK_PER_CARD, Database, feedback_items, issued_cards
from cds_service.web.runtime import runtime
from tests.conftest import HOOK_URL, SERVICE_ID, body_of, build_app, vignette

FEEDBACK_URL = f"/cds-services/{SERVICE_ID}/feedback"
POSITIVE = "parotid_mec_after_parotidectomy_and_imrt_local_mri_neck"
NOW = "2026-11-24T20:31:00Z"


@pytest.fixture
def app(database_url: str) -> Iterator[Flask]:
    flask_app = build_app(Settings(database_url=database_url))
    yield flask_app
    _database(flask_app).dispose()


def _database(app: Flask) -> Database:
    return runtime(app).database


def _show_card(app: Flask, order_id: str | None = None) -> dict[str, Any]:
    """The card for the POSITIVE vignette; ``order_id`` renames its draft (another order)."""
    body = vignette(POSITIVE)
    if order_id is not None:
        body["context"]["draftOrders"]["entry"][0]["resource"]["id"] = order_id
        body["context"]["selections"] = [f"ServiceRequest/{order_id}"]
    response = app.test_client().post(HOOK_URL, json=body)
    card: dict[str, Any] = body_of(response)["cards"][0]
    return card


def accepted(card: dict[str, Any]) -> dict[str, Any]:
    """The CDS Hooks sandbox's shape for an accepted card."""
    return {
        "card": card["uuid"],
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
        "outcomeTimestamp": NOW,
    }


def overridden(card_uuid: str, code: str = "limited-question-intended") -> dict[str, Any]:
    """The sandbox's shape for an override: reason {code, system}, no userComment."""
    return {
        "card": card_uuid,
        "outcome": "overridden",
        "overrideReason": {
            "reason": {"code": code, "system": "urn:salivary-imaging-cds:override-reason"}
        },
        "outcomeTimestamp": NOW,
    }


def _rows(app: Flask, table: Any) -> list[Any]:
    runtime(app).card_log.flush()
    with _database(app).sql.connect() as connection:
        return list(connection.execute(select(table)).mappings())


def test_shown_cards_are_recorded_without_patient_data(app: Flask) -> None:
    card = _show_card(app)
    [row] = _rows(app, issued_cards)
    assert row["card_uuid"] == card["uuid"]
    assert row["rule_id"] == "incomplete-mri-protocol"
    assert row["service_id"] == SERVICE_ID
    assert json.loads(row["suggestion_uuids"]) == [s["uuid"] for s in card["suggestions"]]
    assert row["hook_instance"] == vignette(POSITIVE)["hookInstance"]
    flat = json.dumps([dict(r) for r in _rows(app, issued_cards)], default=str)
    for private in ("pt-parotid-mec", "Mucoepidermoid", "dr-okafor", "1964"):
        assert private not in flat


def test_a_hook_instance_that_is_not_a_uuid_is_stored_only_as_its_hash(app: Flask) -> None:
    body = vignette(POSITIVE)
    body["hookInstance"] = "Jane Doe MRN 4455"
    app.test_client().post(HOOK_URL, json=body)
    runtime(app).card_log.flush()
    [row] = _rows(app, issued_cards)
    assert row["hook_instance"].startswith("hmac:")
    assert "Jane" not in row["hook_instance"]


def test_accepted_and_overridden_feedback_is_stored(app: Flask) -> None:
    first, second = _show_card(app), _show_card(app)
    body = {"feedback": [accepted(first), overridden(second["uuid"])]}
    response = app.test_client().post(FEEDBACK_URL, json=body)
    assert response.status_code == 200
    assert body_of(response) == {"stored": 2, "duplicates": 0, "unknownCards": 0}
    rows = {r["card_uuid"]: r for r in _rows(app, feedback_items)}
    assert rows[first["uuid"]]["outcome"] == "accepted"
    assert json.loads(rows[first["uuid"]]["accepted_suggestions"]) == [
        first["suggestions"][0]["uuid"]
    ]
    assert rows[second["uuid"]]["override_code"] == "limited-question-intended"
    assert rows[second["uuid"]]["user_comment"] is None
    assert all(r["known_card"] for r in rows.values())


def test_unknown_card_is_stored_and_flagged(app: Flask) -> None:
    stray = str(uuid.uuid4())
    response = app.test_client().post(FEEDBACK_URL, json={"feedback": [overridden(stray)]})
    assert body_of(response) == {"stored": 1, "duplicates": 0, "unknownCards": 1}
    [row] = _rows(app, feedback_items)
    assert row["card_uuid"] == stray and row["known_card"] is False


def test_the_same_feedback_twice_is_stored_once(app: Flask) -> None:
    card = _show_card(app)
    body = {"feedback": [accepted(card)]}
    client = app.test_client()
    assert body_of(client.post(FEEDBACK_URL, json=body))["stored"] == 1
    reordered = {"feedback": [dict(reversed(list(accepted(card).items())))]}
    assert body_of(client.post(FEEDBACK_URL, json=reordered)) == {
        "stored": 0,
        "duplicates": 1,
        "unknownCards": 0,
    }
    assert runtime(app).feedback.count() == 1


@pytest.mark.parametrize(
    ("item", "field"),
    [
        (
            {"outcome": "accepted", "acceptedSuggestions": [{"id": "s"}], "outcomeTimestamp": NOW},
            "feedback.0.card",
        ),
        ({"card": "c", "outcome": "maybe", "outcomeTimestamp": NOW}, "feedback.0.outcome"),
        (
            {"card": "c", "outcome": "accepted", "outcomeTimestamp": NOW},
            "feedback.0.acceptedSuggestions",
        ),
        (
            {
                "card": "c",
                "outcome": "overridden",
                "acceptedSuggestions": [{"id": "s"}],
                "outcomeTimestamp": NOW,
            },
            "feedback.0.acceptedSuggestions",
        ),
        ({"card": "c", "outcomeTimestamp": NOW}, "feedback.0.outcome"),
        (
            {"card": "c", "outcome": "overridden", "outcomeTimestamp": "yesterday"},
            "feedback.0.outcomeTimestamp",
        ),
        ({"card": "c", "outcome": "overridden"}, "feedback.0.outcomeTimestamp"),
        (
            {
                "card": "c",
                "outcome": "overridden",
                "overrideReason": {"reason": {"code": "x"}},
                "outcomeTimestamp": NOW,
            },
            "feedback.0.overrideReason.reason.system",
        ),
        (
            {
                "card": "c",
                "outcome": "accepted",
                "acceptedSuggestions": [{"id": "s"}],
                "overrideReason": {},
                "outcomeTimestamp": NOW,
            },
            "feedback.0.overrideReason",
        ),
    ],
)
def test_invalid_items_are_400_and_nothing_is_stored(
    app: Flask, item: dict[str, Any], field: str
) -> None:
    good = overridden(str(uuid.uuid4()))
    response = app.test_client().post(FEEDBACK_URL, json={"feedback": [item, good]})
    assert response.status_code == 400
    assert body_of(response)["field"] == field
    assert runtime(app).feedback.count() == 0


@pytest.mark.parametrize("body", [{}, {"feedback": []}, {"feedback": "x"}, [], "text"])
def test_malformed_feedback_requests_are_400(app: Flask, body: Any) -> None:
    response = app.test_client().post(
        FEEDBACK_URL, data=json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 400


def test_feedback_for_an_unknown_service_is_404(app: Flask) -> None:
    response = app.test_client().post("/cds-services/nope/feedback", json={"feedback": []})
    assert response.status_code == 404


def test_storage_failure_is_503_and_not_acknowledged(app: Flask) -> None:
    with _database(app).sql.begin() as connection:
        connection.execute(text("DROP TABLE feedback_items"))
    response = app.test_client().post(FEEDBACK_URL, json={"feedback": [overridden("x")]})
    assert response.status_code == 503
    assert body_of(response)["error"] == "storage-unavailable"


def test_card_recording_failure_does_not_withhold_advice(app: Flask) -> None:
    with _database(app).sql.begin() as connection:
        connection.execute(text("DROP TABLE issued_cards"))
    response = app.test_client().post(HOOK_URL, json=vignette(POSITIVE))
    assert response.status_code == 200
    assert len(body_of(response)["cards"]) == 1


def test_readiness_checks_the_database(app: Flask) -> None:
    response = app.test_client().get("/readyz")
    assert body_of(response)["checks"]["database"] == "ok"


def test_cors_preflight_for_feedback(app: Flask) -> None:
    response = app.test_client().options(
        FEEDBACK_URL,
        headers={
            "Origin": "https://sandbox.cds-hooks.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 200
    assert "authorization" in response.headers["Access-Control-Allow-Headers"].lower()


def test_report_per_rule_and_per_card(
    app: Flask, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cards = [_show_card(app, f"order-{n}") for n in range(4)]  # four orders: four sessions
    client = app.test_client()
    client.post(
        FEEDBACK_URL,
        json={
            "feedback": [
                accepted(cards[0]),
                overridden(cards[1]["uuid"]),
                overridden(cards[2]["uuid"]),
                overridden(cards[3]["uuid"], "protocol-confirmed-by-radiology"),
                overridden("not-a-card-we-showed"),
            ]
        },
    )
    runtime(app).card_log.flush()
    rows = {r.key: r for r in build_report(_database(app))}
    mri = rows["incomplete-mri-protocol"]
    assert (mri.shown, mri.accepted, mri.overridden) == (4, 1, 3)
    assert mri.acceptance_rate == 0.25
    assert mri.top_override_reasons[0] == ("limited-question-intended", 2)
    assert rows["(unknown card)"].overridden == 1
    per_card = build_report(_database(app), by="card")
    assert len(per_card) == 5

    assert main(["report", "--database-url", database_url]) == 0
    table = capsys.readouterr().out
    assert "incomplete-mri-protocol" in table and "25.0%" in table
    assert main(["report", "--database-url", database_url, "--format", "csv"]) == 0
    csv_text = capsys.readouterr().out
    assert (
        csv_text.splitlines()[0]
        == "rule,rule,shown,would have shown,accepted,overridden,conflicting,acceptance,"
        "top override reasons"
    )
    assert main(["report", "--database-url", database_url, "--format", "json", "--by", "card"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {row["rule_id"] for row in data} == {"incomplete-mri-protocol", "(unknown card)"}


def test_empty_report_says_so() -> None:
    assert format_report([], "table", "rule") == "No cards shown and no feedback received yet."


def _nested(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {"x": 1}
    for _ in range(levels):
        node = {"x": node}
    return node


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda i: i["overrideReason"]["reason"].update(code="c" * 129), ".reason.code"),
        (lambda i: i["overrideReason"]["reason"].update(system="s" * 257), ".reason.system"),
        (lambda i: i["overrideReason"].update(userComment="patient said \x00 no"), ".userComment"),
        (lambda i: i["overrideReason"]["reason"].update(code="a\x00"), ".reason.code"),
        (lambda i: i.update(extra=_nested(600)), "feedback.0.extra"),
    ],
)
def test_input_postgresql_cannot_store_is_a_400_on_both_databases(
    app: Flask, change: Any, field: str
) -> None:
    """On PostgreSQL these were a 503 "send it again" (a batch that could never succeed);
    on SQLite they were stored. Now both refuse them, naming the field."""
    item = overridden(str(uuid.uuid4()))
    change(item)
    response = app.test_client().post(FEEDBACK_URL, json={"feedback": [item]})
    assert response.status_code == 400, response.get_json()
    assert field in body_of(response)["field"]
    assert runtime(app).feedback.count() == 0


# --- issue 26: feedback integrity and quota ---------------------------------------------------

OTHER_SERVICE = "salivary-post-treatment-imaging-order-sign"


def test_feedback_on_a_card_through_another_service_is_not_counted_for_it(app: Flask) -> None:
    card = _show_card(app)
    client = app.test_client()
    other = client.post(
        f"/cds-services/{OTHER_SERVICE}/feedback", json={"feedback": [accepted(card)]}
    )
    assert body_of(other) == {"stored": 1, "duplicates": 0, "unknownCards": 1}
    own = client.post(FEEDBACK_URL, json={"feedback": [accepted(card)]})
    assert body_of(own)["unknownCards"] == 0


def test_a_suggestion_the_card_never_had_is_a_400(app: Flask) -> None:
    card = _show_card(app)
    item = accepted(card)
    item["acceptedSuggestions"] = [{"id": "not-a-suggestion-of-this-card"}]
    response = app.test_client().post(FEEDBACK_URL, json={"feedback": [item]})
    assert response.status_code == 400
    assert body_of(response)["field"] == "feedback.0.acceptedSuggestions"


def test_a_card_takes_a_bounded_number_of_feedback_items(app: Flask) -> None:
    card = _show_card(app)
    client = app.test_client()
    items = []
    for n in range(FEEDBACK_PER_CARD + 1):
        item = overridden(card["uuid"])
        item["overrideReason"]["userComment"] = f"comment {n}"
        items.append(item)
    refused = client.post(FEEDBACK_URL, json={"feedback": items})
    assert refused.status_code == 429
    assert body_of(refused)["error"] == "feedback-quota-exceeded"
    assert client.post(FEEDBACK_URL, json={"feedback": items[:-1]}).status_code == 200
    last = client.post(FEEDBACK_URL, json={"feedback": items[-1:]})
    assert last.status_code == 429


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:00-05:00"])
def test_an_absurd_outcome_time_never_breaks_the_report(app: Flask, when: str) -> None:
    """Stored as it came, year 0001 once broke every later report on PostgreSQL."""
    card = _show_card(app)
    item = overridden(card["uuid"])
    item["outcomeTimestamp"] = when
    assert app.test_client().post(FEEDBACK_URL, json={"feedback": [item]}).status_code == 200
    rows = {r.key: r for r in build_report(_database(app))}
    assert rows["incomplete-mri-protocol"].overridden == 1
    format_report(list(rows.values()), "csv", "rule")
