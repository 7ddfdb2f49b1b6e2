"""Clinical context: who is in the post-treatment major-salivary-cancer scenario, and why."""

from __future__ import annotations

from typing import Any

import pytest

from cds_service.clinical.patient_record import PatientRecord
from cds_service.clinical.reasoning import find_post_treatment_context
from cds_service.knowledge.loader import Knowledge
from tests.conftest import patient_record

ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
SCT = "http://snomed.info/sct"
CPT = "http://www.ama-assn.org/go/cpt"
ICDO3 = "http://terminology.hl7.org/CodeSystem/icd-o-3"
HISTOLOGY = "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-histology-morphology-behavior"


def condition(
    cid: str,
    system: str,
    code: str,
    *,
    verification: str | None = None,
    onset: str | None = "2023-01-10",
    body_site: tuple[str, str] | None = None,
    histology: tuple[str, str] | None = None,
) -> dict[str, Any]:
    c: dict[str, Any] = {
        "resourceType": "Condition",
        "id": cid,
        "subject": {"reference": "Patient/p"},
        "code": {"coding": [{"system": system, "code": code}]},
    }
    if verification:
        c["verificationStatus"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": verification,
                }
            ]
        }
    if onset:
        c["onsetDateTime"] = onset
    if body_site:
        c["bodySite"] = [{"coding": [{"system": body_site[0], "code": body_site[1]}]}]
    if histology:
        c["extension"] = [
            {
                "url": HISTOLOGY,
                "valueCodeableConcept": {
                    "coding": [{"system": histology[0], "code": histology[1]}]
                },
            }
        ]
    return c


def procedure(
    pid: str,
    system: str,
    code: str,
    *,
    status: str = "completed",
    performed: str | None = "2023-02-14",
    reason: str | None = None,
) -> dict[str, Any]:
    p: dict[str, Any] = {
        "resourceType": "Procedure",
        "id": pid,
        "status": status,
        "subject": {"reference": "Patient/p"},
        "code": {"coding": [{"system": system, "code": code}]},
    }
    if performed:
        p["performedDateTime"] = performed
    if reason:
        p["reasonReference"] = [{"reference": f"Condition/{reason}"}]
    return p


PAROTIDECTOMY = procedure("parotidectomy", CPT, "42415")
C07 = condition("ca", ICD10, "C07")


def record(*resources: dict[str, Any]) -> PatientRecord:
    return patient_record(resources)


@pytest.fixture(scope="module")
def in_scope(knowledge: Knowledge) -> Any:
    return lambda *resources: find_post_treatment_context(record(*resources), knowledge.valuesets)


def test_parotid_cancer_after_parotidectomy_carries_its_evidence(in_scope: Any) -> None:
    context = in_scope(C07, PAROTIDECTOMY)
    assert context is not None
    assert context.cancer.condition.id == "ca"
    assert context.cancer.code.label == "ICD-10-CM C07"
    assert context.cancer.basis == "diagnosis-code"
    assert context.cancer.date.text == "2023-01-10"
    assert [t.procedure.id for t in context.treatments] == ["parotidectomy"]
    assert context.treatments[0].kind == "salivary-gland-excision"


@pytest.mark.parametrize(
    ("system", "code"),
    [
        (ICD10, "C08.0"),
        (ICD10, "C080"),  # sent without the dot
        (ICD10, "c08.1"),
        (ICD10, "C08.9"),
        (SCT, "363379000"),
        (SCT, "93883004"),
        (SCT, "254462001"),
    ],
)
def test_malignant_major_salivary_codes_are_in_scope(in_scope: Any, system: str, code: str) -> None:
    assert in_scope(condition("ca", system, code), PAROTIDECTOMY) is not None


@pytest.mark.parametrize(
    ("system", "code"),
    [
        (ICD10, "D11.0"),  # benign parotid
        (ICD10, "D11.9"),
        (ICD10, "D37.030"),  # uncertain behaviour
        (SCT, "255155005"),  # pleomorphic adenoma
        (SCT, "422470007"),  # Warthin tumour
        (ICD10, "C10.9"),  # oropharynx
        (ICD10, "C05.9"),  # palate: minor salivary gland
        (ICD10, "C06.9"),  # mouth
        (ICD10, "C77.0"),  # nodal disease alone: primary unknown
        (SCT, "255072001"),  # malignant tumour of salivary gland: includes minor glands
        (ICD10, "Z85.818"),  # history, with no salivary gland surgery: see below
    ],
)
def test_other_diagnoses_are_out_of_scope(in_scope: Any, system: str, code: str) -> None:
    dissection = procedure("mrnd", CPT, "38724")
    rt = procedure("rt", SCT, "1217123003")
    assert in_scope(condition("dx", system, code), dissection, rt) is None


@pytest.mark.parametrize("status", ["refuted", "entered-in-error", "provisional", "differential"])
def test_unestablished_diagnoses_do_not_count(in_scope: Any, status: str) -> None:
    assert in_scope(condition("ca", ICD10, "C07", verification=status), PAROTIDECTOMY) is None


def test_confirmed_diagnosis_counts(in_scope: Any) -> None:
    assert in_scope(condition("ca", ICD10, "C07", verification="confirmed"), PAROTIDECTOMY)


