"""A prefetched Bundle is the patient's data only when it answers the template's query: one whose
``link[self]`` names another query (the Inferno CRD kit sends ``devices`` looked up by id, with no
patient) is treated as missing: fetched when a FHIR server may be asked, else "could not be
checked" (optional keys) or 412 (required keys), and logged by key only."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from structlog.testing import capture_logs

from cds_service.contract.errors import PrefetchUnavailableError
from cds_service.engine import CdsEngine
from cds_service.fhir import build as fb
from cds_service.fhir.allowlist import AllowList
from cds_service.fhir.client import FetchLimits, FhirFetcher
from cds_service.fhir.provenance import answers_template
from cds_service.knowledge.rules import RuleId
from tests.conftest import SERVICE_ID, vignette
from tests.fhir_standin import FhirStandIn

POSITIVE = "parotid_mec_after_parotidectomy_and_imrt_local_mri_neck"
PATIENT = "pt-parotid-mec"
TODAY = date(2026, 11, 24)
TEMPLATE = "Device?patient={{context.patientId}}"
CONTEXT = {"patientId": "123", "userId": "Practitioner/1"}


def _bundle(self_url: str | None) -> dict[str, Any]:
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "entry": []}
    if self_url is not None:
        bundle["link"] = [
            {"relation": "next", "url": "https://ehr.example.org/fhir/Device?page=2"},
            {"relation": "self", "url": self_url},
        ]
    return bundle


@pytest.mark.parametrize(
    "url",
    [
        "https://ehr.example.org/fhir/Device?patient=123",
        "Device?patient=123",
        "https://ehr.example.org/fhir/Device?patient=Patient%2F123&_count=50",
        "https://ehr.example.org/fhir/Device/_search?patient=Patient/123",
        None,  # no self link: nothing to check, the Bundle is used
    ],
)
def test_the_templates_query_for_this_patient_is_accepted(url: str | None) -> None:
    assert answers_template(_bundle(url), TEMPLATE, CONTEXT)


@pytest.mark.parametrize(
    "url",
    [
        "https://ehr.example.org/fhir/Device?_id=dev-1,dev-2",  # the kit's devices by id
        "https://ehr.example.org/fhir/Device?patient=456",  # another patient
        "https://ehr.example.org/fhir/Device?patient=123&type=pacemaker",  # narrower
        "https://ehr.example.org/fhir/Observation?patient=123",  # another type
        "https://ehr.example.org/fhir/",  # no query at all
    ],
)
def test_another_query_is_not_the_templates(url: str) -> None:
    assert not answers_template(_bundle(url), TEMPLATE, CONTEXT)


def _devices_by_id(body: dict[str, Any]) -> dict[str, Any]:
    """The request with ``devices`` as the kit sends it: another query's (empty) result."""
    body["prefetch"]["devices"] = _bundle("https://ehr.example.org/fhir/Device?_id=dev-9")
    return body


@pytest.fixture(scope="module")
def ehr_with_pacemaker() -> Iterator[FhirStandIn]:
    """The patient's FHIR server: it holds a pacemaker the prefetch does not show."""
    server = FhirStandIn([fb.device(PATIENT, "pm-1", "Cardiac pacemaker")]).start()
    yield server
    server.stop()


def test_with_a_correct_self_link_the_prefetch_is_used(engine: CdsEngine) -> None:
    """Control: the same empty devices Bundle, naming the template's query, is the patient's
    (empty) device list: the protocol card, nothing fetched."""
    body = vignette(POSITIVE)
    body["prefetch"]["devices"] = _bundle(f"https://ehr.example.org/fhir/Device?patient={PATIENT}")
    outcome = engine.evaluate(SERVICE_ID, body, today=TODAY)
    assert outcome.rules == (RuleId.INCOMPLETE_MRI_PROTOCOL,) and outcome.fetched == ()


def test_devices_by_id_are_fetched_and_the_pacemaker_is_seen(
    engine: CdsEngine, ehr_with_pacemaker: FhirStandIn
) -> None:
    ehr_with_pacemaker.reset()
    body = _devices_by_id(vignette(POSITIVE))
    body["fhirServer"] = ehr_with_pacemaker.base
    fetcher = FhirFetcher(AllowList.parse("loopback"), FetchLimits())
    with capture_logs() as logs:
        outcome = engine.evaluate(SERVICE_ID, body, today=TODAY, fetcher=fetcher)
    assert outcome.fetched == ("devices",)
    assert [s.path for s in ehr_with_pacemaker.seen] == ["/fhir/Device"]
    assert outcome.rules == (RuleId.MRI_CONTRAINDICATED,)  # not the MRI replacement card
    [line] = [e for e in logs if e["event"] == "prefetch-not-its-template"]
    assert line["keys"] == ["devices"]
    assert PATIENT not in repr(line) and "dev-9" not in repr(line)  # keys only, no identifiers


def test_without_a_server_the_card_says_implants_could_not_be_checked(engine: CdsEngine) -> None:
    outcome = engine.evaluate(SERVICE_ID, _devices_by_id(vignette(POSITIVE)), today=TODAY)
    assert outcome.unreadable == {"devices": "prefetch-not-its-template"}
    [card] = outcome.response.to_json()["cards"]
    assert "**Could not be checked:** Implant records could not be read" in card["detail"]


def test_a_required_key_answering_another_query_is_412(engine: CdsEngine) -> None:
    body = vignette(POSITIVE)
    body["prefetch"]["conditions"]["link"] = [
        {"relation": "self", "url": "https://ehr.example.org/fhir/Condition?_id=parotid-mec"}
    ]
    with pytest.raises(PrefetchUnavailableError) as caught:
        engine.evaluate(SERVICE_ID, body, today=TODAY)
    assert caught.value.status == 412
    assert caught.value.details["reasons"] == {"conditions": "prefetch-not-its-template"}
