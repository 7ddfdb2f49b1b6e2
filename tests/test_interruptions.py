"""Fewer interruptions (issue 27): a card overridden at order-select is not shown again at
order-sign in the same ordering session; one history card per order-sign call for every order
without a reason; cards on orders that are already right ship silent. Over HTTP, on SQLite and
PostgreSQL (the feedback store answers which cards were overridden)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from cds_service.config import Settings
from cds_service.engine import CdsEngine
from cds_service.web.runtime import runtime
from tests.conftest import (
    HOOK_URL,
    SERVICE_ID,
    SIGN_SERVICE_ID,
    body_of,
    build_app,
    vignette,
)

POSITIVE = "parotid_mec_after_parotidectomy_and_imrt_local_mri_neck"
SIGN_URL = f"/cds-services/{SIGN_SERVICE_ID}"
NOW = "2026-11-24T20:31:00Z"


@pytest.fixture
def app(database_url: str) -> Iterator[Flask]:
    flask_app = build_app(Settings(database_url=database_url))
    yield flask_app
    runtime(flask_app).database.dispose()


def _sign_body(select: dict[str, Any]) -> dict[str, Any]:
    """The order-sign call of the same session: the same drafts, no selections."""
    body = copy.deepcopy(select)
    body["hook"] = "order-sign"
    del body["context"]["selections"]
    return body


def _feedback(app: Flask, card: dict[str, Any], outcome: str, when: str = NOW) -> None:
    item: dict[str, Any] = {"card": card["uuid"], "outcome": outcome, "outcomeTimestamp": when}
    if outcome == "accepted":
        item["acceptedSuggestions"] = [{"id": card["suggestions"][0]["uuid"]}]
    else:
        item["overrideReason"] = {
            "reason": {
                "code": "limited-question-intended",
                "system": "urn:salivary-imaging-cds:override-reason",
            }
        }
    response = app.test_client().post(f"{HOOK_URL}/feedback", json={"feedback": [item]})
    assert response.status_code == 200, response.json


def _cards(app: Flask, url: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = app.test_client().post(url, json=body)
    assert response.status_code == 200, response.json
    runtime(app).card_log.flush()  # the card log writes off the request path
    cards: list[dict[str, Any]] = body_of(response)["cards"]
    return cards


def test_a_card_overridden_at_selection_is_not_shown_again_at_signing(app: Flask) -> None:
    select = vignette(POSITIVE)
    [card] = _cards(app, HOOK_URL, select)
    assert card["indicator"] == "warning"
    _feedback(app, card, "overridden")
    assert _cards(app, SIGN_URL, _sign_body(select)) == []


def test_a_card_accepted_or_not_answered_is_shown_again_at_signing(app: Flask) -> None:
    select = vignette(POSITIVE)
    [card] = _cards(app, HOOK_URL, select)
    [again] = _cards(app, SIGN_URL, _sign_body(select))  # no feedback: still wrong, still said
    assert again["summary"] == card["summary"]
    _feedback(app, card, "overridden", "2026-11-24T20:31:00Z")
    _feedback(app, card, "accepted", "2026-11-24T20:32:00Z")  # the latest outcome decides
    [again] = _cards(app, SIGN_URL, _sign_body(select))
    assert again["summary"] == card["summary"]


def test_an_override_hides_only_that_order_and_rule(app: Flask) -> None:
    select = vignette(POSITIVE)
    [card] = _cards(app, HOOK_URL, select)
    _feedback(app, card, "overridden")
    other = vignette(POSITIVE)
    draft = other["context"]["draftOrders"]["entry"][0]["resource"]
    draft["id"] = "mri-neck-other"
    other["context"]["selections"] = ["ServiceRequest/mri-neck-other"]
    [shown] = _cards(app, SIGN_URL, _sign_body(other))  # another order: its own card
    assert shown["summary"] == card["summary"]


def test_without_the_session_lookup_the_engine_shows_the_card(engine: CdsEngine) -> None:
    """The engine never reads storage: without the web layer's lookup nothing is hidden."""
    select = vignette(POSITIVE)
    outcome = engine.evaluate(SIGN_SERVICE_ID, _sign_body(select))
    assert len(outcome.response.cards) == 1 and outcome.hidden_rules == ()
    hidden = engine.evaluate(
        SIGN_SERVICE_ID,
        _sign_body(select),
        overridden=lambda keys, _minutes: {(k, "incomplete-mri-protocol") for k in keys},
    )
    assert hidden.response.cards == [] and hidden.hidden_rules == ("incomplete-mri-protocol",)
    assert all(issued.rule_id != "incomplete-mri-protocol" for issued in hidden.issued)


