"""Prefetch fallback: missing data is fetched from an allow-listed FHIR server (a real loopback
server the tests start), and every failure is a 412 that says what is missing."""

from __future__ import annotations

import copy
import socket
import time
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from flask.testing import FlaskClient

from cds_service.config import Settings
from cds_service.engine import CdsEngine
from cds_service.fhir.allowlist import AllowList
from cds_service.fhir.client import FetchLimits, FhirFetcher
from tests.conftest import (
    HOOK_URL,
    USED_PREFETCH_KEYS,
    body_of,
    build_app,
    expected_outcomes,
    vignette,
)
from tests.fhir_standin import Behaviour, FhirStandIn

OUTCOMES = expected_outcomes()
POSITIVE = "parotid_mec_after_parotidectomy_and_imrt_local_mri_neck"
TODAY = date(2026, 11, 24)


def _all_prefetched_resources() -> list[dict[str, Any]]:
    resources = []
    for name in OUTCOMES:
        for value in vignette(name)["prefetch"].values():
            if isinstance(value, dict) and value.get("resourceType") == "Bundle":
                resources += [e["resource"] for e in value.get("entry", [])]
            elif isinstance(value, dict):
                resources.append(value)
    return resources


@pytest.fixture(scope="module")
def server() -> Iterator[FhirStandIn]:
    standin = FhirStandIn(_all_prefetched_resources()).start()
    yield standin
    standin.stop()


@pytest.fixture
def fhir(server: FhirStandIn) -> FhirStandIn:
    server.reset()
    return server


def _fetcher(allow: str = "loopback", **limits: Any) -> FhirFetcher:
    return FhirFetcher(AllowList.parse(allow), FetchLimits(**limits))


def _without_prefetch(name: str, base: str, keys: list[str] | None = None) -> dict[str, Any]:
    body = vignette(name)
    body["fhirServer"] = base
    body["fhirAuthorization"] = {
        "access_token": "token-for-the-test",
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "cds-service",
    }
    for key in keys if keys is not None else list(body["prefetch"]):
        body["prefetch"].pop(key, None)
    return body


#: Vignettes about an incomplete prefetch: fetched whole from the server, they say more (their
#: point is what the service says without the other pages).
_INCOMPLETE_PREFETCH = {"treated_parotid_cancer_ct_neck_devices_on_two_pages"}


@pytest.mark.parametrize("name", sorted(set(OUTCOMES) - _INCOMPLETE_PREFETCH))
def test_every_vignette_gives_the_same_answer_by_fallback(
    engine: CdsEngine, fhir: FhirStandIn, name: str
) -> None:
    service = OUTCOMES[name]["service"]
    by_prefetch = engine.evaluate(service, vignette(name), lambda: "u", TODAY)
    fetched = engine.evaluate(
        service, _without_prefetch(name, fhir.base), lambda: "u", TODAY, _fetcher()
    )
    assert fetched.response.to_json() == by_prefetch.response.to_json()
    # a call with no imaging draft to judge fetches nothing (it needs no patient data)
    expected = () if by_prefetch.no_imaging_order else USED_PREFETCH_KEYS
    assert sorted(fetched.fetched) == sorted(expected)


def test_all_missing_keys_are_fetched_with_the_token(fhir: FhirStandIn, engine: CdsEngine) -> None:
    engine.evaluate(
        "salivary-post-treatment-imaging-order-select",
        _without_prefetch(POSITIVE, fhir.base),
        fetcher=_fetcher(),
    )
    paths = sorted(s.path for s in fhir.seen)
    assert paths == sorted(
        f"/fhir/{t}"
        for t in [
            "Condition",
            "Procedure",
            "ServiceRequest",
            "Device",
            "ImagingStudy",
            "DiagnosticReport",
            "AllergyIntolerance",
            "Observation",
        ]
    )
    assert all(s.query["patient"] == "pt-parotid-mec" for s in fhir.seen)
    assert [s.query for s in fhir.seen if s.path == "/fhir/Observation"] == [
        {"patient": "pt-parotid-mec", "category": "laboratory"}
    ]
    assert {s.authorization for s in fhir.seen} == {"Bearer token-for-the-test"}


def test_only_missing_keys_are_fetched_and_null_means_no_data(
    fhir: FhirStandIn, engine: CdsEngine
) -> None:
    body = _without_prefetch(POSITIVE, fhir.base, keys=["procedures"])
    body["prefetch"]["devices"] = None
    outcome = engine.evaluate(
        "salivary-post-treatment-imaging-order-select", body, fetcher=_fetcher()
    )
    assert [s.path for s in fhir.seen] == ["/fhir/Procedure"]
    assert outcome.fetched == ("procedures",)
    assert len(outcome.response.cards) == 1


