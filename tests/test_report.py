"""What the outcome report counts: sessions, latest outcomes, suggestions, periods, CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask

from cds_service.cli.main import main
from cds_service.config import Settings
from cds_service.store.report import build_report, format_report
from cds_service.web.runtime import runtime
from tests.conftest import SERVICE_ID, body_of, build_app, vignette

HOOK = f"/cds-services/{SERVICE_ID}"
FEEDBACK = f"{HOOK}/feedback"
MRI_NECK = "parotid_mec_after_parotidectomy_and_imrt_local_mri_neck"
CT_NECK = "treated_parotid_cancer_ct_neck_without_contrast"


@pytest.fixture
def app(database_url: str) -> Iterator[Flask]:
    flask_app = build_app(Settings(database_url=database_url))
    yield flask_app
    runtime(flask_app).card_log.flush()
    runtime(flask_app).database.dispose()


def show(app: Flask, name: str = MRI_NECK, order_id: str | None = None) -> dict[str, Any]:
    body = vignette(name)
    if order_id is not None:
        body["context"]["draftOrders"]["entry"][0]["resource"]["id"] = order_id
        body["context"]["selections"] = [f"ServiceRequest/{order_id}"]
    card: dict[str, Any] = body_of(app.test_client().post(HOOK, json=body))["cards"][0]
    return card


def at(minutes: int) -> str:
    return (datetime(2026, 11, 25, 9, 0, tzinfo=UTC) + timedelta(minutes=minutes)).isoformat()


def accept(card: dict[str, Any], when: str, suggestion: int = 0) -> dict[str, Any]:
    return {
        "card": card["uuid"],
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": card["suggestions"][suggestion]["uuid"]}],
        "outcomeTimestamp": when,
    }


def dismiss(card: dict[str, Any], when: str, code: str = "limited-question-intended") -> Any:
    return {
        "card": card["uuid"],
        "outcome": "overridden",
        "overrideReason": {"reason": {"code": code, "system": "urn:x", "display": code}},
        "outcomeTimestamp": when,
    }


def send(app: Flask, *items: dict[str, Any]) -> None:
    response = app.test_client().post(FEEDBACK, json={"feedback": list(items)})
    assert response.status_code == 200, response.data


def report(app: Flask, **options: Any) -> dict[str, Any]:
    running = runtime(app)
    running.card_log.flush()
    return {r.key: r for r in build_report(running.database, **options)}


def test_the_latest_outcome_counts_and_a_conflict_is_counted_as_such(app: Flask) -> None:
    card = show(app)
    send(app, accept(card, at(1)), dismiss(card, at(2)))
    row = report(app)["incomplete-mri-protocol"]
    assert (row.shown, row.accepted, row.overridden, row.conflicting) == (1, 0, 1, 1)
    assert row.acceptance_rate == 0.0
    assert row.top_override_reasons == [("limited-question-intended", 1)]


def test_the_latest_outcome_counts_whatever_order_the_items_arrive_in(app: Flask) -> None:
    card = show(app)
    send(app, dismiss(card, at(5)))
    send(app, accept(card, at(9)))  # sent later, and later in time: the clinician took it
    send(app, dismiss(card, at(7)))  # arrives last, but happened before the acceptance
    row = report(app)["incomplete-mri-protocol"]
    assert (row.shown, row.accepted, row.overridden, row.conflicting) == (1, 1, 0, 1)


def test_a_card_reissued_for_the_same_order_counts_once(app: Flask) -> None:
    first = show(app)
    again = show(app)  # the client calls again (a reason was added, or at order-sign)
    assert first["uuid"] != again["uuid"]
    show(app, order_id="another-order")
    send(app, accept(again, at(1)))
    row = report(app)["incomplete-mri-protocol"]
    assert (row.shown, row.accepted) == (2, 1)
    # per card, each issued card is its own line
    assert len([r for r in report(app, by="card").values() if r.shown]) == 3
    # a session window of zero: every call is a session of its own
    row = report(app, session=timedelta(0))["incomplete-mri-protocol"]
    assert row.shown == 3


def test_another_patient_with_the_same_order_id_is_another_session(app: Flask) -> None:
    show(app, order_id="example-request-id")  # the sandbox gives every draft this id
    body = vignette(MRI_NECK)
    body["context"]["patientId"] = "someone-else"
    for entry in body["context"]["draftOrders"]["entry"]:
        entry["resource"]["subject"] = {"reference": "Patient/someone-else"}
        entry["resource"]["id"] = "example-request-id"
    body["context"]["selections"] = ["ServiceRequest/example-request-id"]
    for key in ("conditions", "procedures"):
        for entry in body["prefetch"][key]["entry"]:
            entry["resource"]["subject"] = {"reference": "Patient/someone-else"}
    assert body_of(app.test_client().post(HOOK, json=body))["cards"]
    assert report(app)["incomplete-mri-protocol"].shown == 2


def test_acceptance_per_suggestion(app: Flask) -> None:
    ct = [show(app, CT_NECK, order_id=f"ct-{n}") for n in range(3)]
    kinds = [s["label"] for s in ct[0]["suggestions"]]
    assert len(kinds) == 2  # CT neck with contrast, or the MRI protocol
    send(app, accept(ct[0], at(1), 0), accept(ct[1], at(1), 1), dismiss(ct[2], at(1)))
    rows = report(app, by="suggestion")
    assert set(rows) == {"replace:ct-neck-with-contrast", "replace:mri-protocol"}
    ct_row, mri_row = rows["replace:ct-neck-with-contrast"], rows["replace:mri-protocol"]
    assert (ct_row.shown, ct_row.accepted, ct_row.overridden) == (3, 1, 1)
    assert (mri_row.shown, mri_row.accepted, mri_row.overridden) == (3, 1, 1)
    assert ct_row.rule_id == "ct-neck-without-contrast"


def test_since_and_until_select_the_period(app: Flask) -> None:
    show(app)
    now = datetime.now(UTC)
    assert report(app, since=now - timedelta(hours=1))["incomplete-mri-protocol"].shown == 1
    assert report(app, since=now + timedelta(hours=1)) == {}
    assert report(app, until=now - timedelta(hours=1)) == {}


def test_the_csv_is_ready_to_chart(
    app: Flask, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cards = [show(app, order_id=f"o-{n}") for n in range(4)]
    send(app, accept(cards[0], at(1)), dismiss(cards[1], at(1)))
    runtime(app).card_log.flush()
    capsys.readouterr()  # the service's own log lines so far
    argv = ["report", "--database-url", database_url, "--format", "csv", "--by", "day"]
    assert main([*argv, "--since", "2000-01-01"]) == 0
    out = capsys.readouterr().out
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 1, out
    row = rows[0]
    assert row["day"] == datetime.now(UTC).date().isoformat()
    assert (int(row["shown"]), int(row["accepted"]), int(row["overridden"])) == (4, 1, 1)
    assert float(row["acceptance"]) == 0.25
    assert main([*argv, "--until", "2000-01-01"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[1:] == []  # the header only
    with pytest.raises(SystemExit) as refused:  # argparse refuses it, naming the value
        main([*argv, "--since", "yesterday"])
    assert refused.value.code == 2
    assert "not an ISO date or time: 'yesterday'" in capsys.readouterr().err


def test_feedback_about_an_unknown_card_counts_its_latest_outcome_once(app: Flask) -> None:
    ghost = {"uuid": "not-a-card-we-showed", "suggestions": [{"uuid": "x"}]}
    send(app, dismiss(ghost, at(1)), accept(ghost, at(2)))
    row = report(app)["(unknown card)"]
    assert (row.shown, row.accepted, row.overridden, row.conflicting) == (0, 1, 0, 1)
    table = format_report(list(report(app).values()), "table", "rule")
    assert table.splitlines()[2].split()[:6] == ["(unknown", "card)", "0", "0", "1", "0"]
