"""Card contract (CDS Hooks 2.0 card, suggestion, action rules) on a whole response."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from fhir.resources.R4B.servicerequest import ServiceRequest
from flask import Flask

from cds_service.cards.rules import RULES
from cds_service.contract.errors import CdsError
from cds_service.engine import CdsEngine
from cds_service.knowledge.clients import ClientChoice, PamaPlacement
from cds_service.knowledge.site import Site, SiteCatalogue
from tests.conftest import (
    SERVICE_ID,
    SIGN_SERVICE_ID,
    default_engine,
    expected_outcomes,
    vignette,
    walk,
)

OUTCOMES = expected_outcomes()
PAMA_SYSTEM = "http://fhir.org/argonaut/CodeSystem/pama-rating"
POSITIVE = [name for name, o in OUTCOMES.items() if o["cards"]]


def _cards(engine: CdsEngine, name: str, uuids: Callable[[], str]) -> list[dict[str, Any]]:
    service = OUTCOMES.get(name, {}).get("service", SERVICE_ID)
    response = engine.evaluate(service, vignette(name), uuids).response.to_json()
    cards: list[dict[str, Any]] = response["cards"]
    return cards


def test_every_card_meets_the_card_rules(
    engine: CdsEngine, sequential_uuids: Callable[[], str]
) -> None:
    seen_uuids: set[str] = set()
    for name in POSITIVE:
        for card in _cards(engine, name, sequential_uuids):
            assert len(card["summary"]) < 140
            assert card["indicator"] in ("info", "warning")
            assert card["source"]["label"] and card["source"]["url"].startswith("https://")
            assert card["source"]["topic"]["code"] == "post-treatment-salivary-imaging"
            suggestions = card.get("suggestions", [])
            # No suggestion at all only where nothing is safe to click (contrast and implant),
            # or where the next step is not an order (tissue confirmation, restaging).
            assert suggestions or "radiology" in card["summary"] or "next steps" in card["summary"]
            assert ("selectionBehavior" in card) is bool(suggestions)
            assert card.get("selectionBehavior", "any") in ("at-most-one", "any")
            assert all(reason["display"] for reason in card["overrideReasons"])
            uuids = [card["uuid"], *(s["uuid"] for s in suggestions)]
            assert not seen_uuids & set(uuids)
            seen_uuids.update(uuids)
            for path, value in walk(card):
                assert value is not None, path
                assert value not in ("", [], {}), path


PUBLIC_URL = "https://cds.example.org"


def _guidance(engine: CdsEngine, card: dict[str, Any]) -> str:
    """The guidance page a card links to, as the service serves it."""
    [link] = card["links"]
    assert link["type"] == "absolute" and link["url"].startswith(PUBLIC_URL + "/guidance/")
    page = engine.guidance.get(link["url"].removeprefix(PUBLIC_URL))
    assert page is not None, link["url"]
    return page.html


def test_detail_says_why(engine: CdsEngine, sequential_uuids: Callable[[], str]) -> None:
    body = vignette("parotid_mec_after_parotidectomy_and_imrt_local_mri_neck")
    response = engine.evaluate(SERVICE_ID, body, sequential_uuids, guidance_base=PUBLIC_URL)
    card = response.response.to_json()["cards"][0]
    detail = card["detail"]
    assert "may not cover the face and orbits/skull base" in detail
    # The explanation is on the rule's guidance page, one click away.
    page = _guidance(engine, card)
    for phrase in ("scar", "recurrence", "perineural spread", "CN VII", "CN V", "skull base"):
        assert phrase in page
    assert (
        "Mucoepidermoid carcinoma of left parotid gland (ICD-10-CM C07), diagnosed 2024-02-06"
        in detail
    )
    assert "Left superficial parotidectomy (CPT 42415), 2024-03-12" in detail
    assert "2024-04-22 to 2024-06-03" in detail


#: What a clinician can take in at a glance in an EHR's card pane: a bound, not a style guide
#: (tests/test_browser.py checks the buttons are above the fold as the sandbox lays cards out).
MAX_DETAIL_CHARACTERS = 1100
MAX_BUTTONS = 2
MAX_HISTORY_CHOICES = 5
MAX_LEAD_CHARACTERS = 220


def test_every_card_leads_with_one_sentence_of_why_then_the_comparison_then_the_patient(
    engine: CdsEngine, sequential_uuids: Callable[[], str]
) -> None:
    for name in POSITIVE:
        if OUTCOMES[name]["service"].endswith("patient-view"):
            continue  # about no order: its card says what is due (tests/test_due_imaging.py)
        for card in _cards(engine, name, sequential_uuids):
            detail = card["detail"]
            lead = detail.split("\n\n")[0]
            assert len(lead) <= MAX_LEAD_CHARACTERS, (name, lead)
            history = card["summary"].startswith("Add the clinical history")
            sentences = 1 if not history else 2  # the history card: what is missing, and why
            assert lead.count(". ") == sentences - 1 and lead.endswith("."), (name, lead)
            paragraphs = detail.split("\n\n")
            assert paragraphs[-1].startswith("**Why this patient:**"), name
            assert paragraphs[-1].count("\n") == 0, name  # one line
            tables = [p for p in paragraphs if p.startswith("| Study | ACR |")]
            if history:
                assert tables == [], name  # no table: the card is about the reason, not the study
            else:
                [table] = tables
                rows = table.split("\n")[2:]
                assert rows[0].startswith("| Ordered: **"), name
                assert len(rows) <= 2, name
                assert bool(card.get("suggestions")) <= (len(rows) == 2) or all(
                    s["label"].startswith("Add the cancer diagnosis") for s in card["suggestions"]
                ), name
            shown = re.sub(r"\\(.)", r"\1", detail)  # as read: record text is escaped markdown
            assert len(shown) <= MAX_DETAIL_CHARACTERS, (name, len(shown))
            # The history card's buttons are the reasons for the exam, one click each.
            history = card["summary"].startswith("Add the clinical history")
            limit = MAX_HISTORY_CHOICES if history else MAX_BUTTONS
            assert len(card.get("suggestions", [])) <= limit, name


def test_every_card_links_its_guidance_page_on_the_service(
    engine: CdsEngine, sequential_uuids: Callable[[], str]
) -> None:
    for name in POSITIVE:
        service = OUTCOMES[name]["service"]
        outcome = engine.evaluate(
            service, vignette(name), sequential_uuids, guidance_base=PUBLIC_URL
        )
        cards = outcome.response.to_json()["cards"]
        for rule, card in zip(outcome.rules, cards, strict=True):
            page = _guidance(engine, card)
            assert card["links"][0]["url"].startswith(f"{PUBLIC_URL}/guidance/{rule}"), name
            summaries = (engine.knowledge.cards.rules[rule].summary, card["summary"])
            assert any(html.escape(summary) in page for summary in summaries), name
            assert card["source"]["url"] == "https://doi.org/10.1016/j.jacr.2023.08.008"


def test_without_a_public_url_cards_link_the_published_guidance(
    engine: CdsEngine, sequential_uuids: Callable[[], str]
) -> None:
    for name in POSITIVE:
        for card in _cards(engine, name, sequential_uuids):
            assert card["links"] == [
                {
                    "label": "Read the ACR Appropriateness Criteria (J Am Coll Radiol 2023)",
                    "url": "https://doi.org/10.1016/j.jacr.2023.08.008",
                    "type": "absolute",
                }
            ]
            assert card["source"]["url"] == "https://doi.org/10.1016/j.jacr.2023.08.008"


def test_wording_stays_within_what_the_guidance_says(
    engine: CdsEngine, sequential_uuids: Callable[[], str]
) -> None:
    mri = _cards(
        engine, "parotid_mec_after_parotidectomy_and_imrt_local_mri_neck", sequential_uuids
    )
    assert "may not cover the face and orbits/skull base" in mri[0]["detail"]
    assert "does not cover" not in mri[0]["detail"]
    us = _cards(engine, "treated_parotid_cancer_us_neck", sequential_uuids)[0]
    assert "is limited for assessing the deep tissues" in us["detail"]
    assert "cannot assess" not in us["detail"] + us["summary"]


def test_treatments_are_named_as_clinicians_name_them(
    engine: CdsEngine, sequential_uuids: Callable[[], str]
) -> None:
    """A Procedure coded only by CPT is named by the knowledge's short clinical name in the
    evidence and in the order's history note; the record's own text wins where it has one."""
    card = _cards(engine, "treated_parotid_cancer_ct_neck_without_contrast", sequential_uuids)[0]
    assert "Superficial parotidectomy, facial nerve preserved (CPT 42415)" in card["detail"]
    assert "Excision of parotid tumor" not in card["detail"]
    quirks = _cards(engine, "parotid_cancer_cpt_70540_without_contrast", sequential_uuids)[0]
    note = _replacement(quirks)["note"][-1]["text"]
    assert "Treatment: Superficial parotidectomy, facial nerve preserved, 2023-02-14." in note
    pet = _cards(engine, "pet_ct_six_weeks_after_radiotherapy", sequential_uuids)[0]
    assert "IMRT (CPT 77386)" in pet["detail"] and "when performed" not in pet["detail"]
    mec = _cards(
        engine, "parotid_mec_after_parotidectomy_and_imrt_local_mri_neck", sequential_uuids
    )
    assert "Left superficial parotidectomy (CPT 42415)" in mec[0]["detail"]


def test_contrast_detail_names_both_sequences(
    engine: CdsEngine, sequential_uuids: Callable[[], str]
) -> None:
    outcome = engine.for_client("sandbox").evaluate(  # the profile that returns PAMA ratings
        SERVICE_ID,
        vignette("parotid_cancer_cpt_70540_without_contrast"),
        sequential_uuids,
        guidance_base=PUBLIC_URL,
    )
    card = outcome.response.to_json()["cards"][0]
    assert card["links"][0]["url"].endswith("/guidance/incomplete-mri-protocol/without")
    page = _guidance(engine, card)
    assert "non-contrast T1-weighted" in page and "post-contrast" in page
    assert "may not include the dedicated thin-section images" not in page  # the regions'
    # The rating, the table and the card agree: CPT 70540 is not-appropriate while it warns.
    assert "Not rated as ordered (one contrast phase only)" in card["detail"]
    [rating] = outcome.response.to_json()["systemActions"]
    assert _pama(rating["resource"]) == "not-appropriate"


def delete_create_engine() -> CdsEngine:
    """The engine for a client that applies a replacement as delete + create."""
    return CdsEngine(
        default_engine().knowledge,
        site=Site(None, SiteCatalogue(), {}, "", ClientChoice(replacementStyle="delete-create")),
    )


def sandbox_engine() -> CdsEngine:
    """The engine for the CDS Hooks sandbox's profile: PAMA ratings on (a demo)."""
    return default_engine().for_client("sandbox")