def test_an_operation_outcome_in_prefetch_is_fetched_again(
    fhir: FhirStandIn, engine: CdsEngine
) -> None:
    body = _without_prefetch(POSITIVE, fhir.base, keys=[])
    body["prefetch"]["conditions"] = {"resourceType": "OperationOutcome", "issue": []}
    outcome = engine.evaluate(
        "salivary-post-treatment-imaging-order-select", body, fetcher=_fetcher()
    )
    assert [s.path for s in fhir.seen] == ["/fhir/Condition"]
    assert len(outcome.response.cards) == 1


def test_no_authorization_header_without_fhir_authorization(
    fhir: FhirStandIn, engine: CdsEngine
) -> None:
    body = _without_prefetch(POSITIVE, fhir.base, keys=["conditions"])
    del body["fhirAuthorization"]
    engine.evaluate("salivary-post-treatment-imaging-order-select", body, fetcher=_fetcher())
    assert [s.authorization for s in fhir.seen] == [None]


def test_pages_are_followed(fhir: FhirStandIn, engine: CdsEngine) -> None:
    fhir.reset(Behaviour(page_size=1))
    body = _without_prefetch(POSITIVE, fhir.base, keys=["conditions"])
    outcome = engine.evaluate(
        "salivary-post-treatment-imaging-order-select", body, fetcher=_fetcher()
    )
    assert [s.query.get("_page", "1") for s in fhir.seen] == ["1", "2", "3", "4"]
    assert len(outcome.response.cards) == 1


# --- failures -> 412 over HTTP ------------------------------------------------------------


def _client(**settings: Any) -> FlaskClient:
    return build_app(Settings(**{"environment": "development", **settings})).test_client()


def _412(response: Any) -> dict[str, Any]:
    assert response.status_code == 412, response.get_json()
    body: dict[str, Any] = body_of(response)
    assert body["error"] == "prefetch-unavailable"
    return body


def test_too_many_pages_is_412_not_a_partial_record(fhir: FhirStandIn) -> None:
    fhir.reset(Behaviour(page_size=1))
    body = _without_prefetch(POSITIVE, fhir.base, keys=["conditions"])
    error = _412(_client(fhir_max_pages=2).post(HOOK_URL, json=body))
    assert error["reasons"] == {"conditions": "too-many-pages"}


def test_slow_server_is_412_at_the_deadline(fhir: FhirStandIn) -> None:
    fhir.reset(Behaviour(delay=3.0))
    body = _without_prefetch(POSITIVE, fhir.base)
    started = time.monotonic()
    error = _412(_client(fhir_deadline=0.3, fhir_read_timeout=0.3).post(HOOK_URL, json=body))
    elapsed = time.monotonic() - started
    assert set(error["reasons"].values()) == {"timeout"}
    assert elapsed < 2.5  # never held until the server answers (3 s)


def test_server_down_is_412() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    body = _without_prefetch(POSITIVE, f"http://127.0.0.1:{port}/fhir", keys=["conditions"])
    error = _412(_client().post(HOOK_URL, json=body))
    assert error["reasons"] == {"conditions": "unreachable"}
    assert error["missingPrefetch"] == ["conditions"]


@pytest.mark.parametrize(
    ("status", "reason"), [(401, "unauthorized"), (403, "unauthorized"), (500, "http-500")]
)
def test_server_refusal_is_412(fhir: FhirStandIn, status: int, reason: str) -> None:
    fhir.reset(Behaviour(status=status))
    body = _without_prefetch(POSITIVE, fhir.base, keys=["procedures"])
    assert _412(_client().post(HOOK_URL, json=body))["reasons"] == {"procedures": reason}


def test_operation_outcome_for_a_required_key_is_412(fhir: FhirStandIn) -> None:
    fhir.reset(Behaviour(outcome_types={"Condition"}))
    body = _without_prefetch(POSITIVE, fhir.base, keys=["conditions"])
    assert _412(_client().post(HOOK_URL, json=body))["reasons"] == {
        "conditions": "operation-outcome"
    }


def test_an_optional_key_that_fails_is_unknown_and_the_card_says_so(fhir: FhirStandIn) -> None:
    """Devices that cannot be read are unknown, as without a server: the card still comes (the
    record read holds all it needs), says that implants could not be checked, and nothing
    that assumes MRI is safe is said."""
    fhir.reset(Behaviour(outcome_types={"Device"}))
    body = _without_prefetch(POSITIVE, fhir.base, keys=["devices"])
    response = _client().post(HOOK_URL, json=body)
    assert response.status_code == 200
    [card] = body_of(response)["cards"]
    assert (
        "**Could not be checked:** Implant records could not be read from the EHR"
        in (card["detail"])
    )


