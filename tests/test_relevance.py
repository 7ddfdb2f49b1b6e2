"""The relevance filter only saves time: with it and without it, every answer is the same."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from benchmarks.workload import make_request
from cds_service.engine import CdsEngine
from cds_service.fhir.records import clean, condition_fact, device_fact, prior_imaging_fact
from cds_service.knowledge.loader import Knowledge
from tests.conftest import SERVICE_ID, expected_outcomes, patient_record, vignette

OUTCOMES = expected_outcomes()
TODAY = date(2026, 11, 24)


@pytest.fixture(scope="module")
def unfiltered(knowledge: Knowledge) -> CdsEngine:
    return CdsEngine(knowledge, filter_irrelevant=False)


@pytest.mark.parametrize("name", sorted(OUTCOMES))
def test_filtered_and_unfiltered_answers_are_identical(
    engine: CdsEngine, unfiltered: CdsEngine, name: str
) -> None:
    service = OUTCOMES[name]["service"]
    fast = engine.evaluate(service, vignette(name), lambda: "u", TODAY)
    full = unfiltered.evaluate(service, vignette(name), lambda: "u", TODAY)
    assert fast.response.to_json() == full.response.to_json()


@pytest.mark.parametrize("kind", ["typical", "large", "negative"])
def test_benchmark_workloads_answer_the_same(
    engine: CdsEngine, unfiltered: CdsEngine, kind: str
) -> None:
    request = make_request(kind)
    fast = engine.evaluate(SERVICE_ID, request, lambda: "u", TODAY).response.to_json()
    full = unfiltered.evaluate(SERVICE_ID, request, lambda: "u", TODAY).response.to_json()
    assert fast == full
    assert bool(fast["cards"]) is (kind != "negative")


ICD = "http://hl7.org/fhir/sid/icd-10-cm"


def _kept(resource: dict[str, Any]) -> bool:
    record = patient_record([{"id": "x", "subject": {"reference": "Patient/p"}, **resource}])
    return bool(record.conditions or record.devices or record.prior_studies)


def test_what_the_filter_keeps() -> None:
    def condition(**fields: Any) -> dict[str, Any]:
        return {"resourceType": "Condition", **fields}

    assert _kept(condition(code={"coding": [{"system": ICD, "code": "C07"}]}))
    assert _kept(condition(code={"coding": [{"system": ICD, "code": "D11.0"}]}))
    assert _kept(condition(code={"text": "Pacemaker in situ"}))
    assert not _kept(condition(code={"coding": [{"system": ICD, "code": "I10"}]}))
    assert not _kept(
        {
            "resourceType": "ServiceRequest",
            "status": "completed",
            "intent": "order",
            "code": {"text": "CBC"},
        }
    )
    study = {"resourceType": "ImagingStudy", "description": "MRI NECK W WO"}
    assert _kept({**study, "status": "available"})
    assert not _kept({**study, "status": "cancelled"})
    assert not _kept({"resourceType": "Observation"})


def test_reading_before_or_after_cleaning_gives_the_same_fact() -> None:
    """The filter reads raw JSON and the record keeps that fact: it must be the fact that the
    cleaned, validated resource gives (nulls, empty strings and {} read as absent)."""
    noisy: list[dict[str, Any]] = [
        {
            "resourceType": "Condition",
            "id": "c",
            "code": {"text": "", "coding": [{}, {"system": ICD, "code": "C07", "display": ""}]},
            "bodySite": [None, {"coding": []}],
            "extension": [{}, {"valueCodeableConcept": None}],
            "onsetDateTime": "",
            "recordedDate": "2024-01-02",
        },
        {
            "resourceType": "Device",
            "id": "d",
            "deviceName": [{"name": ""}, {"name": "Pacemaker"}],
            "type": {"text": None, "coding": [{"display": "ICD"}]},
        },
        {
            "resourceType": "ImagingStudy",
            "id": "s",
            "status": "available",
            "description": "",
            "procedureCode": [{"coding": [{"system": "", "code": "x"}]}],
            "started": None,
        },
    ]
    readers = {
        "Condition": condition_fact,
        "Device": device_fact,
        "ImagingStudy": prior_imaging_fact,
    }
    for raw in noisy:
        read = readers[raw["resourceType"]]
        assert read(raw) == read(clean(raw))