def _replacement(card: dict[str, Any]) -> dict[str, Any]:
    """The resource the first suggestion (a replacement) leaves: updated or created."""
    action = next(a for a in card["suggestions"][0]["actions"] if a["type"] != "delete")
    resource: dict[str, Any] = action["resource"]
    return resource


def test_replacement_is_an_update_of_the_selected_draft_to_the_full_protocol(
    engine: CdsEngine, sequential_uuids: Callable[[], str]
) -> None:
    body = vignette("parotid_mec_after_parotidectomy_and_imrt_local_mri_neck")
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    card = engine.evaluate(SERVICE_ID, body, sequential_uuids).response.to_json()["cards"][0]
    assert all(_pama(a["resource"]) is None for s in card["suggestions"] for a in s["actions"])
    engine = sandbox_engine()  # PAMA ratings on: the sandbox's PAMA screen
    card = engine.evaluate(SERVICE_ID, body, sequential_uuids).response.to_json()["cards"][0]
    suggestion = card["suggestions"][0]
    assert suggestion["isRecommended"] is True
    [update] = suggestion["actions"]
    assert update["type"] == "update"
    updated = update["resource"]
    ServiceRequest.model_validate(updated)
    # the same draft, its code, text and reasons changed; everything else kept
    for kept in ("id", "status", "intent", "subject", "requester", "encounter", "authoredOn"):
        assert updated[kept] == draft[kept], kept
    assert updated["code"]["text"] == "MRI orbits face neck without and with IV contrast"
    assert [c["code"] for c in updated["code"]["coding"]] == ["70543", "46310-9"]
    assert updated["reasonReference"][0]["reference"] == "Condition/parotid-mec"
    assert updated["reasonCode"][0]["coding"][0]["code"] == "C07"
    # the draft had no CPT code; as updated it has one, so it carries its rating
    assert _pama(updated) == "appropriate"


