"""patient-view (issue 30): imaging that is due and that nobody has ordered. The vignettes show
each branch and each reason to stay silent; these tests change one fact at a time (a date's
precision, an order's status, a report's category, the site's rule mode) and check that the
card comes or goes for exactly that reason, never as a warning and never more than one."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from typing import Any

import pytest
from flask.testing import FlaskClient

from cds_service.clinical.due_imaging import span
from cds_service.engine import CdsEngine, Outcome
from cds_service.fhir.records import PartialDate
from cds_service.knowledge.loader import load_knowledge
from cds_service.knowledge.rules import RuleId
from cds_service.knowledge.site import NO_SITE
from tests.conftest import VIEW_SERVICE_ID, body_of, expected_outcomes, vignette
from tests.test_site import SITE, site_engine

TODAY = date(2026, 11, 24)  # fhir_examples/vignettes.json's "today"
BASELINE = "patient_view_baseline_mri_due_after_adjuvant_imrt"
FOLLOW_UP = "patient_view_follow_up_mri_overdue_after_indeterminate_report"


def _evaluate(engine: CdsEngine, body: dict[str, Any]) -> Outcome:
    return engine.evaluate(VIEW_SERVICE_ID, body, today=TODAY)


def _resources(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    resources: list[dict[str, Any]] = [e["resource"] for e in body["prefetch"][key]["entry"]]
    return resources


def _add(body: dict[str, Any], key: str, resource: dict[str, Any]) -> None:
    bundle = body["prefetch"][key]
    bundle.setdefault("entry", []).append({"resource": resource})
    bundle["total"] = len(bundle["entry"])


def _imrt(body: dict[str, Any]) -> dict[str, Any]:
    return next(p for p in _resources(body, "procedures") if p["id"] == "imrt")


def _mri_order(body: dict[str, Any], status: str) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "id": "mri-ordered",
        "status": status,
        "intent": "order",
        "code": {
            "coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "70543"}],
            "text": "MRI ORBITS FACE NECK W WO CONTRAST",
        },
        "subject": {"reference": f"Patient/{body['context']['patientId']}"},
        "authoredOn": "2026-11-17",
    }


def test_span_reads_a_date_as_every_day_it_can_mean() -> None:
    assert span(PartialDate("2026", date(2026, 1, 1))) == (date(2026, 1, 1), date(2026, 12, 31))
    assert span(PartialDate("2024-02", date(2024, 2, 1))) == (date(2024, 2, 1), date(2024, 2, 29))
    assert span(PartialDate("2026-08-25", date(2026, 8, 25))) == (
        date(2026, 8, 25),
        date(2026, 8, 25),
    )


def test_the_baseline_card_is_one_info_card_creating_the_full_protocol(engine: CdsEngine) -> None:
    outcome = _evaluate(engine, vignette(BASELINE))
    assert outcome.rules == (RuleId.BASELINE_IMAGING_DUE,)
    (card,) = outcome.response.cards
    assert card.indicator == "info"
    assert card.summary == "Baseline post-treatment MRI is due (treatment ended 2026-08-25)"
    (suggestion,) = card.suggestions or []
    (action,) = suggestion.actions
    assert action.type == "create" and action.resource is not None
    order = action.resource
    assert order["status"] == "draft"
    assert order["subject"] == {"reference": "Patient/pt-pv-baseline"}
    assert order["encounter"] == {"reference": "Encounter/enc-1"}
    assert order["requester"] == {"reference": "Practitioner/dr-okafor"}
    assert {c["code"] for c in order["code"]["coding"]} == {"70543", "46310-9"}
    assert order["reasonReference"][0]["reference"] == "Condition/parotid-mec"
    assert order["note"][0]["text"].startswith("Clinical history: treated Mucoepidermoid")
    # issued for the feedback store: the rule, the suggestion, a key and no patient id
    (issued,) = outcome.issued
    assert issued.rule_id == RuleId.BASELINE_IMAGING_DUE and issued.shown
    assert issued.suggestion_kinds == ("add:mri-protocol",)
    assert "pt-pv-baseline" not in issued.order_key


@pytest.mark.parametrize(
    ("end", "card"),
    [
        ("2026-08", True),  # every day of August is 8 weeks to 6 months ago
        ("2026-09", False),  # 30 September would be under 8 weeks (1 September not): unsure
        ("2026", False),  # a year: it may have ended last week or in January
    ],
)
def test_a_partial_end_date_gives_a_card_only_when_every_day_it_means_is_in_the_window(
    engine: CdsEngine, end: str, card: bool
) -> None:
    body = vignette(BASELINE)
    _imrt(body)["performedPeriod"]["end"] = end
    outcome = _evaluate(engine, body)
    assert bool(outcome.response.cards) is card
    if card:
        assert outcome.response.cards[0].summary.endswith(f"(treatment ended {end})")


def test_a_treatment_period_without_an_end_says_nothing(engine: CdsEngine) -> None:
    body = vignette(BASELINE)
    del _imrt(body)["performedPeriod"]["end"]
    assert _evaluate(engine, body).response.cards == []


def test_a_study_that_may_be_since_the_treatment_ended_silences_the_baseline(
    engine: CdsEngine,
) -> None:
    body = vignette(BASELINE)  # IMRT ended 2026-08-25; "2026-08" may be after that
    study = {
        "resourceType": "ImagingStudy",
        "id": "mri-august",
        "status": "available",
        "subject": {"reference": "Patient/pt-pv-baseline"},
        "started": "2026-08",
        "description": "MRI ORBITS FACE NECK W WO CONTRAST",
    }
    _add(body, "imagingStudies", study)
    assert _evaluate(engine, body).response.cards == []
    study["started"] = "2026-07"  # during radiotherapy: not a post-treatment study
    assert _evaluate(engine, body).rules == (RuleId.BASELINE_IMAGING_DUE,)


@pytest.mark.parametrize(
    ("status", "card"),
    [("draft", False), ("active", False), ("on-hold", False), ("revoked", True)],
)
def test_a_pending_order_silences_the_card_and_a_revoked_one_does_not(
    engine: CdsEngine, status: str, card: bool
) -> None:
    body = vignette(BASELINE)
    _add(body, "serviceRequests", _mri_order(body, status))
    assert bool(_evaluate(engine, body).response.cards) is card


def test_a_completed_order_since_treatment_is_imaging_done(engine: CdsEngine) -> None:
    body = vignette(BASELINE)
    _add(body, "serviceRequests", _mri_order(body, "completed"))
    assert _evaluate(engine, body).response.cards == []


def test_the_follow_up_card_names_the_report_and_its_category(engine: CdsEngine) -> None:
    outcome = _evaluate(engine, vignette(FOLLOW_UP))
    (card,) = outcome.response.cards
    assert card.indicator == "info"
    assert card.summary == "Follow-up MRI after the indeterminate MRI of 2026-09-01 is due"
    assert "(NI-RADS 2b)" in (card.detail or "")


@pytest.mark.parametrize(
    ("conclusion", "card"),
    [
        ("NI-RADS: Primary 1, Neck 2. Indeterminate level II node.", True),  # neck 2: follow-up
        ("Indeterminate enhancement; recurrence cannot be excluded.", True),  # wording
        ("NI-RADS 3. Enlarging enhancing nodule.", False),  # high suspicion: biopsy, not MRI
        ("NI-RADS 2a. Superficial mucosal enhancement.", False),  # direct inspection
        ("NI-RADS 1. Expected post-treatment changes.", False),  # routine surveillance
    ],
)
def test_only_an_indeterminate_report_asks_for_the_follow_up(
    engine: CdsEngine, conclusion: str, card: bool
) -> None:
    body = vignette(FOLLOW_UP)
    report = next(r for r in _resources(body, "diagnosticReports") if r["id"] == "mri-report-ind")
    report["conclusion"] = conclusion
    outcome = _evaluate(engine, body)
    assert outcome.rules == ((RuleId.FOLLOW_UP_IMAGING_OVERDUE,) if card else ())


def test_a_later_study_or_a_long_past_report_silences_the_follow_up(engine: CdsEngine) -> None:
    body = vignette(FOLLOW_UP)
    _add(
        body,
        "imagingStudies",
        {
            "resourceType": "ImagingStudy",
            "id": "pet-later",
            "status": "available",
            "subject": {"reference": "Patient/pt-pv-follow-up"},
            "started": "2026-10-20",
            "description": "PET/CT SKULL BASE TO MID-THIGH",
        },
    )
    assert _evaluate(engine, body).response.cards == []
    body = vignette(FOLLOW_UP)
    report = next(r for r in _resources(body, "diagnosticReports") if r["id"] == "mri-report-ind")
    report["effectiveDateTime"] = "2026-04-20"  # 7 months: past the 6-month horizon
    assert _evaluate(engine, body).response.cards == []


def test_a_recurrence_on_record_is_restaging_not_surveillance(engine: CdsEngine) -> None:
    body = vignette(BASELINE)
    cancer = next(c for c in _resources(body, "conditions") if c["id"] == "parotid-mec")
    cancer["clinicalStatus"]["coding"][0]["code"] = "recurrence"
    assert _evaluate(engine, body).response.cards == []


def test_site_rule_modes_apply() -> None:
    knowledge = load_knowledge()
    rule = RuleId.BASELINE_IMAGING_DUE
    silent = CdsEngine(knowledge, site=replace(NO_SITE, rule_modes={rule: "silent"}))
    outcome = silent.evaluate(VIEW_SERVICE_ID, vignette(BASELINE), today=TODAY)
    assert outcome.response.cards == [] and outcome.silent_rules == (rule,)
    assert [i.shown for i in outcome.issued] == [False]  # recorded, not shown
    off = CdsEngine(knowledge, site=replace(NO_SITE, rule_modes={rule: "off"}))
    outcome = off.evaluate(VIEW_SERVICE_ID, vignette(BASELINE), today=TODAY)
    assert outcome.response.cards == [] and outcome.issued == ()


def test_patient_view_never_warns_and_never_shows_two_cards(
    engine: CdsEngine, sequential_uuids: Callable[[], str]
) -> None:
    views = [n for n, o in expected_outcomes().items() if o["service"] == VIEW_SERVICE_ID]
    assert len(views) >= 10
    shown = 0
    for name in views:
        cards = engine.evaluate(VIEW_SERVICE_ID, vignette(name), sequential_uuids, TODAY)
        assert len(cards.response.cards) <= 1, name
        assert all(c.indicator == "info" for c in cards.response.cards), name
        shown += len(cards.response.cards)
    assert shown >= 3


def test_a_patient_view_request_needs_no_draft_orders_and_a_patient(client: FlaskClient) -> None:
    body = vignette(BASELINE)
    assert "draftOrders" not in body["context"]
    assert client.post(f"/cds-services/{VIEW_SERVICE_ID}", json=body).status_code == 200
    del body["context"]["patientId"]
    response = client.post(f"/cds-services/{VIEW_SERVICE_ID}", json=body)
    assert response.status_code == 400
    assert body_of(response)["field"] == "context.patientId"


def test_an_order_hook_request_is_refused_by_the_patient_view_service(
    client: FlaskClient,
) -> None:
    body = vignette("parotid_mec_after_parotidectomy_and_imrt_local_mri_neck")
    response = client.post(f"/cds-services/{VIEW_SERVICE_ID}", json=body)
    assert response.status_code == 400
    assert body_of(response)["field"] == "hook"


def test_missing_imaging_data_is_a_412_not_a_card(client: FlaskClient) -> None:
    """Without the imaging history the service cannot know that nothing was done."""
    body = vignette(BASELINE)
    del body["prefetch"]["imagingStudies"]
    del body["fhirServer"]
    response = client.post(f"/cds-services/{VIEW_SERVICE_ID}", json=body)
    assert response.status_code == 412
    assert "imagingStudies" in json.dumps(body_of(response))


def test_the_created_order_carries_the_sites_orderable_first() -> None:
    engine = site_engine(SITE)
    outcome = engine.evaluate(VIEW_SERVICE_ID, vignette(BASELINE), today=TODAY)
    (card,) = outcome.response.cards
    (suggestion,) = card.suggestions or []
    coding = (suggestion.actions[0].resource or {})["code"]["coding"]
    assert coding[0]["system"].startswith("http://example.org")  # the site's orderable
    assert {c["code"] for c in coding[1:]} >= {"70543", "46310-9"}
