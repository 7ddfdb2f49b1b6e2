"""Medication, diet and lab orders get an empty answer at once: no prefetch required, no FHIR
query, no card recorded. Most order-select and order-sign calls in a hospital are such orders.

The requests are built in the shapes of the Inferno Da Vinci CRD test kit's hook request fixtures
(inferno-framework/davinci-crd-test-kit, ``spec/fixtures/order_select_hook_request.json``,
``spec/fixtures/order_sign_hook_request.json`` and ``execution_scripts/prefetch/
order-select-request.json``), as read with the documentation search, not copied:
- order-select: ``selections`` naming a NutritionOrder and a MedicationRequest; ``draftOrders`` a
  Bundle *without* ``type`` holding both (an RxNorm-coded amoxicillin/clavulanate suspension with
  dosage and dispense details; the diet order's ``patient`` names another id than
  ``context.patientId``); ``fhirAuthorization`` with a sample bearer token; no ``prefetch``;
- order-sign: ``draftOrders`` a ``collection`` Bundle with ``fullUrl`` on each entry; no
  ``prefetch``;
- the prefetch variant: prefetch keys the service does not define (``patient``, ``encounter``,
  ``coverage``) and MedicationRequests referring to a Medication, with ``requester``
  Practitioner/PractitionerRole and ``authoredOn``.
The RxNorm code and display are the kit's own. Our additions: a laboratory ServiceRequest (a
local orderable, as in the lab vignette) among the drafts, because lab
orders are the other common non-imaging order, and ``fhirServer`` pointing at 127.0.0.1 where no
server listens (a real closed port: a fetch would fail and the required keys would be a 412),
or at a real loopback server that counts the requests it gets.
"""

from __future__ import annotations

import copy
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from structlog.testing import capture_logs

from cds_service.config import Settings
from cds_service.store.storage import issued_cards
from cds_service.web.runtime import runtime
from tests.conftest import SERVICE_ID, SIGN_SERVICE_ID, build_app, vignette
from tests.fhir_standin import FhirStandIn

PATIENT = "example"


def _closed_loopback_port() -> int:
    """A loopback port nobody listens on: bound by us, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _amoxicillin(rid: str, subject: str = PATIENT) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "meta": {"lastUpdated": "2018-04-30T13:25:40.845-04:00"},
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [
                {
                    "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                    "code": "617993",
                    "display": "Amoxicillin 120 MG/ML / clavulanate potassium 8.58 MG/ML "
                    "Oral Suspension",
                }
            ],
            "text": "Amoxicillin 120 MG/ML / clavulanate potassium 8.58 MG/ML Oral Suspension",
        },
        "subject": {"reference": f"Patient/{subject}"},
        "dosageInstruction": [
            {
                "text": "5 mL bid x 10 days",
                "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
            }
        ],
        "dispenseRequest": {"numberOfRepeatsAllowed": 1},
    }


def _pureed_diet(rid: str) -> dict[str, Any]:
    return {
        "resourceType": "NutritionOrder",
        "id": rid,
        "status": "draft",
        "intent": "order",
        "patient": {"reference": "Patient/1288992"},
        "dateTime": "2014-09-17",
        "orderer": {"reference": "Practitioner/example", "display": "Dr Adam Careful"},
        "oralDiet": {"type": [{"text": "Pureed diet"}]},
    }


def _lab(rid: str) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "id": rid,
        "status": "draft",
        "intent": "order",
        "code": {
            "coding": [
                {
                    "system": "http://example.org/fhir/CodeSystem/lab-orderables",
                    "code": "LAB005",
                    "display": "CBC WITH DIFFERENTIAL",
                }
            ],
            "text": "CBC WITH DIFFERENTIAL",
        },
        "subject": {"reference": f"Patient/{PATIENT}"},
    }


def order_select(fhir_server: str) -> dict[str, Any]:
    """The kit's order-select shape: untyped draftOrders, two selections, no prefetch."""
    return {
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "fhirServer": fhir_server,
        "hook": "order-select",
        "fhirAuthorization": {
            "access_token": "SAMPLE_TOKEN",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/Patient.read user/Observation.read",
            "subject": "cds-service",
        },
        "context": {
            "userId": "Practitioner/example",
            "patientId": PATIENT,
            "selections": [
                "NutritionOrder/pureeddiet-simple",
                "MedicationRequest/smart-MedicationRequest-103",
            ],
            "draftOrders": {
                "resourceType": "Bundle",
                "entry": [
                    {"resource": _pureed_diet("pureeddiet-simple")},
                    {"resource": _amoxicillin("smart-MedicationRequest-103")},
                ],
            },
        },
    }


def order_sign(fhir_server: str) -> dict[str, Any]:
    """The kit's order-sign shape: a collection Bundle with fullUrls, no prefetch; plus a lab."""
    request = order_select(fhir_server)
    request["hook"] = "order-sign"
    del request["context"]["selections"]
    drafts = [_pureed_diet("pureeddiet-simple"), _amoxicillin("smart-MedicationRequest-103")]
    drafts.append(_lab("creatinine-1"))
    request["context"]["draftOrders"] = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": f"{fhir_server}/{r['resourceType']}/{r['id']}", "resource": r}
            for r in drafts
        ],
    }
    return request