def test_delete_create_clients_get_a_delete_and_a_new_order(
    sequential_uuids: Callable[[], str],
) -> None:
    body = vignette("parotid_mec_after_parotidectomy_and_imrt_local_mri_neck")
    card = delete_create_engine().evaluate(SERVICE_ID, body, sequential_uuids)
    suggestion = card.response.to_json()["cards"][0]["suggestions"][0]
    delete, create = suggestion["actions"]
    assert delete["type"] == "delete" and delete["resourceId"] == "ServiceRequest/mri-neck-1"
    assert "resource" not in delete
    created = create["resource"]
    ServiceRequest.model_validate(created)
    assert created["status"] == "draft" and created["intent"] == "order"
    assert created["code"]["text"] == "MRI orbits face neck without and with IV contrast"
    assert created["code"]["coding"][0]["code"] == "70543"
    assert created["subject"] == {"reference": "Patient/pt-parotid-mec"}
    assert created["encounter"] == {"reference": "Encounter/enc-1"}
    assert created["requester"] == {"reference": "Practitioner/dr-okafor"}
    assert created["reasonReference"][0]["reference"] == "Condition/parotid-mec"
    assert created["reasonCode"][0]["coding"][0]["code"] == "C07"
    assert "extension" not in created  # a created order is not rated: only updates are


