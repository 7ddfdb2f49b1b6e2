"""The relevance filter only saves time: with it and without it, every answer is the same."""

from __future__ import annotations

from datetime import date

import pytest

from benchmarks.workload import make_request
from cds_service.engine import CdsEngine
from cds_service.guidance import ImplantNames
from cds_service.knowledge import Knowledge
from cds_service.orders import OrderClassifier
from cds_service.relevance import RelevanceFilter
from tests.conftest import SERVICE_ID, expected_outcomes, vignette

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


def test_what_the_filter_keeps(knowledge: Knowledge) -> None:
    names = ImplantNames(knowledge.safety)
    keeps = RelevanceFilter(knowledge, OrderClassifier(knowledge.imaging), names).keeps
    icd = "http://hl7.org/fhir/sid/icd-10-cm"
    assert keeps(
        {"resourceType": "Condition", "code": {"coding": [{"system": icd, "code": "C07"}]}}
    )
    assert keeps(
        {"resourceType": "Condition", "code": {"coding": [{"system": icd, "code": "D11.0"}]}}
    )
    assert keeps({"resourceType": "Condition", "code": {"text": "Pacemaker in situ"}})
    assert not keeps(
        {"resourceType": "Condition", "code": {"coding": [{"system": icd, "code": "I10"}]}}
    )
    assert not keeps(
        {"resourceType": "ServiceRequest", "status": "completed", "code": {"text": "CBC"}}
    )
    assert keeps(
        {"resourceType": "ImagingStudy", "status": "available", "description": "MRI NECK W WO"}
    )
    assert not keeps(
        {"resourceType": "ImagingStudy", "status": "cancelled", "description": "MRI NECK W WO"}
    )
    assert not keeps({"resourceType": "Observation"})
