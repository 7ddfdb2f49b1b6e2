"""Where the patient stands after treatment: the last report's branch, a recurrence on record,
and what the cards then say. Built on the vignettes, changed one fact at a time."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from cds_service.engine import CdsEngine
from cds_service.knowledge.loader import load_knowledge
from cds_service.knowledge.site import load_site
from tests.conftest import SERVICE_ID, SIGN_SERVICE_ID, vignette


@pytest.fixture(scope="module")
def restaging(tmp_path_factory: pytest.TempPathFactory) -> CdsEngine:
    """A site that switches the recurrence card on for the full MRI protocol too (it ships
    silent there, issue 27): what that card says is tested through it."""
    site = tmp_path_factory.mktemp("site")
    (site / "rules.json").write_text(
        json.dumps({"rules": {"recurrence-restaging:full-protocol": "active"}})
    )
    knowledge = load_knowledge()
    return CdsEngine(knowledge, site=load_site(site, knowledge.imaging.study_keys()))


def _rules(engine: CdsEngine, body: dict[str, Any]) -> list[str]:
    return [str(r) for r in engine.evaluate(SERVICE_ID, body).rules]


def _cards(engine: CdsEngine, body: dict[str, Any]) -> list[dict[str, Any]]:
    cards: list[dict[str, Any]] = engine.evaluate(SERVICE_ID, body).response.to_json()["cards"]
    return cards


def _reports(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in body["prefetch"]["diagnosticReports"]["entry"]]


def _report(rid: str, conclusion: str, effective: str, status: str = "final") -> dict[str, Any]:
    patient = "Patient/pt-pos"
    return {
        "resourceType": "DiagnosticReport",
        "id": rid,
        "status": status,
        "code": {"text": "MRI ORBITS FACE NECK W WO CONTRAST"},
        "subject": {"reference": patient},
        "effectiveDateTime": effective,
        "conclusion": conclusion,
    }


def test_a_later_report_that_says_nothing_clear_silences_an_earlier_positive_one(
    engine: CdsEngine,
) -> None:
    body = vignette("positive_report_new_surveillance_mri")
    assert _rules(engine, body) == ["tissue-confirmation-next"]
    later = _report(
        "mri-report-later", "Postoperative changes of left parotidectomy.", "2026-11-20"
    )
    body["prefetch"]["diagnosticReports"]["entry"].append({"resource": later})
    assert _rules(engine, body) == []  # say less, never more


def test_only_a_final_report_is_read(engine: CdsEngine) -> None:
    body = vignette("positive_report_new_surveillance_mri")
    for status in ("preliminary", "registered", "cancelled", "entered-in-error"):
        _reports(body)[0]["status"] = status
        assert _rules(engine, body) == [], status
    for status in ("final", "amended", "corrected"):
        _reports(body)[0]["status"] = status
        assert _rules(engine, body) == ["tissue-confirmation-next"], status


def test_an_indeterminate_report_asks_for_the_mri_two_to_three_months_later(
    engine: CdsEngine,
) -> None:
    body = vignette("indeterminate_mri_repeat_after_three_weeks")
    [card] = _cards(engine, body)
    assert ", on or after 2027-01-03 |" in card["detail"]  # the comparison's recommended row
    [defer] = card["suggestions"]
    [action] = defer["actions"]
    assert action["type"] == "update"
    assert action["resource"]["occurrenceDateTime"] == "2027-01-03"
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    draft["occurrenceDateTime"] = "2026-12-20"  # seven weeks after the report: no alert
    assert _rules(engine, body) == []


def test_a_positive_report_does_not_discourage_pet_ct(engine: CdsEngine) -> None:
    body = vignette("positive_report_new_surveillance_mri")
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    draft["code"] = {
        "coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "78815"}],
        "text": "PET/CT SKULL BASE TO MID-THIGH",
    }
    assert _rules(engine, body) == []


def test_a_positive_report_is_named_in_a_card_about_something_else(engine: CdsEngine) -> None:
    body = vignette("positive_report_new_surveillance_mri")
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    draft["code"] = {"text": "MRI NECK W WO CONTRAST"}
    [card] = _cards(engine, body)
    why = card["detail"].split("\n\n")[-1]
    assert "**last report highly suspicious for recurrence** (MRI 2026-11-10: NI-RADS 3)" in why


def test_a_metastasis_counts_only_confirmed_and_active(engine: CdsEngine) -> None:
    body = vignette("nodal_metastasis_c77_full_protocol_restaging")
    # On the full protocol the restaging card ships silent: decided, recorded, not shown.
    outcome = engine.evaluate(SERVICE_ID, body)
    assert outcome.silent_rules == ("recurrence-restaging",)
    conditions = [e["resource"] for e in body["prefetch"]["conditions"]["entry"]]
    nodes = next(c for c in conditions if c["id"] == "neck-nodes")
    for field, code, system in (
        ("verificationStatus", "provisional", "condition-ver-status"),
        ("verificationStatus", "refuted", "condition-ver-status"),
        ("clinicalStatus", "resolved", "condition-clinical"),
    ):
        changed = copy.deepcopy(body)
        target = next(
            e["resource"]
            for e in changed["prefetch"]["conditions"]["entry"]
            if e["resource"]["id"] == "neck-nodes"
        )
        target[field] = {
            "coding": [{"system": f"http://terminology.hl7.org/CodeSystem/{system}", "code": code}]
        }
        outcome = engine.evaluate(SERVICE_ID, changed)
        assert outcome.rules == outcome.silent_rules == (), (field, code)
    assert nodes["code"]["coding"][0]["code"] == "C77.0"


def test_billing_suffixes_never_reach_the_radiologist(engine: CdsEngine) -> None:
    body = vignette("epic_hcc_suffix_parotid_cancer_mri_neck")
    [card] = _cards(engine, body)
    assert "(HCC)" not in json.dumps(card)
    [update] = card["suggestions"][0]["actions"]
    assert update["resource"]["note"][-1]["text"].startswith(
        "Clinical history: treated Malignant neoplasm of parotid gland (ICD-10-CM C07)"
    )


def test_adenoid_cystic_carcinoma_is_named_with_its_hallmark_and_others_are_not(
    engine: CdsEngine,
) -> None:
    acc = _cards(engine, vignette("submandibular_acc_after_excision_mri_neck_without_contrast"))
    assert "is its hallmark" in acc[0]["detail"]
    mec = _cards(engine, vignette("parotid_mec_after_parotidectomy_and_imrt_local_mri_neck"))
    assert "hallmark" not in json.dumps(mec)


def test_pet_too_early_recommends_deferring_and_offers_mri_only_for_a_concern(
    engine: CdsEngine,
) -> None:
    [card] = _cards(engine, vignette("pet_ct_six_weeks_after_radiotherapy"))
    defer, mri = card["suggestions"]
    assert defer["isRecommended"] is True and defer["label"].startswith("Defer the PET/CT")
    assert mri["isRecommended"] is False
    assert mri["label"].endswith("now, only for a specific clinical concern")
    page = engine.guidance.get("/guidance/pet-too-early")
    assert page is not None and "mimic recurrence on MRI too" in page.html


# --- issue 24: each silent vignette speaks when the one fact that silences it is changed ---


def _draft(body: dict[str, Any]) -> dict[str, Any]:
    draft: dict[str, Any] = body["context"]["draftOrders"]["entry"][0]["resource"]
    return draft


def test_a_new_symptom_silences_the_too_soon_card_and_routine_surveillance_does_not(
    engine: CdsEngine,
) -> None:
    body = vignette("indeterminate_mri_new_facial_weakness_repeat_mri")
    assert _rules(engine, body) == []
    concern = _draft(body)["reasonCode"][0]
    concern["coding"][0].update(code="routine-surveillance", display="Routine surveillance")
    concern["text"] = "Routine surveillance"
    assert _rules(engine, body) == ["repeat-mri-too-soon"]
    concern["coding"][0]["system"] = "http://hl7.org/fhir/sid/icd-10-cm"
    concern["coding"][0]["code"] = "R29.810"  # any other reason: may be a symptom
    assert _rules(engine, body) == []


def test_the_too_soon_card_follows_an_mri_that_does_not_recommend_one(engine: CdsEngine) -> None:
    body = vignette("indeterminate_ct_recommends_mri_three_weeks_later")
    assert _rules(engine, body) == []
    report = _reports(body)[0]
    report["code"] = {"text": "MRI ORBITS FACE NECK W WO CONTRAST"}
    assert _rules(engine, body) == []  # the radiologist recommended the MRI
    report["conclusion"] = "Indeterminate soft tissue in the left parotid bed."
    assert _rules(engine, body) == ["repeat-mri-too-soon"]


def test_a_biopsy_after_the_report_means_no_card_asks_for_tissue(engine: CdsEngine) -> None:
    body = vignette("biopsy_after_nirads_3_report_new_mri")
    assert _rules(engine, body) == []
    entries = body["prefetch"]["procedures"]["entry"]
    fna = next(e for e in entries if e["resource"]["id"] == "us-fna")
    fna["resource"]["performedDateTime"] = "2026-09-01"  # before the report: not since
    assert _rules(engine, body) == ["tissue-confirmation-next"]
    entries.remove(fna)
    assert _rules(engine, body) == ["tissue-confirmation-next"]


def test_a_metastasis_is_a_recurrence_only_when_new_after_treatment(restaging: CdsEngine) -> None:
    staging = vignette("nodal_metastasis_c77_coded_at_staging_full_protocol")
    assert _rules(restaging, staging) == []
    nodes = next(
        e["resource"]
        for e in staging["prefetch"]["conditions"]["entry"]
        if e["resource"]["id"] == "neck-nodes-staging"
    )
    nodes["onsetDateTime"] = "2026-10-24"
    assert _rules(restaging, staging) == ["recurrence-restaging"]
    del nodes["onsetDateTime"]
    nodes.pop("recordedDate", None)
    assert _rules(restaging, staging) == []  # no date: not counted (say less)
    lung = vignette("acc_known_stable_lung_metastasis_full_protocol")
    assert _rules(restaging, lung) == []
    mets = next(
        e["resource"]
        for e in lung["prefetch"]["conditions"]["entry"]
        if e["resource"]["id"] == "lung-mets"
    )
    mets["onsetDateTime"] = "2026-10-01"  # after the last MRI: new
    assert _rules(restaging, lung) == ["recurrence-restaging"]


def test_the_reports_the_old_reader_overcalled_speak_when_they_do_say_it(engine: CdsEngine) -> None:
    for name in (
        "nirads_1_small_level_ii_nodes_full_protocol",
        "nirads_1_three_subcentimeter_nodes_full_protocol",
        "addendum_revises_nirads_3_down_to_1_new_mri",
        "interval_resolution_of_nirads_3_nodule_new_mri",
        "status_post_parotidectomy_for_recurrence_in_2023_negative_mri",
    ):
        body = vignette(name)
        assert _rules(engine, body) == [], name
        _reports(body)[0]["conclusion"] = "NI-RADS 3. Enlarging node."
        assert _rules(engine, body) == ["tissue-confirmation-next"], name


def test_the_nerves_named_are_the_glands(restaging: CdsEngine) -> None:
    smg = json.dumps(_cards(restaging, vignette("submandibular_acc_recurrence_restaging_ct_chest")))
    assert "lingual nerve (V3) and the hypoglossal nerve (CN XII)" in smg
    assert "CN VII) nerves to the skull base" not in smg
    assert "restaging includes CT chest" in smg
    signed = restaging.evaluate(
        SIGN_SERVICE_ID, vignette("full_protocol_without_clinical_history_prior_mri")
    )
    parotid = json.dumps(signed.response.to_json()["cards"])
    assert "auriculotemporal branch of the mandibular nerve (V3)" in parotid
    assert "CT chest" not in parotid  # not restaging


def test_a_biopsy_proven_recurrence_never_asks_for_tissue(restaging: CdsEngine) -> None:
    body = vignette("nirads_4_recurrence_mri_neck_restaging")
    _draft(body)["code"] = {
        "coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "70543"}],
        "text": "MRI ORBITS FACE NECK W WO CONTRAST",
    }
    [card] = _cards(restaging, body)
    assert card["summary"].startswith("Biopsy-proven recurrence on record")
    assert "tissue confirmation" not in json.dumps(card).lower()
    _reports(body)[0]["conclusion"] = "NI-RADS 4: enlarging mass in the parotid bed."
    [card] = _cards(restaging, body)
    assert "tissue confirmation" in card["summary"]


def test_the_override_reason_radiologist_recommended_is_offered(engine: CdsEngine) -> None:
    for name in (
        "indeterminate_mri_repeat_after_three_weeks",
        "positive_report_new_surveillance_mri",
    ):
        [card] = _cards(engine, vignette(name))
        codes = [r["code"] for r in card["overrideReasons"]]
        assert "radiologist-recommended" in codes, name


def test_a_pathology_report_after_the_report_means_no_card_asks_for_tissue(
    engine: CdsEngine,
) -> None:
    body = vignette("cytopathology_report_after_nirads_3_new_mri")
    assert _rules(engine, body) == []
    cytology = next(r for r in _reports(body) if r["id"] == "cytology-fna")
    cytology["status"] = "preliminary"  # not final: tissue not yet reported
    assert _rules(engine, body) == ["tissue-confirmation-next"]
    cytology["status"] = "final"
    cytology["category"] = []
    assert _rules(engine, body) == []  # named so: "FNA cytology"
    cytology["code"] = {"text": "Chest X-ray"}
    assert _rules(engine, body) == ["tissue-confirmation-next"]