def test_replacement_keeps_the_clinicians_reason_and_priority(
    engine: CdsEngine, sequential_uuids: Callable[[], str]
) -> None:
    body = vignette("parotid_mec_after_parotidectomy_and_imrt_local_mri_neck")
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    draft["priority"] = "urgent"
    draft["note"] = [{"text": "New deep ache and firmness at the left parotid bed"}]
    draft["reasonReference"] = [{"reference": "Condition/htn"}]
    for each in (engine, delete_create_engine()):
        card = each.evaluate(SERVICE_ID, body, sequential_uuids).response.to_json()["cards"][0]
        replaced = _replacement(card)
        assert replaced["priority"] == "urgent"
        assert replaced["note"] == draft["note"]
        assert [r["reference"] for r in replaced["reasonReference"]] == [
            "Condition/htn",
            "Condition/parotid-mec",
        ]


def test_a_created_order_keeps_the_drafts_intent_and_category(
    sequential_uuids: Callable[[], str],
) -> None:
    imaging = {
        "coding": [{"system": "http://snomed.info/sct", "code": "363679005", "display": "Imaging"}]
    }
    for name in (
        "parotid_mec_after_parotidectomy_and_imrt_local_mri_neck",
        "treated_parotid_cancer_us_neck",
    ):
        body = vignette(name)
        draft = body["context"]["draftOrders"]["entry"][0]["resource"]
        draft["intent"] = "original-order"
        draft["category"] = [imaging]
        for each in (default_engine(), delete_create_engine()):
            card = each.evaluate(SERVICE_ID, body, sequential_uuids).response.to_json()["cards"][0]
            created = _replacement(card)
            ServiceRequest.model_validate(created)
            assert created["intent"] == "original-order", name
            assert created["category"] == [imaging], name


def test_a_created_order_without_a_usable_intent_is_an_order(
    sequential_uuids: Callable[[], str],
) -> None:
    body = vignette("treated_parotid_cancer_us_neck")
    body["context"]["draftOrders"]["entry"][0]["resource"]["intent"] = "wish"
    response = default_engine().evaluate(SERVICE_ID, body, sequential_uuids).response.to_json()
    for card in response["cards"]:
        for suggestion in card.get("suggestions", []):
            for action in suggestion["actions"]:
                if action["type"] == "create":
                    assert action["resource"]["intent"] == "order"


def test_requester_falls_back_to_the_user_and_encounter_to_the_context(
    sequential_uuids: Callable[[], str],
) -> None:
    body = vignette("client_quirks_no_intent_empty_coding_stray_selection")
    response = delete_create_engine().evaluate(SERVICE_ID, body, sequential_uuids).response
    created = _replacement(response.to_json()["cards"][0])
    assert created["requester"] == {"reference": "Practitioner/dr-okafor"}
    assert created["encounter"] == {"reference": "Encounter/enc-1"}


def _pama(resource: dict[str, Any]) -> str | None:
    ratings = [
        c["code"]
        for e in resource.get("extension", [])
        if e["url"] == "http://fhir.org/argonaut/Extension/pama-rating"
        for c in e["valueCodeableConcept"]["coding"]
    ]
    assert len(ratings) <= 1
    return ratings[0] if ratings else None


def test_whole_response_is_deterministic_with_injected_uuids(engine: CdsEngine) -> None:
    def first() -> str:
        return "00000000-0000-4000-8000-000000000001"

    name = "parotid_carcinoma_snomed_only_loinc_mri_neck"
    one = engine.evaluate(SERVICE_ID, vignette(name), first).response.to_json()
    two = engine.evaluate(SERVICE_ID, vignette(name), first).response.to_json()
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)
    assert one["cards"][0]["uuid"] == "00000000-0000-4000-8000-000000000001"


def test_order_names_are_escaped_in_markdown(
    engine: CdsEngine, sequential_uuids: Callable[[], str]
) -> None:
    body = vignette("parotid_mec_after_parotidectomy_and_imrt_local_mri_neck")
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    draft["code"]["text"] = "MRI NECK W WO *STAT* [see note](javascript:alert(1))"
    card = engine.evaluate(SERVICE_ID, body, sequential_uuids).response.to_json()["cards"][0]
    assert "\\*STAT\\*" in card["detail"]
    assert "[see note](" not in card["detail"]


def _first_card(
    engine: CdsEngine, body: dict[str, Any], service: str = SERVICE_ID
) -> dict[str, Any]:
    cards: list[dict[str, Any]] = engine.evaluate(service, body).response.to_json()["cards"]
    return cards[0]


