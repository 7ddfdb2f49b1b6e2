"""Safe to click: contrast allergies, kidney function and MR-conditional implants (issue 16)."""

from __future__ import annotations

import copy
from datetime import date
from typing import Any

import pytest

from cds_service.clinical.guidance import find_implant
from cds_service.engine import CdsEngine
from cds_service.fhir import build as fb
from cds_service.knowledge.codesystems import LOINC
from tests.conftest import expected_outcomes, patient_record, vignette

TODAY = date(2026, 11, 24)
MRI = "MRI orbits face neck without and with IV contrast"
CT = "CT neck with IV contrast"


def _facts(engine: CdsEngine, body: dict[str, Any]) -> tuple[Any, Any]:
    """The contrast safety and the implant the engine reads from a request's prefetch."""
    resources = [
        e["resource"]
        for value in body["prefetch"].values()
        if isinstance(value, dict) and value.get("resourceType") == "Bundle"
        for e in value["entry"]
    ]
    record = engine.records.build(body["context"]["patientId"], resources)
    k = engine.knowledge
    implant = find_implant(record, k.valuesets, k.safety, engine.implant_names, engine.contrast)
    return engine.contrast.assess(record, TODAY), implant


@pytest.mark.parametrize("name", sorted(expected_outcomes()))
def test_no_recommended_suggestion_contradicts_allergy_kidney_or_implant(
    engine: CdsEngine, name: str
) -> None:
    body = vignette(name)
    outcome = engine.evaluate(expected_outcomes()[name]["service"], body, today=TODAY)
    safety, implant = _facts(engine, body)
    mri_ruled_out = implant is not None and implant.rules_out_mri
    for card in outcome.response.cards:
        for suggestion in card.suggestions or []:
            created = [a.resource for a in suggestion.actions if a.type == "create"]
            for resource in created:
                assert resource is not None
                study = resource["code"]["text"]
                if study == MRI:
                    assert safety.allergy("gadolinium") is None, name
                    assert not mri_ruled_out, name
                if study == CT:
                    assert safety.allergy("iodinated") is None, name
                    assert not (safety.kidney is not None and mri_ruled_out), name
                if suggestion.isRecommended and study == CT and safety.kidney is not None:
                    assert mri_ruled_out, name  # MRI is preferred where it is possible


PID = "p"


def _assess(engine: CdsEngine, *resources: dict[str, Any]) -> Any:
    return engine.contrast.assess(patient_record(list(resources)), TODAY)


def _egfr(oid: str, value: float, when: str, code: str | None = "33914-3") -> dict[str, Any]:
    codings = [fb.coding(LOINC, code)] if code else []
    resource = fb.lab_result(PID, oid, codings, value, "mL/min/1.73m2", when)
    if code is None:
        resource["code"] = {"text": "eGFR (CKD-EPI 2021)"}
    return resource


def test_allergies_are_read_by_agent_name_and_status(engine: CdsEngine) -> None:
    gad = fb.allergy(PID, "a1", "Gadoterate meglumine (Dotarem)")
    assert _assess(engine, gad).allergy("gadolinium") is not None
    assert _assess(engine, fb.allergy(PID, "a2", "Omnipaque 350")).allergy("iodinated")
    resolved = fb.allergy(PID, "a3", "Gadavist", clinical="resolved")
    assert _assess(engine, resolved).allergies == ()
    refuted = fb.allergy(PID, "a4", "Gadavist")
    refuted["verificationStatus"]["coding"][0]["code"] = "refuted"
    assert _assess(engine, refuted).allergies == ()
    for not_contrast in ("Shellfish", "Iodine", "Povidone-iodine", "Penicillin"):
        assert _assess(engine, fb.allergy(PID, "a5", not_contrast)).allergies == ()


def test_kidney_function_is_the_latest_recent_egfr_below_30(engine: CdsEngine) -> None:
    low = _egfr("e1", 24, "2026-11-01")
    assert _assess(engine, low).kidney is not None
    assert _assess(engine, _egfr("e2", 24, "2026-05-01")).kidney is None  # over 90 days old
    assert _assess(engine, _egfr("e3", 45, "2026-11-01")).kidney is None
    later_normal = _egfr("e4", 52, "2026-11-20")
    assert _assess(engine, low, later_normal).kidney is None  # the latest result decides
    assert _assess(engine, _egfr("e5", 22, "2026-11-01", code=None)).kidney is not None  # by name
    dialysis = fb.condition(PID, "c1", [fb.coding("http://hl7.org/fhir/sid/icd-10-cm", "Z99.2")])
    risk = _assess(engine, dialysis).kidney
    assert risk is not None and "Z99.2" in risk.display


@pytest.mark.parametrize(
    ("safety", "status"),
    [
        ("MR Conditional", "conditional"),
        ("MR Unsafe", "unsafe"),
        ("MR Safe", "safe"),
        (None, "unknown"),
    ],
)
def test_implant_mr_status_comes_from_the_device(
    engine: CdsEngine, safety: str | None, status: str
) -> None:
    record = patient_record([fb.device(PID, "d", "Pacemaker", safety=safety)])
    k = engine.knowledge
    implant = find_implant(record, k.valuesets, k.safety, engine.implant_names, engine.contrast)
    assert implant is not None and implant.mr_status == status


def test_a_ct_with_contrast_ordered_despite_a_contrast_allergy_recommends_the_mri(
    engine: CdsEngine,
) -> None:
    body = copy.deepcopy(vignette("treated_parotid_cancer_ct_neck_with_contrast"))
    body["prefetch"]["allergies"]["entry"].append(
        {"resource": fb.allergy(body["context"]["patientId"], "dye", "Iodinated contrast")}
    )
    [card] = engine.evaluate(
        "salivary-post-treatment-imaging-order-select", body, today=TODAY
    ).response.cards
    [mri] = [
        s
        for s in card.suggestions or []
        if any(a.resource and a.resource["code"].get("text") == MRI for a in s.actions)
    ]
    assert mri.isRecommended is True
    assert "Recorded allergy to iodinated contrast" in (card.detail or "")