def with_other_prefetch(request: dict[str, Any]) -> dict[str, Any]:
    """The kit's prefetch variant: keys this service does not define, nothing it needs."""
    changed = copy.deepcopy(request)
    changed["context"]["encounterId"] = "forprefetch"
    changed["prefetch"] = {
        "patient": {"resourceType": "Patient", "id": PATIENT, "gender": "female"},
        "encounter": {"resourceType": "Encounter", "id": "forprefetch", "status": "in-progress"},
        "coverage": {"resourceType": "Bundle", "type": "searchset", "entry": []},
    }
    medication = {
        "resourceType": "MedicationRequest",
        "id": "forprefetch-rol",
        "status": "draft",
        "intent": "order",
        "medicationReference": {"reference": "Medication/med-medref"},
        "subject": {"reference": f"Patient/{PATIENT}"},
        "authoredOn": "2017-06-10T11:01:10-08:00",
        "requester": {"reference": "PractitionerRole/med-req"},
    }
    changed["context"]["draftOrders"]["entry"].append({"resource": medication})
    if "selections" in changed["context"]:
        changed["context"]["selections"].append("MedicationRequest/forprefetch-rol")
    return changed


REQUESTS = {
    "order-select": (SERVICE_ID, order_select),
    "order-sign": (SIGN_SERVICE_ID, order_sign),
    "order-select, other prefetch keys": (
        SERVICE_ID,
        lambda server: with_other_prefetch(order_select(server)),
    ),
    "order-sign, other prefetch keys": (
        SIGN_SERVICE_ID,
        lambda server: with_other_prefetch(order_sign(server)),
    ),
}


@pytest.fixture
def app() -> Iterator[Flask]:
    """The service as deployed in development: loopback FHIR servers allowed, so nothing but the
    fast path keeps it from fetching."""
    flask_app = build_app(Settings(environment="development"))
    yield flask_app
    runtime(flask_app).database.dispose()


@pytest.fixture(scope="module")
def counting_server() -> Iterator[FhirStandIn]:
    server = FhirStandIn().start()
    yield server
    server.stop()


def _issued_rows(app: Flask) -> list[Any]:
    runtime(app).card_log.flush()
    with runtime(app).database.sql.connect() as connection:
        return list(connection.execute(select(issued_cards)))


@pytest.mark.parametrize("case", sorted(REQUESTS))
def test_unreachable_fhir_server_no_prefetch_is_200_without_cards(app: Flask, case: str) -> None:
    service, build = REQUESTS[case]
    body = build(f"http://127.0.0.1:{_closed_loopback_port()}/r4")
    with capture_logs() as logs:
        response = app.test_client().post(f"/cds-services/{service}", json=body)
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"cards": []}
    [line] = [entry for entry in logs if entry["event"] == "hook"]
    assert line["no_imaging_order"] is True and line["fetched"] == []
    assert _issued_rows(app) == []


@pytest.mark.parametrize("case", sorted(REQUESTS))
def test_no_fhir_request_is_made(app: Flask, counting_server: FhirStandIn, case: str) -> None:
    """The same calls against a FHIR server that answers and counts: not one request."""
    service, build = REQUESTS[case]
    counting_server.reset()
    response = app.test_client().post(f"/cds-services/{service}", json=build(counting_server.base))
    assert response.status_code == 200
    assert response.get_json() == {"cards": []}
    assert counting_server.seen == []


def test_the_counting_server_does_count(app: Flask, counting_server: FhirStandIn) -> None:
    """The counter can fail: an imaging draft in the same shape, without prefetch, is fetched
    for (the server holds nothing for the patient, so no card, but every key was asked)."""
    counting_server.reset()
    body = order_select(counting_server.base)
    imaging = vignette("parotid_mec_after_parotidectomy_and_imrt_local_mri_neck")
    draft = imaging["context"]["draftOrders"]["entry"][0]["resource"]
    draft["subject"] = {"reference": f"Patient/{PATIENT}"}
    body["context"]["draftOrders"]["entry"].append({"resource": draft})
    body["context"]["selections"].append(f"ServiceRequest/{draft['id']}")
    response = app.test_client().post(f"/cds-services/{SERVICE_ID}", json=body)
    assert response.status_code == 200
    assert {seen.path.split("/")[-1] for seen in counting_server.seen} >= {
        "Condition",
        "Procedure",
    }


def test_an_imaging_draft_with_an_unreachable_server_is_still_412(app: Flask) -> None:
    """The fast path is only for calls without imaging: an imaging selection still needs data."""
    body = order_select(f"http://127.0.0.1:{_closed_loopback_port()}/r4")
    imaging = vignette("parotid_mec_after_parotidectomy_and_imrt_local_mri_neck")
    draft = imaging["context"]["draftOrders"]["entry"][0]["resource"]
    draft["subject"] = {"reference": f"Patient/{PATIENT}"}
    body["context"]["draftOrders"]["entry"].append({"resource": draft})
    body["context"]["selections"].append(f"ServiceRequest/{draft['id']}")
    response = app.test_client().post(f"/cds-services/{SERVICE_ID}", json=body)
    assert response.status_code == 412


def test_an_imaging_draft_not_selected_does_not_open_the_slow_path(app: Flask) -> None:
    """order-select judges the selections: an imaging draft already in the session but not
    selected now does not make a medication selection wait for FHIR."""
    body = order_select(f"http://127.0.0.1:{_closed_loopback_port()}/r4")
    imaging = vignette("parotid_mec_after_parotidectomy_and_imrt_local_mri_neck")
    draft = imaging["context"]["draftOrders"]["entry"][0]["resource"]
    draft["subject"] = {"reference": f"Patient/{PATIENT}"}
    body["context"]["draftOrders"]["entry"].append({"resource": draft})
    response = app.test_client().post(f"/cds-services/{SERVICE_ID}", json=body)
    assert response.status_code == 200 and response.get_json() == {"cards": []}