def test_history_note_carries_histology_treatment_dates_and_prior(engine: CdsEngine) -> None:
    body = vignette("full_protocol_without_clinical_history_prior_mri")
    card = _first_card(engine, body, SIGN_SERVICE_ID)
    # The reason for the exam, as one-click choices: each an update of the draft.
    labels = [s["label"] for s in card["suggestions"]]
    assert labels == [  # the symptoms first
        "Add history, reason: New pain at or near the treated site",
        "Add history, reason: New palpable mass or firmness",
        "Add history, reason: New facial nerve weakness",
        "Add history, reason: Other new focal neurologic deficit",
        "Add history, reason: Routine surveillance after treatment, no new symptom",
    ]
    suggestion = card["suggestions"][1]
    [action] = suggestion["actions"]
    assert action["type"] == "update"
    updated = action["resource"]
    assert updated["reasonCode"][-1] == {
        "coding": [
            {
                "system": "urn:salivary-imaging-cds:clinical-concern",
                "code": "palpable-mass",
                "display": "New palpable mass or firmness",
            }
        ],
        "text": "New palpable mass or firmness",
    }
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    assert updated["id"] == draft["id"] and updated["code"] == draft["code"]
    assert updated["reasonReference"] == [
        {
            "reference": "Condition/parotid-acc",
            "display": "Adenoid cystic carcinoma of right parotid gland",
        }
    ]
    note = updated["note"][-1]["text"]
    assert (
        "Adenoid cystic carcinoma of right parotid gland (ICD-10-CM C07), diagnosed 2022-03-01"
        in note
    )
    assert "2022-05-09 to 2022-06-20" in note
    assert "MRI ORBITS FACE NECK W WO CONTRAST (2025-11-02)" in note
    assert "Adenoid cystic carcinoma: perineural spread is its hallmark" in note
    ServiceRequest.model_validate(updated)


def test_replacement_of_an_order_without_reason_carries_the_history(engine: CdsEngine) -> None:
    card = _first_card(engine, vignette("parotid_mec_after_parotidectomy_and_imrt_local_mri_neck"))
    created = _replacement(card)
    assert "Clinical history: treated Mucoepidermoid carcinoma" in created["note"][-1]["text"]
    assert card["selectionBehavior"] == "at-most-one"  # replace, or keep and add the history


def test_an_order_with_a_reason_gets_no_history_note(engine: CdsEngine) -> None:
    card = _first_card(engine, vignette("treated_parotid_cancer_pacemaker_mri_selected"))
    created = _replacement(card)
    assert "note" not in created
    assert created["code"]["text"] == "CT neck with IV contrast"
    assert created["code"]["coding"][0]["code"] == "70491"


def test_compatible_suggestions_may_all_be_taken(engine: CdsEngine) -> None:
    body = vignette("treated_parotid_cancer_us_neck")
    del body["context"]["draftOrders"]["entry"][0]["resource"]["reasonReference"]
    card = _first_card(engine, body)
    kinds = [[a["type"] for a in s["actions"]] for s in card["suggestions"]]
    assert kinds == [["create"], ["update"]]
    assert card["selectionBehavior"] == "any"


def test_pet_deferral_sets_the_date(engine: CdsEngine) -> None:
    card = _first_card(engine, vignette("pet_ct_six_weeks_after_radiotherapy"))
    defer = card["suggestions"][0]["actions"][0]
    assert defer["type"] == "update"
    assert defer["resource"]["occurrenceDateTime"] == "2027-01-05"
    # The MRI for a specific concern is added beside the deferred PET/CT, not swapped in:
    # both can be taken.
    [add] = card["suggestions"][1]["actions"]
    assert add["type"] == "create" and add["resource"]["code"]["coding"][0]["code"] == "70543"
    assert card["suggestions"][1]["label"].startswith("Add MRI orbits face neck")
    assert card["selectionBehavior"] == "any"
    assert (
        "| Recommended: FDG-PET/CT skull base to mid-thigh, on or after 2027-01-05 |"
        in card["detail"]
    )


def test_one_card_per_selected_order(engine: CdsEngine) -> None:
    body = vignette("parotid_mec_after_parotidectomy_and_imrt_local_mri_neck")
    entries = body["context"]["draftOrders"]["entry"]
    twin = json.loads(json.dumps(entries[0]))
    twin["resource"]["id"] = "mri-neck-2"
    entries.append(twin)
    body["context"]["selections"].append("ServiceRequest/mri-neck-2")
    cards = engine.evaluate(SERVICE_ID, body).response.to_json()["cards"]
    targets = [c["suggestions"][0]["actions"][0]["resource"]["id"] for c in cards]
    assert targets == ["mri-neck-1", "mri-neck-2"]


