"""Safe to click: contrast allergies, kidney function and MR-conditional implants (issue 16)."""

from __future__ import annotations

import copy
from datetime import date
from typing import Any

import pytest

from cds_service.clinical.guidance import find_implant
from cds_service.engine import CdsEngine
from cds_service.fhir import build as fb
from cds_service.knowledge.codesystems import ICD10CM, LOINC
from cds_service.knowledge.safety_table import Factors
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
def test_no_suggestion_contradicts_allergy_kidney_or_implant(engine: CdsEngine, name: str) -> None:
    """Over every vignette: a study the safety table keeps from the patient (to avoid, or until
    the implant's labelling is known) is never offered; the default is always a clear study; no
    card calls contrast "unsafe"."""
    body = vignette(name)
    outcome = engine.evaluate(expected_outcomes()[name]["service"], body, today=TODAY)
    safety, implant = _facts(engine, body)
    factors = Factors(
        safety.severity("gadolinium"),
        safety.severity("iodinated"),
        safety.kidney_category,
        "none" if implant is None else implant.category,
    )
    tiers = engine.safety_table.study_tiers(factors, "us")
    for card in outcome.response.cards:
        assert "unsafe" not in f"{card.summary} {card.detail}".lower().replace("mr unsafe", "")
        for suggestion in card.suggestions or []:
            for action in suggestion.actions:
                study = (action.resource or {}).get("code", {}).get("text")
                key = {MRI: "mri-protocol", CT: "ct-neck-with-contrast"}.get(study)
                if key is None:
                    continue
                assert tiers[key] in ("clear", "caution"), name  # type: ignore[index]
                if suggestion.isRecommended:
                    assert tiers[key] == "clear", name  # type: ignore[index]


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


def _category(engine: CdsEngine, *resources: dict[str, Any]) -> str:
    return str(_assess(engine, *resources).kidney_category)


def _icd(cid: str, code: str, recorded: str, text: str | None = None) -> dict[str, Any]:
    return fb.condition(PID, cid, [fb.coding(ICD10CM, code)], text=text, recorded=recorded)


def test_kidney_function_is_one_category_the_recent_egfr_first(engine: CdsEngine) -> None:
    low = _egfr("e1", 24, "2026-11-01")
    assert _category(engine, low) == "egfr-below-30"
    assert _category(engine, _egfr("e2", 24, "2026-05-01")) == "egfr-below-30-stale"
    assert _category(engine, _egfr("e3", 38, "2026-11-01")) == "egfr-30-44"
    assert _category(engine, _egfr("e3", 45, "2026-11-01")) == "normal"
    later_normal = _egfr("e4", 52, "2026-11-20")
    assert _category(engine, low, later_normal) == "normal"  # the latest result decides
    assert _category(engine, _egfr("e5", 22, "2026-11-01", code=None)) == "egfr-below-30"
    # A recent eGFR outranks an old end-stage code; after a transplant it says so.
    esrd = _icd("c0", "N18.6", "2019-01-01")
    assert _category(engine, esrd) == "egfr-below-30"
    assert _category(engine, esrd, later_normal) == "normal"
    transplant = _icd("c2", "Z94.0", "2021-01-01")
    assert _category(engine, esrd, transplant, later_normal) == "transplant-normal"
    # Dialysis: anuric only when the record says so; AKI only when recent.
    dialysis = _icd("c1", "Z99.2", "2024-01-01")
    assert _category(engine, dialysis) == "dialysis-residual"
    anuric = fb.condition(PID, "c3", [], text="Anuric, on haemodialysis", recorded="2024-01-01")
    assert _category(engine, dialysis, anuric) == "dialysis-anuric"
    assert _category(engine, _icd("c4", "N17.9", "2026-11-20"), later_normal) == "aki"
    assert _category(engine, _icd("c4", "N17.9", "2025-01-01")) == "normal"  # long ago
    risk = _assess(engine, dialysis).kidney
    assert risk is not None and "Z99.2" in risk.display


@pytest.mark.parametrize(
    ("severity", "criticality", "read"),
    [
        ("severe", None, "severe"),
        ("moderate", None, "mild-moderate"),
        ("mild", "high", "mild-moderate"),  # the reaction recorded outranks the criticality
        (None, "high", "severe"),
        (None, "low", "mild-moderate"),
        (None, "unable-to-assess", "unknown"),
        (None, None, "unknown"),
    ],
)
def test_allergy_severity_is_read_from_the_reaction_then_the_criticality(
    engine: CdsEngine, severity: str | None, criticality: str | None, read: str
) -> None:
    allergy = fb.allergy(PID, "a", "Iohexol", severity=severity, criticality=criticality)
    assert _assess(engine, allergy).severity("iodinated") == read


def test_a_dye_allergy_code_has_no_severity(engine: CdsEngine) -> None:
    dye = _icd("dye", "Z91.041", "2020-01-01")
    assert _assess(engine, dye).severity("iodinated") == "unknown"


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
    assert card.summary.startswith("Iodinated contrast reaction on record")
    assert "Prior reaction to iodinated contrast, severity not recorded" in (card.detail or "")
