"""The relevance filter only saves time: with it and without it, every answer is the same."""

from __future__ import annotations

import functools
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.workload import make_request
from cds_service.engine import CdsEngine
from cds_service.fhir.records import clean, condition_fact, device_fact, prior_imaging_fact
from cds_service.knowledge.loader import Knowledge, load_knowledge
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


@functools.cache
def _engine() -> CdsEngine:
    return CdsEngine(load_knowledge(None))


SAMPLING_WORDS = [
    "biopsy", "biopsies", "Biopsy of parotid", "fine needle aspiration", "fine-needle aspiration",
    "FNA", "fna-guided", "core needle", "cytology", "Cytologic", "pathology", "Surgical pathology",
    "report", "neck", "biopsyx", "xfna", " ", "-", "é", "ß",
]  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(parts=st.lists(st.sampled_from(SAMPLING_WORDS) | st.text(max_size=4), max_size=6))
def test_one_alternation_screens_as_its_patterns(parts: list[str]) -> None:
    """The biopsy and pathology-report screens run one RE2 alternation a name (issue 32):
    it matches exactly where one of the knowledge's patterns did."""
    from cds_service.clinical.report_text import compile_linear

    builder = _engine().records
    sampling = _engine().knowledge.pathway.tissueSampling
    name = " ".join(parts).lower()
    for combined, patterns in (
        (builder._sampling_names, sampling.procedurePatterns),
        (builder._tissue_report_names, sampling.reportPatterns),
    ):
        each = any(compile_linear(p).search(name) for p in patterns)
        assert (combined.search(name) is not None) == each, name