def test_the_comparison_shows_the_ordered_row_and_the_recommended_one(
    engine: CdsEngine,
) -> None:
    card = _first_card(engine, vignette("treated_parotid_cancer_ct_neck_without_contrast"))
    recommended = next(s for s in card["suggestions"] if s.get("isRecommended"))
    assert recommended["label"] == "Replace with MRI orbits face neck without and with IV contrast"
    rows = card["detail"].split("| Study | ACR | Radiation |")[1].split("\n")[2:4]
    assert rows[0].startswith("| Ordered: **") and "Not rated for this scenario" in rows[0]
    assert rows[0].endswith("| ☢ (not rated) |")
    assert rows[1] == (
        "| Recommended: MRI orbits face neck without and with IV contrast"
        " | Usually Appropriate | none |"
    )


def test_unstated_contrast_recommends_what_its_summary_asks(engine: CdsEngine) -> None:
    body = vignette("treated_parotid_cancer_ct_neck_with_contrast")
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    draft["code"] = {"text": "CT SOFT TISSUE NECK"}  # no CPT, no contrast said
    card = _first_card(engine, body)
    assert card["summary"].startswith("Say 'with IV contrast'")
    [recommended] = [s for s in card["suggestions"] if s.get("isRecommended")]
    assert recommended["label"] == "Replace with CT neck with IV contrast"
    assert "| Recommended: CT neck with IV contrast | Usually Appropriate |" in card["detail"]


def test_pama_rating_is_an_update_of_the_draft() -> None:
    engine = sandbox_engine()
    body = vignette("treated_parotid_cancer_ct_neck_with_contrast")
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    draft["extension"] = [
        {
            "url": "http://fhir.org/argonaut/Extension/pama-rating",
            "valueCodeableConcept": {"coding": [{"code": "stale"}]},
        },
        {"url": "http://example.org/other", "valueString": "kept"},
    ]
    response = engine.evaluate(SERVICE_ID, body).response.to_json()
    [action] = response["systemActions"]
    assert action["type"] == "update" and action["description"]
    assert action["resource"]["id"] == "ct-neck"
    assert action["resource"]["extension"] == [
        {"url": "http://example.org/other", "valueString": "kept"},
        {
            "url": "http://fhir.org/argonaut/Extension/pama-rating",
            "valueCodeableConcept": {"coding": [{"system": PAMA_SYSTEM, "code": "appropriate"}]},
        },
    ]
    assert response["extension"]["systemActions"] == response["systemActions"]


def test_no_pama_action_without_a_cpt_code(engine: CdsEngine) -> None:
    response = engine.evaluate(
        SERVICE_ID, vignette("parotid_mec_after_parotidectomy_and_imrt_local_mri_neck")
    ).response.to_json()
    assert "systemActions" not in response and "extension" not in response


def test_every_suggested_resource_of_every_vignette_is_valid_fhir(engine: CdsEngine) -> None:
    checked = 0
    for name, outcome in OUTCOMES.items():
        response = engine.evaluate(outcome["service"], vignette(name)).response.to_json()
        actions = [
            a for c in response["cards"] for s in c.get("suggestions", []) for a in s["actions"]
        ]
        actions += response.get("systemActions", [])
        for action in actions:
            if "resource" in action:
                ServiceRequest.model_validate(action["resource"])
                checked += 1
    assert checked >= 30


# --- what the CDS Hooks sandbox's PAMA screen needs (it applies only updates) ---------------


def _updates(response: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        a
        for c in response["cards"]
        for s in c.get("suggestions", [])
        for a in s["actions"]
        if a["type"] == "update"
    ]


@pytest.mark.parametrize("service", [SERVICE_ID, SIGN_SERVICE_ID])
def test_every_update_of_a_cpt_coded_order_carries_its_rating_and_coded_reasons(
    service: str,
) -> None:
    """The sandbox destructures the rating and maps reasonCode of every update it applies, on
    its PAMA screen's order-select and order-sign alike (its profile puts ratings on both)."""
    engine = sandbox_engine()
    checked = 0
    for name in OUTCOMES:
        body = vignette(name)
        body["hook"] = engine.service(service).hook
        try:
            response = engine.evaluate(service, body).response.to_json()
        except CdsError:
            continue
        for action in _updates(response):
            resource = action["resource"]
            assert resource["reasonCode"] and all(r["coding"] for r in resource["reasonCode"])
            cpt = [c for c in resource["code"].get("coding", []) if c["system"].endswith("/cpt")]
            if cpt:
                assert _pama(resource) is not None, name
                checked += 1
    assert checked >= 10


