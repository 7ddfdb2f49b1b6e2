"""Guidance per order: which finding comes first, and the evidence each one carries."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from cds_service.clinical.contrast import ContrastReader
from cds_service.clinical.guidance import (
    CtNeck,
    IncompleteMri,
    MriContraindicated,
    PatientSituation,
    PetTooEarly,
    UsLimited,
    advise,
    assess_mri,
    find_implant,
    latest_prior_imaging,
    primary_finding,
    rated_procedure,
)
from cds_service.clinical.orders import ImagingOrder, OrderClassifier
from cds_service.clinical.patient_record import PatientRecord
from cds_service.clinical.reasoning import find_post_treatment_context
from cds_service.fhir.records import order_fact
from cds_service.knowledge.loader import Knowledge
from cds_service.knowledge.names import NameMatcher
from cds_service.knowledge.safety_table import SafetyTable
from tests.conftest import draft_service_request, patient_record

ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
SCT = "http://snomed.info/sct"
CPT = "http://www.ama-assn.org/go/cpt"
TODAY = date(2026, 11, 24)


def _resource(kind: str, rid: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"resourceType": kind, "id": rid}
    if kind in ("Condition", "Procedure", "ImagingStudy", "DiagnosticReport", "ServiceRequest"):
        base["subject"] = {"reference": "Patient/p"}
    if kind == "Device":
        base["patient"] = {"reference": "Patient/p"}
    base.update(fields)
    return base


def _condition(rid: str, system: str, code: str, **fields: Any) -> dict[str, Any]:
    return _resource(
        "Condition", rid, code={"coding": [{"system": system, "code": code}]}, **fields
    )


CANCER = _condition("ca", ICD10, "C07", onsetDateTime="2025-01-10")
SURGERY = _resource(
    "Procedure",
    "px",
    status="completed",
    code={"coding": [{"system": CPT, "code": "42415"}]},
    performedDateTime="2025-02-01",
)


def _radiotherapy(end: str) -> dict[str, Any]:
    return _resource(
        "Procedure",
        "rt",
        status="completed",
        code={"coding": [{"system": SCT, "code": "1217123003"}]},
        performedPeriod={"start": "2025-03-01", "end": end},
    )


def _device(name: str, status: str = "active") -> dict[str, Any]:
    return _resource(
        "Device", "dev", status=status, deviceName=[{"name": name, "type": "user-friendly-name"}]
    )


def _record(*extra: dict[str, Any], devices_known: bool = True) -> PatientRecord:
    return patient_record([CANCER, SURGERY, *extra], devices_known)


def _situation(knowledge: Knowledge, record: PatientRecord) -> PatientSituation:
    context = find_post_treatment_context(record, knowledge.valuesets)
    assert context is not None
    return PatientSituation(
        context=context,
        implant=find_implant(
            record,
            knowledge.valuesets,
            knowledge.safety,
            NameMatcher(knowledge.safety.implantTextPatterns),
            ContrastReader(knowledge.contrast, knowledge.valuesets),
        ),
        devices_known=record.devices_known,
        latest_prior=latest_prior_imaging(record),
        today=TODAY,
        table=SafetyTable(knowledge.table),
    )


def _order(
    knowledge: Knowledge,
    text: str | None = None,
    cpt: str | None = None,
    **fields: Any,
) -> ImagingOrder:
    classifier = OrderClassifier(knowledge.imaging)
    sr = draft_service_request([{"system": CPT, "code": cpt}] if cpt else None, text)
    sr.update(fields)
    reading = classifier.classify(order_fact(sr, classifier.known_systems))
    assert reading is not None
    return reading


# --- implants -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "found"),
    [
        (_condition("pm", ICD10, "Z95.0"), "Presence of cardiac pacemaker"),
        (_condition("icd", ICD10, "Z95.810"), "defibrillator"),
        (_condition("ci", ICD10, "Z96.21"), "Cochlear"),
        (_condition("pm2", SCT, "441509002"), "Cardiac pacemaker in situ"),
        (_device("Medtronic dual-chamber PACEMAKER"), "PACEMAKER"),
        (_device("Cochlear implant, left"), "Cochlear implant"),
        (_device("Implantable cardioverter-defibrillator"), "cardioverter"),
    ],
)
def test_implants_are_found(knowledge: Knowledge, resource: dict[str, Any], found: str) -> None:
    implant = find_implant(
        _record(resource),
        knowledge.valuesets,
        knowledge.safety,
        NameMatcher(knowledge.safety.implantTextPatterns),
        ContrastReader(knowledge.contrast, knowledge.valuesets),
    )
    assert implant is not None and found in implant.display


@pytest.mark.parametrize(
    "resource",
    [
        _device("Cardiac pacemaker", status="inactive"),
        _device("Cardiac pacemaker", status="entered-in-error"),
        _device("Knee prosthesis"),
        _condition(
            "pm",
            ICD10,
            "Z95.0",
            clinicalStatus={
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "code": "resolved",
                    }
                ]
            },
        ),
        _condition(
            "pm",
            ICD10,
            "Z95.0",
            verificationStatus={
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                        "code": "refuted",
                    }
                ]
            },
        ),
    ],
)
def test_removed_refuted_or_other_devices_are_not_implants(
    knowledge: Knowledge, resource: dict[str, Any]
) -> None:
    assert (
        find_implant(
            _record(resource),
            knowledge.valuesets,
            knowledge.safety,
            NameMatcher(knowledge.safety.implantTextPatterns),
            ContrastReader(knowledge.contrast, knowledge.valuesets),
        )
        is None
    )


def test_an_implant_takes_precedence_over_an_incomplete_protocol(knowledge: Knowledge) -> None:
    situation = _situation(knowledge, _record(_condition("pm", ICD10, "Z95.0")))
    finding = primary_finding(_order(knowledge, "MRI NECK"), situation, knowledge)
    assert isinstance(finding, MriContraindicated)
    assert finding.implant.reference == "Condition/pm"


def test_an_implant_does_not_concern_an_mri_of_the_knee(knowledge: Knowledge) -> None:
    situation = _situation(knowledge, _record(_condition("pm", ICD10, "Z95.0")))
    assert primary_finding(_order(knowledge, "MRI KNEE WO"), situation, knowledge) is None


# --- MRI protocol ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cpt", "missing", "contrast"),
    [
        ("MRI NECK W WO CONTRAST", None, ("face", "orbits/skull base"), None),
        ("MRI NECK", None, ("face", "orbits/skull base"), "unspecified"),
        ("MRI FACE NECK W WO", None, ("orbits/skull base",), None),
        ("MRI ORBITS FACE NECK W CONTRAST", None, (), "with"),
        ("MRI PAROTID W WO", None, ("neck", "face", "orbits/skull base"), None),
        (None, "70540", (), "without"),
        (None, "70542", (), "with"),
    ],
)
def test_incomplete_mri_findings(
    knowledge: Knowledge,
    text: str | None,
    cpt: str | None,
    missing: tuple[str, ...],
    contrast: str | None,
) -> None:
    finding = assess_mri(_order(knowledge, text, cpt), knowledge.imaging.recommendedProtocol)
    assert isinstance(finding, IncompleteMri)
    assert (finding.missing_regions, finding.contrast_problem) == (missing, contrast)


@pytest.mark.parametrize(
    ("text", "cpt"),
    [
        ("MRI orbits face neck w/wo IV contrast", None),
        ("MRI SKULL BASE FACE NECK W WO", None),
        ("MRI BRAIN W WO CONTRAST", None),
        ("MRI HEAD", None),
        ("CT NECK W CONTRAST", None),
        (None, "70543"),
        ("MRI orbit, face and/or neck", None),
    ],
)
def test_no_mri_finding(knowledge: Knowledge, text: str | None, cpt: str | None) -> None:
    assert assess_mri(_order(knowledge, text, cpt), knowledge.imaging.recommendedProtocol) is None


# --- CT -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "extra", "devices_known", "rule"),
    [
        ("CT NECK WO CONTRAST", (), True, "ct-neck-without-contrast"),
        ("CT NECK", (), True, "ct-neck-contrast-unspecified"),
        ("CT NECK W CONTRAST", (), True, "ct-neck-mri-preferred"),
        ("CT NECK W CONTRAST", (_condition("pm", ICD10, "Z95.0"),), True, None),
        ("CT NECK W CONTRAST", (), False, None),  # devices unknown: MRI cannot be said possible
        ("CT NECK W WO CONTRAST", (), True, None),
        ("CT CHEST W CONTRAST", (), True, None),
    ],
)
def test_ct_rules(
    knowledge: Knowledge,
    text: str,
    extra: tuple[dict[str, Any], ...],
    devices_known: bool,
    rule: str | None,
) -> None:
    situation = _situation(knowledge, _record(*extra, devices_known=devices_known))
    finding = primary_finding(_order(knowledge, text), situation, knowledge)
    if rule is None:
        assert finding is None
    else:
        assert isinstance(finding, CtNeck) and finding.rule_id == rule


# --- PET/CT ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rt_end", "scan", "fires"),
    [
        ("2026-10-13", "2026-11-24", True),  # 42 days
        ("2026-09-02", "2026-11-24", True),  # 83 days: still inside 12 weeks
        ("2026-09-01", "2026-11-24", False),  # 84 days: 12 weeks reached
        ("2026-12-01", "2026-11-24", False),  # scan before the end of radiotherapy: contradictory
    ],
)
def test_pet_timing(knowledge: Knowledge, rt_end: str, scan: str, fires: bool) -> None:
    situation = _situation(knowledge, _record(_radiotherapy(rt_end)))
    order = _order(knowledge, "PET/CT SKULL BASE TO MID-THIGH", occurrenceDateTime=scan)
    finding = primary_finding(order, situation, knowledge)
    assert isinstance(finding, PetTooEarly) is fires
    if isinstance(finding, PetTooEarly):
        assert finding.radiotherapy_end.text == rt_end
        assert finding.earliest == date.fromisoformat(rt_end) + (
            date(2000, 3, 25) - date(2000, 1, 1)
        )


def test_pet_without_a_date_is_judged_for_today(knowledge: Knowledge) -> None:
    situation = _situation(knowledge, _record(_radiotherapy("2026-11-01")))
    finding = primary_finding(_order(knowledge, "FDG PET-CT WHOLE BODY"), situation, knowledge)
    assert isinstance(finding, PetTooEarly) and finding.scan_date == TODAY and finding.days == 23


def test_pet_without_radiotherapy_says_nothing(knowledge: Knowledge) -> None:
    situation = _situation(knowledge, _record())
    assert (
        primary_finding(_order(knowledge, "PET/CT SKULL BASE TO MID-THIGH"), situation, knowledge)
        is None
    )


# --- US, history, scope of advice ---------------------------------------------------------


def test_ultrasound_gets_its_limits_but_guided_fna_does_not(knowledge: Knowledge) -> None:
    situation = _situation(knowledge, _record())
    assert isinstance(
        primary_finding(_order(knowledge, "US NECK"), situation, knowledge), UsLimited
    )
    assert isinstance(
        primary_finding(_order(knowledge, "US PAROTID"), situation, knowledge), UsLimited
    )
    guided = _order(knowledge, "US GUIDED FNA NECK NODE")
    assert advise(situation, [guided], knowledge, standalone_history=True) == []


def test_missing_history_alone_makes_advice(knowledge: Knowledge) -> None:
    situation = _situation(knowledge, _record())
    order = _order(knowledge, "MRI ORBITS FACE NECK W WO CONTRAST")
    [advice] = advise(situation, [order], knowledge, standalone_history=True)
    assert advice.primary is None and advice.missing_history
    assert advice.rule_id == "missing-clinical-history"
    # Where the service shows no standalone history card (order-select), nothing to say.
    assert advise(situation, [order], knowledge, standalone_history=False) == []
    with_reason = _order(
        knowledge,
        "MRI ORBITS FACE NECK W WO CONTRAST",
        reasonReference=[{"reference": "Condition/ca"}],
    )
    assert advise(situation, [with_reason], knowledge, standalone_history=True) == []


def test_imaging_outside_the_head_and_neck_is_left_alone(knowledge: Knowledge) -> None:
    situation = _situation(knowledge, _record())
    chest = _order(knowledge, "XR CHEST 2 VIEWS")
    assert advise(situation, [chest], knowledge, standalone_history=True) == []


@pytest.mark.parametrize(
    ("text", "cpt", "procedure"),
    [
        ("MRI ORBITS FACE NECK W WO CONTRAST", None, "mri-orbits-face-neck-wo-w"),
        ("CT NECK W CONTRAST", None, "ct-neck-w"),
        ("PET/CT SKULL BASE TO MID-THIGH", None, "fdg-pet-ct"),
        ("US NECK", None, "us-neck"),
        ("MRI NECK W WO CONTRAST", None, None),
        ("CT NECK WO CONTRAST", None, None),
        (None, "70543", None),
    ],
)
def test_rated_procedures(
    knowledge: Knowledge, text: str | None, cpt: str | None, procedure: str | None
) -> None:
    rated = rated_procedure(_order(knowledge, text, cpt), knowledge.ratings)
    assert (rated.id if rated else None) == procedure


def test_latest_prior_head_and_neck_imaging(knowledge: Knowledge) -> None:
    record = _record(
        _resource(
            "ImagingStudy",
            "old",
            status="available",
            started="2024-01-01",
            description="MRI NECK W WO",
        ),
        _resource(
            "ImagingStudy",
            "new",
            status="available",
            started="2025-06-01",
            description="CT NECK W CONTRAST",
        ),
        _resource(
            "ImagingStudy",
            "chest",
            status="available",
            started="2026-01-01",
            description="CT CHEST",
        ),
        _resource(
            "ImagingStudy",
            "cancelled",
            status="cancelled",
            started="2026-02-01",
            description="MRI NECK",
        ),
        _resource(
            "DiagnosticReport",
            "rep",
            status="final",
            code={"text": "MRI FACE NECK W WO"},
            effectiveDateTime="2025-03-01",
        ),
    )
    situation = _situation(knowledge, record)
    assert situation.latest_prior is not None
    prior = situation.latest_prior.fact
    assert (prior.reference, prior.date.text if prior.date else None) == (
        "ImagingStudy/new",
        "2025-06-01",
    )


@pytest.mark.parametrize(
    "name",
    [
        "Medtronic dual-chamber PACEMAKER",
        "Pace-maker, permanent",
        "Implantable cardioverter-defibrillator",
        "AICD in situ",
        "Cochlear implant, left",
        "Spinal cord stimulator",
        "Deep brain stimulator",
    ],
)
def test_implant_names_are_read(knowledge: Knowledge, name: str) -> None:
    assert (
        find_implant(
            _record(_device(name)),
            knowledge.valuesets,
            knowledge.safety,
            NameMatcher(knowledge.safety.implantTextPatterns),
            ContrastReader(knowledge.contrast, knowledge.valuesets),
        )
        is not None
    )
