"""What an attack run found, each reproduced: another patient's data, the allow-list bypassed
with dot segments, 500s on shape errors, contradictory duplicates, amplification."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from cds_service.config import Settings
from cds_service.fhir.allowlist import AllowList
from cds_service.fhir.records import patient_of
from tests.conftest import HOOK_URL, body_of, build_app, vignette
from tests.fhir_standin import Behaviour, FhirStandIn

POSITIVE = "parotid_mec_after_parotidectomy_and_imrt_local_mri_neck"
PATIENT = "pt-parotid-mec"


def _post(client: FlaskClient, body: dict[str, Any]) -> Any:
    return client.post(HOOK_URL, json=body)


def _cards(client: FlaskClient, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = _post(client, body)
    assert response.status_code == 200, response.get_json()
    cards: list[dict[str, Any]] = body_of(response)["cards"]
    return cards


def _entries(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = body["prefetch"][key]["entry"]
    return entries


def _record_resources(body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for key in ("conditions", "procedures"):
        for entry in _entries(body, key):
            yield entry["resource"]


# --- 1. another patient's data -------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "patient"),
    [
        ("Patient/p-1", "p-1"),
        ("Patient/p-1/_history/2", "p-1"),
        ("https://ehr.example.org/fhir/Patient/p-1", "p-1"),
        ("https://ehr.example.org/fhir/Patient/p-1/_history/2", "p-1"),
        ("#contained-patient", None),
        ("urn:uuid:2f1a9a1e-0000-4000-8000-000000000001", None),
        ("Group/g-1", None),
        ("Patient/", None),
        ("Patient/p 1", None),
        ("Patient?identifier=123", None),
        ("Encounter/e/Patient/p-1", None),
    ],
)
def test_references_are_read_as_fhir_writes_them(reference: str, patient: str | None) -> None:
    assert patient_of(reference) == patient


@pytest.mark.parametrize(
    "subject",
    [
        "Patient/someone-else",
        "Patient/someone-else/_history/2",
        "https://ehr.example.org/fhir/Patient/someone-else/_history/2",
        "#contained",
        "urn:uuid:2f1a9a1e-0000-4000-8000-000000000001",
    ],
)
def test_another_patients_record_gives_no_card(client: FlaskClient, subject: str) -> None:
    """The attack: every Condition and Procedure of an in-scope vignette pointed at
    ``Patient/someone-else/_history/2`` still gave the card (the pattern was anchored at the
    end). A subject that cannot be tied to the context patient now counts as not theirs."""
    body = vignette(POSITIVE)
    for resource in _record_resources(body):
        resource["subject"] = {"reference": subject}
    assert _cards(client, body) == []


@pytest.mark.parametrize(
    "subject",
    [f"Patient/{PATIENT}/_history/3", f"https://ehr.example.org/fhir/Patient/{PATIENT}"],
)
def test_the_patients_own_versioned_or_absolute_references_still_count(
    client: FlaskClient, subject: str
) -> None:
    body = vignette(POSITIVE)
    for resource in _record_resources(body):
        resource["subject"] = {"reference": subject}
    assert len(_cards(client, body)) == 1


def test_a_resource_with_an_identifier_only_subject_is_not_used(client: FlaskClient) -> None:
    body = vignette(POSITIVE)
    for resource in _record_resources(body):
        resource["subject"] = {"identifier": {"value": "MRN-1"}}
    assert _cards(client, body) == []


def test_a_draft_for_another_patient_is_not_judged(client: FlaskClient) -> None:
    body = vignette(POSITIVE)
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    draft["subject"] = {"reference": "Patient/someone-else/_history/2"}
    assert _cards(client, body) == []
    draft.pop("subject")  # no subject: the patient in context
    assert len(_cards(client, body)) == 1


@pytest.fixture
def standin() -> Iterator[FhirStandIn]:
    server = FhirStandIn(
        [
            copy.deepcopy(e["resource"])
            for key in ("conditions", "procedures")
            for e in _entries(vignette(POSITIVE), key)
        ]
    ).start()
    yield server
    server.stop()


def _fallback_client(**settings: Any) -> FlaskClient:
    return build_app(Settings(environment="development", **settings)).test_client()


def _without(body: dict[str, Any], base: str, *keys: str) -> dict[str, Any]:
    body["fhirServer"] = base
    body["fhirAuthorization"] = {"access_token": "ehr-token", "token_type": "Bearer"}
    for key in keys:
        body["prefetch"].pop(key)
    return body


def test_another_patients_data_from_the_fhir_server_gives_no_card(standin: FhirStandIn) -> None:
    client = _fallback_client()
    body = _without(vignette(POSITIVE), standin.base, "conditions", "procedures")
    assert len(_cards(client, body)) == 1  # the stand-in serves the patient's own record
    foreign: list[dict[str, Any]] = []
    for resource in standin.resources:
        copied = dict(copy.deepcopy(resource))
        copied["id"] = "other-" + copied["id"]
        copied["subject"] = {"reference": "Patient/someone-else/_history/2"}
        foreign.append(copied)
    standin.resources.clear()
    standin.reset(
        Behaviour(
            extra={
                kind: [r for r in foreign if r["resourceType"] == kind]
                for kind in ("Condition", "Procedure")
            }
        )
    )
    body = _without(vignette(POSITIVE), standin.base, "conditions", "procedures")
    assert _cards(client, body) == []


# --- 2. dot segments past the allow-list ----------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/fhir/../admin",
        "http://127.0.0.1:8080/fhir/%2e%2e/admin",
        "http://127.0.0.1:8080/fhir/%2E%2e/admin",
        "http://127.0.0.1:8080/fhir/./Condition",
        "http://127.0.0.1:8080/fhir/..%2fadmin",
        "http://127.0.0.1:8080/fhir%2fadmin",
        "http://127.0.0.1:8080/fhir/..\\admin",
        "http://127.0.0.1:8080/fhir/%5c..%5cadmin",
    ],
)
def test_dot_segments_and_encoded_separators_are_refused(url: str) -> None:
    allow = AllowList(("http://127.0.0.1:8080/fhir",))
    assert allow.allows("http://127.0.0.1:8080/fhir")
    assert allow.allows("http://127.0.0.1:8080/fhir/Condition?patient=p", query=True)
    assert allow.allows("http://127.0.0.1:8080/fhir/%43ondition?patient=p", query=True)
    assert not allow.allows(url)
    assert not allow.allows(url, query=True)


@pytest.mark.parametrize("trick", ["/../admin", "/%2e%2e/admin", "/%2E%2E/admin"])
def test_the_ehr_token_never_goes_outside_the_allowed_base(
    standin: FhirStandIn, trick: str
) -> None:
    client = _fallback_client(fhir_allowlist=standin.base)
    body = _without(vignette(POSITIVE), standin.base + trick, "conditions")
    response = _post(client, body)
    assert response.status_code == 412
    assert body_of(response)["reasons"] == {"conditions": "fhir-server-not-allowed"}
    assert standin.seen == []


def test_a_next_link_with_dot_segments_is_not_followed(standin: FhirStandIn) -> None:
    client = _fallback_client(fhir_allowlist=standin.base)
    standin.reset(Behaviour(next_link_path="/fhir/../admin/secret"))
    body = _without(vignette(POSITIVE), standin.base, "conditions")
    response = _post(client, body)
    assert response.status_code == 412
    assert body_of(response)["reasons"] == {"conditions": "url-not-allowed"}
    assert all(seen.path.startswith("/fhir/Condition") for seen in standin.seen)


# --- 3. shapes ------------------------------------------------------------------------------


def _nested_extension(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {"url": "x", "valueString": "end"}
    for _ in range(levels):
        node = {"url": "x", "extension": [node]}
    return node


#: (where, value, status, the field a 400 names, or the cards a 200 holds)
SHAPES: list[tuple[str, Any, int, str | int]] = [
    ("entry", 1, 400, "prefetch.conditions.entry"),
    ("resourceType", [], 200, 0),  # the cancer cannot be read: skipped, say less
    ("coding", 1, 200, 0),
    ("extension", 5, 200, 0),
    ("link", 5, 200, 1),  # not read at all: the record is whole
    ("nesting", 300, 200, 0),  # the cancer nests too deep to be read: skipped, say less
]


@pytest.mark.parametrize(("where", "value", "status", "expected"), SHAPES)
def test_shape_errors_in_prefetch_are_4xx_or_skipped(
    client: FlaskClient, where: str, value: Any, status: int, expected: str | int
) -> None:
    body = vignette(POSITIVE)
    conditions = body["prefetch"]["conditions"]
    cancer = conditions["entry"][-1]["resource"]
    if where == "entry":
        conditions["entry"] = value
    elif where == "resourceType":
        cancer["resourceType"] = value
    elif where == "coding":
        cancer["code"]["coding"] = value
    elif where == "extension":
        cancer["extension"] = value
    elif where == "link":
        conditions["link"] = value
    else:
        cancer["extension"] = [_nested_extension(value)]
    response = _post(client, body)
    assert response.status_code == status, response.get_json()
    if status == 400:
        assert body_of(response)["field"] == expected
    else:
        assert len(body_of(response)["cards"]) == expected


@pytest.mark.parametrize(
    ("served", "reason"),
    [
        ({"resourceType": "Bundle", "entry": 1}, "bundle-entry-not-an-array"),
        ({"resourceType": []}, "not-fhir"),
        ({"resourceType": "Bundle", "entry": [], "link": 5}, None),
        (
            {"resourceType": "Bundle", "entry": [{"resource": _nested_extension(300)}]},
            "too-deeply-nested",
        ),
        (
            {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Condition"}}]},
            None,
        ),
    ],
)
def test_shape_errors_from_the_fhir_server_are_412_or_skipped(
    standin: FhirStandIn, served: Any, reason: str | None
) -> None:
    client = _fallback_client()
    standin.reset(Behaviour(body=served))
    body = _without(vignette(POSITIVE), standin.base, "conditions")
    response = _post(client, body)
    if reason is None:
        assert response.status_code == 200
        assert body_of(response)["cards"] == []  # no cancer could be read: silence
    else:
        assert response.status_code == 412
        assert body_of(response)["reasons"] == {"conditions": reason}


# --- 5. contradictory duplicates -----------------------------------------------------------


@pytest.mark.parametrize("erroneous_first", [True, False])
def test_the_same_condition_twice_with_different_content_says_less(
    client: FlaskClient, erroneous_first: bool
) -> None:
    body = vignette(POSITIVE)
    entries = _entries(body, "conditions")
    cancer = next(e for e in entries if e["resource"]["id"] == "parotid-mec")
    erroneous = copy.deepcopy(cancer)
    erroneous["resource"]["verificationStatus"]["coding"][0]["code"] = "entered-in-error"
    entries.insert(0 if erroneous_first else len(entries), erroneous)
    assert _cards(client, body) == []


def test_the_same_condition_twice_unchanged_counts_once(client: FlaskClient) -> None:
    body = vignette(POSITIVE)
    entries = _entries(body, "conditions")
    entries.append(copy.deepcopy(entries[-1]))
    assert len(_cards(client, body)) == 1


# --- 9. amplification -----------------------------------------------------------------------


def _with_drafts(count: int, same_id: bool = False) -> dict[str, Any]:
    body = vignette(POSITIVE)
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    drafts = []
    for index in range(count):
        copied = copy.deepcopy(draft)
        copied["id"] = draft["id"] if same_id else f"mri-{index}"
        drafts.append({"resource": copied})
    body["context"]["draftOrders"]["entry"] = drafts
    body["context"]["selections"] = [f"ServiceRequest/{d['resource']['id']}" for d in drafts]
    return body


def test_too_many_orders_in_one_call_is_a_400_naming_the_limit(client: FlaskClient) -> None:
    response = _post(client, _with_drafts(51))
    assert response.status_code == 400
    assert "at most 50" in body_of(response)["message"]
    assert len(_cards(client, _with_drafts(50))) == 50


def test_the_same_draft_twice_gets_one_card(client: FlaskClient) -> None:
    assert len(_cards(client, _with_drafts(2, same_id=True))) == 1


def test_two_different_drafts_with_one_id_get_no_card(client: FlaskClient) -> None:
    body = _with_drafts(2, same_id=True)
    body["context"]["draftOrders"]["entry"][1]["resource"]["code"]["text"] = "CT NECK"
    assert _cards(client, body) == []


@pytest.mark.parametrize("where", ["draft", "duplicate", "context", "unread resource"])
def test_nesting_deep_enough_to_exhaust_recursion_is_never_a_500(
    client: FlaskClient, where: str
) -> None:
    """400 extension levels are 800 JSON levels: orjson reads them (its limit is 1,024), and
    any recursive reader (cleaning, equality, validation) would exhaust Python's stack."""
    body = vignette(POSITIVE)
    marker = {"url": "deep-marker"}
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    if where == "draft":
        draft["extension"] = [marker]
    elif where == "duplicate":
        entries = _entries(body, "conditions")
        twin = copy.deepcopy(entries[-1])
        twin["resource"]["extension"] = [marker]
        entries.append(twin)
    elif where == "context":
        body["context"]["x-vendor"] = marker
    else:
        _entries(body, "conditions")[0]["resource"]["extension"] = [marker]
    levels = 400
    deep = '{"url": "x", "extension": [' * levels + '{"url": "end"}' + "]}" * levels
    raw = json.dumps(body).replace('{"url": "deep-marker"}', deep)
    response = client.post(HOOK_URL, data=raw, content_type="application/json")
    assert response.status_code == 200
    cards = body_of(response)["cards"]
    assert len(cards) == (1 if where in ("context", "unread resource") else 0)