def test_the_rating_of_an_update_is_that_of_the_order_as_updated() -> None:
    response = (
        sandbox_engine()
        .evaluate(SERVICE_ID, vignette("pet_ct_six_weeks_after_radiotherapy"))
        .response.to_json()
    )
    [system] = response["systemActions"]
    assert _pama(system["resource"]) == "not-appropriate"  # agrees with the card's warning
    defer, mri = response["cards"][0]["suggestions"]
    assert _pama(defer["actions"][0]["resource"]) == "appropriate"  # no longer too early
    assert mri["actions"][0]["type"] == "create"  # an added order: rated when selected
    assert "not this soon after radiotherapy" in response["cards"][0]["detail"]  # the table agrees


def test_the_history_card_has_no_table_and_a_cpt_70543_order_is_rated_by_its_code(
    engine: CdsEngine,
) -> None:
    body = vignette("parotid_cancer_cpt_70543_only")
    del body["context"]["draftOrders"]["entry"][0]["resource"]["reasonReference"]
    body["hook"] = "order-sign"
    card = _first_card(engine, body, SIGN_SERVICE_ID)  # the history card, at signing
    assert "| Study |" not in card["detail"]
    body = vignette("parotid_cancer_cpt_70543_only")
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    draft["code"]["text"] = "MRI NECK W WO CONTRAST"  # a 70543 orderable named for the neck
    card = _first_card(engine, body)
    assert "| Usually Appropriate (as CPT 70543) | none |" in card["detail"]


@pytest.mark.parametrize("profile", ["generic", "epic", "oracle"])
def test_pama_is_off_but_for_the_sandbox(engine: CdsEngine, profile: str) -> None:
    """The AUC program is rescinded (README): no rating anywhere, for every client but the
    sandbox's demo."""
    for service in (SERVICE_ID, SIGN_SERVICE_ID):
        body = vignette("pet_ct_six_weeks_after_radiotherapy")
        body["hook"] = engine.service(service).hook
        response = engine.for_client(profile).evaluate(service, body).response.to_json()
        assert "systemActions" not in response and "extension" not in response
        actions = [
            a for c in response["cards"] for s in c.get("suggestions", []) for a in s["actions"]
        ]
        assert actions and all(_pama(a.get("resource", {})) is None for a in actions)


def test_a_site_switches_pama_on_in_its_client_file() -> None:
    """How a site that still wants ratings gets them: client.json overrides the profile's pama."""
    pama = PamaPlacement(systemActionsAt=("order-select",), where=("systemActions",))
    rated = CdsEngine(
        default_engine().knowledge,
        site=Site(None, SiteCatalogue(), {}, "", ClientChoice(pama=pama)),
    )
    response = rated.evaluate(
        SERVICE_ID, vignette("pet_ct_six_weeks_after_radiotherapy")
    ).response.to_json()
    [system] = response["systemActions"]
    assert _pama(system["resource"]) == "not-appropriate"
    assert "extension" not in response  # only where asked
    assert all(_pama(a["resource"]) is None for a in _updates(response))  # onUpdatesAt empty


def _reasons(engine: CdsEngine, name: str) -> list[str]:
    return [r["code"] for r in _first_card(engine, vignette(name))["overrideReasons"]]


def test_override_reasons_fit_the_problem_the_card_names(engine: CdsEngine) -> None:
    contrast_only = _reasons(engine, "parotid_cancer_mri_orbits_face_neck_with_contrast_only")
    assert "non-contrast-in-protocol" in contrast_only
    # the regions are complete and the order already has contrast: neither reason fits
    assert "protocol-confirmed-by-radiology" not in contrast_only
    assert "gadolinium-contraindicated" not in contrast_only
    neck_only = _reasons(engine, "parotid_mec_after_parotidectomy_and_imrt_local_mri_neck")
    assert "cannot-tolerate-long-mri" in neck_only
    assert "gadolinium-contraindicated" not in neck_only  # ordered without and with already
    without = _reasons(engine, "parotid_cancer_cpt_70540_without_contrast")
    assert "gadolinium-contraindicated" in without
    assert "suspected-distant-disease" in _reasons(engine, "pet_ct_six_weeks_after_radiotherapy")
    for name in POSITIVE:  # the scope reason is on every card, once
        for card in _cards(engine, name, lambda: "u"):
            codes = [r["code"] for r in card["overrideReasons"]]
            assert codes.count("not-post-treatment-salivary-cancer") == 1
            assert len(codes) == len(set(codes))