@pytest.mark.parametrize("status", ["preparation", "in-progress", "not-done", "stopped", "unknown"])
def test_treatment_must_be_completed(in_scope: Any, status: str) -> None:
    assert in_scope(C07, procedure("parotidectomy", CPT, "42415", status=status)) is None


@pytest.mark.parametrize(
    ("system", "code"),
    [
        (CPT, "42420"),
        (CPT, "42440"),
        (CPT, "42450"),
        (SCT, "81870009"),
        (CPT, "38724"),
        (CPT, "77386"),
        (SCT, "1217123003"),
        (SCT, "441799006"),
        (SCT, "703423002"),
        ("http://www.cms.gov/Medicare/Coding/ICD10", "0CT90ZZ"),
    ],
)
def test_each_kind_of_definitive_treatment_counts(in_scope: Any, system: str, code: str) -> None:
    assert in_scope(C07, procedure("tx", system, code)) is not None


def test_a_procedure_that_is_not_a_treatment_does_not_count(in_scope: Any) -> None:
    fna = procedure("fna", "http://hospital.example.org/procedures", "FNA-PAROTID")
    assert in_scope(C07, fna) is None


def test_treatment_for_another_condition_does_not_count(in_scope: Any) -> None:
    other = condition("op", ICD10, "C10.9")
    crt = procedure("crt", SCT, "703423002", reason="op")
    assert in_scope(C07, other, crt) is None
    assert in_scope(C07, other, procedure("crt", SCT, "703423002", reason="ca")) is not None


def test_surgery_years_before_the_diagnosis_did_not_treat_it(in_scope: Any) -> None:
    old = procedure("old", CPT, "42415", performed="2015-05-05")
    assert in_scope(condition("ca", ICD10, "C07", onset="2026-10-01"), old) is None


def test_diagnosis_recorded_from_the_surgical_specimen_counts(in_scope: Any) -> None:
    surgery = procedure("parotidectomy", CPT, "42415", performed="2023-01-03")
    assert in_scope(condition("ca", ICD10, "C07", onset="2023-01-20"), surgery) is not None


def test_icdo3_topography_with_malignant_histology(in_scope: Any) -> None:
    acc = condition(
        "acc", SCT, "255072001", body_site=(ICDO3, "C08.1"), histology=(ICDO3, "8200/3")
    )
    context = in_scope(acc, PAROTIDECTOMY)
    assert context is not None
    assert context.cancer.basis == "icd-o-3-topography-and-morphology"
    assert context.cancer.code.label == "ICD-O-3 8200/3"


def test_icdo3_topography_alone_or_with_benign_histology_is_not_enough(in_scope: Any) -> None:
    topo_only = condition("t", SCT, "255072001", body_site=(ICDO3, "C07.9"))
    benign = condition(
        "b", SCT, "255072001", body_site=(ICDO3, "C07.9"), histology=(ICDO3, "8940/0")
    )
    histology_only = condition("h", SCT, "255072001", histology=(ICDO3, "8200/3"))
    assert in_scope(topo_only, PAROTIDECTOMY) is None
    assert in_scope(benign, PAROTIDECTOMY) is None
    assert in_scope(histology_only, PAROTIDECTOMY) is None


def test_malignant_code_with_benign_histology_is_contradictory(in_scope: Any) -> None:
    contradictory = condition("x", ICD10, "C07", histology=(ICDO3, "8940/0"))
    assert in_scope(contradictory, PAROTIDECTOMY) is None


def test_history_code_needs_salivary_gland_surgery(in_scope: Any) -> None:
    history = condition("hx", ICD10, "Z85.818", onset=None)
    context = in_scope(history, procedure("p", CPT, "42410", performed="2016-01-01"))
    assert context is not None and context.cancer.basis == "history-code"
    assert in_scope(history, procedure("d", CPT, "38724")) is None


def test_history_code_with_a_benign_salivary_tumour_does_not_count(in_scope: Any) -> None:
    history = condition("hx", ICD10, "Z85.818", onset=None)
    pa = condition("pa", ICD10, "D11.0")
    assert in_scope(history, pa, procedure("p", CPT, "42415")) is None


def test_another_patients_resources_are_ignored(knowledge: Knowledge) -> None:
    foreign = dict(C07, subject={"reference": "Patient/someone-else"})
    rec = record(foreign, PAROTIDECTOMY)
    assert rec.skipped == 1
    assert find_post_treatment_context(rec, knowledge.valuesets) is None


def test_invalid_fhir_is_skipped_not_guessed(knowledge: Knowledge) -> None:
    broken = dict(PAROTIDECTOMY, performedDateTime="last spring")
    rec = record(C07, broken)
    assert rec.skipped == 1
    assert find_post_treatment_context(rec, knowledge.valuesets) is None


def test_treatments_are_listed_oldest_first(in_scope: Any) -> None:
    rt = procedure("rt", SCT, "1217123003", performed="2023-05-01")
    context = in_scope(C07, rt, PAROTIDECTOMY)
    assert [t.procedure.id for t in context.treatments] == ["parotidectomy", "rt"]