def _history_sign_body() -> dict[str, Any]:
    """Order-sign of three drafts: two without a reason (one of them already right), one with."""
    body = vignette("full_protocol_without_clinical_history_prior_mri")  # an order-sign call
    assert body["hook"] == "order-sign"
    entries = body["context"]["draftOrders"]["entry"]
    second = copy.deepcopy(entries[0])
    second["resource"]["id"] = "mri-second"
    second["resource"]["code"] = {"text": "CT NECK W CONTRAST"}
    third = copy.deepcopy(entries[0])
    third["resource"]["id"] = "mri-with-reason"
    third["resource"]["reasonCode"] = [{"text": "New facial nerve weakness"}]
    entries += [second, third]
    return body


def test_one_history_card_per_signing_for_every_order_without_a_reason(
    engine: CdsEngine,
) -> None:
    body = _history_sign_body()
    cards = engine.evaluate(SIGN_SERVICE_ID, body).response.to_json()["cards"]
    [card] = cards
    assert card["summary"].startswith("Add the clinical history")
    first_draft = body["context"]["draftOrders"]["entry"][0]["resource"]["code"]["text"]
    assert card["detail"].startswith(f"No reason for the exam on **{first_draft}** and **CT")
    labels = [s["label"] for s in card["suggestions"]]
    assert labels[0] == "Add history, reason: New pain at or near the treated site"  # symptoms
    assert labels[-1].endswith("Routine surveillance after treatment, no new symptom")
    for suggestion in card["suggestions"]:  # each reason is added to both drafts at once
        targets = [a["resource"]["id"] for a in suggestion["actions"]]
        assert targets == [
            body["context"]["draftOrders"]["entry"][0]["resource"]["id"],
            "mri-second",
        ]
        assert all(a["type"] == "update" for a in suggestion["actions"])
    assert "| Study |" not in card["detail"]  # no ACR table: the card is about the reason


def test_order_select_shows_no_standalone_history_card(engine: CdsEngine) -> None:
    body = vignette("full_protocol_without_clinical_history_prior_mri")
    body["hook"] = "order-select"
    body["context"]["selections"] = [
        f"ServiceRequest/{body['context']['draftOrders']['entry'][0]['resource']['id']}"
    ]
    assert engine.evaluate(SERVICE_ID, body).response.cards == []


def test_cards_on_orders_already_right_ship_silent_and_a_site_can_switch_them_on(
    engine: CdsEngine,
) -> None:
    from cds_service.knowledge.site import Site, SiteCatalogue

    for name, rule in (
        ("treated_parotid_cancer_ct_neck_with_contrast", "ct-neck-mri-preferred"),
        ("recurrence_status_full_protocol_restaging", "recurrence-restaging"),
    ):
        outcome = engine.evaluate(SERVICE_ID, vignette(name))
        assert outcome.response.cards == [] and outcome.silent_rules == (rule,), name
        key = rule if rule == "ct-neck-mri-preferred" else f"{rule}:full-protocol"
        site = Site(None, SiteCatalogue(), {key: "active"}, "on")
        switched_on = CdsEngine(engine.knowledge, site=site).evaluate(SERVICE_ID, vignette(name))
        assert switched_on.rules == (rule,), name
    # The recurrence card on an order that is not the full protocol still shows (a CT neck
    # with contrast; devices unread, so no MRI-preferred card takes its place).
    body = vignette("recurrence_status_full_protocol_restaging")
    body["context"]["draftOrders"]["entry"][0]["resource"]["code"] = {"text": "CT NECK W CONTRAST"}
    del body["prefetch"]["devices"]
    assert engine.evaluate(SERVICE_ID, body).rules == ("recurrence-restaging",)