def test_json_copy_is_a_deep_copy_of_json_data_whatever_orjson_can_write() -> None:
    from cds_service.fhir.records import json_copy

    original: dict[str, Any] = {"a": [{"b": 1.5, "c": "é", "d": None, "e": True}], "big": 2**70}
    copied = json_copy(original)  # 2**70: past orjson, copied by copy.deepcopy
    assert copied == original
    assert copied["a"][0] is not original["a"][0]
    small = {"a": [{"b": 1}]}
    again = json_copy(small)
    again["a"][0]["b"] = 2
    assert small == {"a": [{"b": 1}]}


@pytest.mark.parametrize("profile", ["epic", "oracle"])
def test_any_only_clients_get_suggestions_that_can_all_be_taken(
    engine: CdsEngine, profile: str
) -> None:
    """A client that knows only selectionBehavior "any" may apply every suggestion of a card:
    at most one of them changes or deletes the draft, and the recommended one is kept."""
    client = engine.for_client(profile)
    checked = 0
    for name, outcome in OUTCOMES.items():
        full = engine.evaluate(outcome["service"], vignette(name)).response.to_json()["cards"]
        cards = client.evaluate(outcome["service"], vignette(name)).response.to_json()["cards"]
        assert [c["summary"] for c in cards] == [c["summary"] for c in full], name
        for card, before in zip(cards, full, strict=True):
            if not card.get("suggestions"):
                continue
            assert card["selectionBehavior"] == "any"
            draft_changes = [
                s
                for s in card["suggestions"]
                if any(a["type"] in ("update", "delete") for a in s["actions"])
            ]
            assert len(draft_changes) <= 1, name
            if any(s["isRecommended"] for s in before["suggestions"]):
                assert card["suggestions"][0]["isRecommended"], name
            checked += 1
    assert checked >= 15


def test_a_reason_the_clinician_picked_is_not_doubled_by_a_replacement(engine: CdsEngine) -> None:
    """The sandbox's reason search codes "Neoplasm of parotid gland" in SNOMED CT; replacing
    the order keeps that one coded reason (no second, ICD-10-CM, reason for the same cancer)
    and refers to the cancer Condition."""
    body = vignette("parotid_mec_after_parotidectomy_and_imrt_local_mri_neck")
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    picked = {
        "coding": [
            {
                "system": "http://snomed.info/sct",
                "code": "126788000",
                "display": "Neoplasm of parotid gland (disorder)",
            }
        ]
    }
    draft["reasonCode"] = [picked]
    card = _first_card(engine, body)
    replaced = _replacement(card)
    assert replaced["reasonCode"] == [picked]
    assert [r["reference"] for r in replaced["reasonReference"]] == ["Condition/parotid-mec"]


def test_no_guidance_page_shows_an_unfilled_placeholder(engine: CdsEngine) -> None:
    """The pages are built from knowledge texts: a text with a placeholder (the adenoid cystic
    line's {nerves}, issue 24) once reached every page as a literal "{nerves}"."""
    for rule, entry in RULES.items():
        for variant in ("default", *entry.reason_variants):
            page = engine.guidance.get(f"/guidance/{rule}/{variant}") or engine.guidance.get(
                f"/guidance/{rule}"
            )
            assert page is not None, rule
            assert re.search(r"\{[a-z_]+\}", page.html) is None, (rule, variant)
    page = engine.guidance.get("/guidance/incomplete-mri-protocol")
    assert page is not None and "trigeminal (CN V) and facial (CN VII) nerves" in page.html


@pytest.mark.parametrize(
    ("host", "link"),
    [
        ("cds.example.org", "http://cds.example.org/guidance/"),
        ("CDS.Example.ORG:8443", "http://cds.example.org:8443/guidance/"),
        ("[::1]:5000", "http://[::1]:5000/guidance/"),
        # an IDN host stays a URI (request.host_url gave "http://bücher.example/")
        ("xn--bcher-kva.example", "http://xn--bcher-kva.example/guidance/"),
        ("bad host", None),
        ("a/b", None),
    ],
)
def test_the_guidance_link_is_built_from_the_request_host(
    app: Flask, host: str, link: str | None
) -> None:
    """Without CDS_PUBLIC_BASE_URL the card links its guidance page under the host the request
    came to; a host that cannot make a link gives the published guidance's link instead (never
    a broken one)."""
    response = app.test_client().post(
        f"/cds-services/{SERVICE_ID}",
        json=vignette("parotid_mec_after_parotidectomy_and_imrt_local_mri_neck"),
        headers={"Host": host},
    )
    assert response.status_code == 200
    [card] = response.get_json()["cards"]
    url = card["links"][0]["url"]
    if link is None:
        assert url == "https://doi.org/10.1016/j.jacr.2023.08.008"
    else:
        assert url.startswith(link)