def test_next_link_to_another_server_is_refused(fhir: FhirStandIn) -> None:
    fhir.reset(Behaviour(page_size=1, next_link_base="http://127.0.0.2:9/fhir"))
    body = _without_prefetch(POSITIVE, fhir.base, keys=["conditions"])
    assert _412(_client().post(HOOK_URL, json=body))["reasons"] == {
        "conditions": "next-link-off-server"
    }
    assert all(s.path.startswith("/fhir/") for s in fhir.seen)


def test_server_outside_the_allow_list_is_never_contacted(fhir: FhirStandIn) -> None:
    client = _client(fhir_allowlist="https://ehr.example.org/fhir")
    body = _without_prefetch(POSITIVE, fhir.base, keys=["conditions"])
    error = _412(client.post(HOOK_URL, json=body))
    assert error["reasons"] == {"conditions": "fhir-server-not-allowed"}
    complete = vignette(POSITIVE)
    complete["fhirServer"] = fhir.base
    del complete["prefetch"]["devices"]  # optional: answered from prefetch, not fetched
    response = client.post(HOOK_URL, json=complete)
    assert response.status_code == 200
    assert fhir.seen == []


def test_production_allows_no_server_by_default(fhir: FhirStandIn) -> None:
    body = _without_prefetch(POSITIVE, fhir.base, keys=["conditions"])
    error = _412(_client(environment="production", require_auth=False).post(HOOK_URL, json=body))
    assert error["reasons"] == {"conditions": "fhir-server-not-allowed"}
    assert fhir.seen == []


def test_no_fhir_server_is_412_naming_it() -> None:
    body = vignette(POSITIVE)
    del body["fhirServer"]
    del body["prefetch"]["conditions"]
    assert _412(_client().post(HOOK_URL, json=body))["reasons"] == {"conditions": "no-fhir-server"}


def test_fallback_over_http_gives_the_cards(fhir: FhirStandIn) -> None:
    response = _client().post(HOOK_URL, json=_without_prefetch(POSITIVE, fhir.base))
    assert response.status_code == 200
    assert len(body_of(response)["cards"]) == 1


@pytest.mark.parametrize(
    ("allow", "url", "allowed"),
    [
        ("https://ehr.example.org/fhir", "https://ehr.example.org/fhir", True),
        ("https://ehr.example.org/fhir", "https://ehr.example.org/fhir/", True),
        ("https://ehr.example.org/fhir", "https://ehr.example.org/fhir/R4", True),
        ("https://ehr.example.org/fhir", "https://ehr.example.org/fhirx", False),
        ("https://ehr.example.org/fhir", "https://ehr.example.org.evil.test/fhir", False),
        ("https://ehr.example.org/fhir", "http://ehr.example.org/fhir", False),
        ("https://ehr.example.org/fhir", "https://user:pw@ehr.example.org/fhir", False),
        ("https://ehr.example.org/fhir", "https://ehr.example.org:8443/fhir", False),
        ("loopback", "http://127.0.0.1:8080/fhir", True),
        ("loopback", "http://127.9.9.9/fhir", True),
        ("loopback", "http://[::1]:5000/fhir", True),
        ("loopback", "http://localhost/fhir", True),
        ("loopback", "http://10.0.0.1/fhir", False),
        ("loopback", "file:///etc/passwd", False),
        ("loopback", "http://127.0.0.1:notaport/fhir", False),
        ("", "http://127.0.0.1/fhir", False),
    ],
)
def test_allow_list(allow: str, url: str, allowed: bool) -> None:
    assert AllowList.parse(allow).allows(url) is allowed


def test_fetch_of_the_raw_request_is_not_mutated(fhir: FhirStandIn, engine: CdsEngine) -> None:
    body = _without_prefetch(POSITIVE, fhir.base)
    before = copy.deepcopy(body)
    engine.evaluate("salivary-post-treatment-imaging-order-select", body, fetcher=_fetcher())
    assert body == before


def test_an_incomplete_prefetch_fetched_whole_says_what_the_complete_record_says(
    engine: CdsEngine, fhir: FhirStandIn
) -> None:
    """The two-page vignette, fetched whole from the server (an empty Device search): the
    card a complete, empty Device search gives (MRI preferred), where the prefetch said nothing."""
    name = "treated_parotid_cancer_ct_neck_devices_on_two_pages"
    service = OUTCOMES[name]["service"]
    by_prefetch = engine.evaluate(service, vignette(name), lambda: "u", TODAY)
    assert by_prefetch.rules == ()
    body = vignette(name)
    body["fhirServer"] = fhir.base
    fetched = engine.evaluate(service, body, lambda: "u", TODAY, _fetcher())
    assert fetched.fetched == ("devices",)
    assert fetched.silent_rules == ("ct-neck-mri-preferred",)  # it ships silent (issue 27)
