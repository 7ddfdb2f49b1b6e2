"""Every order a suggestion creates or updates is one an EHR can accept: valid FHIR R4, and
carrying what the US Core and Da Vinci CRD ServiceRequest profiles require.

The required elements, from the profiles' definitions:
- US Core ServiceRequest (hl7.fhir.us.core, StructureDefinition us-core-servicerequest, 7.0.0):
  ``status`` 1..1, ``intent`` 1..1, ``code`` 1..1, ``subject`` 1..1 (Reference to a Patient), all
  must-support; ``authoredOn`` and ``requester`` must-support.
- Da Vinci CRD ServiceRequest (hl7.fhir.us.davinci-crd, ``profile-servicerequest``, parent US Core
  ServiceRequest 7.0.0; HL7/davinci-crd ``input/fsh/profiles/ServiceRequest.fsh``): ``code 1..``,
  ``authoredOn 1..``, ``requester 1..`` only Reference(US Core Practitioner or HRex
  PractitionerRole); ``status`` is "draft" when using order-select or an initial order-sign.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fhir.resources.R4B.servicerequest import ServiceRequest

from cds_service.contract.errors import CdsError
from cds_service.engine import CdsEngine
from tests.conftest import SERVICE_ID, vignette, vignette_book

#: element -> why it must be there (the profile that requires it).
REQUIRED = {
    "status": "US Core 1..1",
    "intent": "US Core 1..1",
    "code": "US Core 1..1, CRD 1..",
    "subject": "US Core 1..1",
    "authoredOn": "CRD 1..",
    "requester": "CRD 1..",
}
REQUESTER = re.compile(r"^(Practitioner|PractitionerRole)/[A-Za-z0-9\-.]{1,64}$")


def _ordered(response: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for card in response["cards"]:
        for suggestion in card.get("suggestions", []):
            for action in suggestion["actions"]:
                if action["type"] in ("create", "update"):
                    yield action["type"], action["resource"]


def _suggested_orders(engine: CdsEngine) -> list[tuple[str, str, dict[str, Any], str]]:
    found = []
    for name, v in vignette_book().vignettes.items():
        try:
            outcome = engine.evaluate(v.service, vignette(name))
        except CdsError:  # vignettes answered with an error suggest nothing
            continue
        patient = v.request["context"]["patientId"]
        for kind, resource in _ordered(outcome.response.to_json()):
            found.append((name, kind, resource, patient))
    return found


def test_there_are_created_and_updated_orders_to_check(engine: CdsEngine) -> None:
    kinds = {kind for _, kind, _, _ in _suggested_orders(engine)}
    assert kinds == {"create", "update"}


def test_every_suggested_order_meets_us_core_and_crd(engine: CdsEngine) -> None:
    checked = 0
    for name, kind, resource, patient in _suggested_orders(engine):
        where = f"{name} {kind} {resource.get('id', '(new)')}"
        ServiceRequest.model_validate(resource)
        missing = [f"{e} ({why})" for e, why in REQUIRED.items() if not resource.get(e)]
        assert not missing, f"{where}: lacks {missing}"
        assert resource["status"] == "draft", where
        assert resource["subject"]["reference"] == f"Patient/{patient}", where
        assert REQUESTER.match(resource["requester"]["reference"]), where
        assert resource["code"].get("coding"), where
        checked += 1
    assert checked >= 20


def _without_requester_or_date(name: str) -> dict[str, Any]:
    body = vignette(name)
    for entry in body["context"]["draftOrders"]["entry"]:
        entry["resource"].pop("requester", None)
        entry["resource"].pop("authoredOn", None)
    return body


def test_the_user_in_context_becomes_the_requester(engine: CdsEngine) -> None:
    """A draft without requester or date: every order suggested is requested by the user in
    context and authored today (the call's date)."""
    body = _without_requester_or_date("parotid_mec_after_parotidectomy_and_imrt_local_mri_neck")
    body["context"]["userId"] = "PractitionerRole/radiology-resident-7"
    response = engine.evaluate(SERVICE_ID, body).response.to_json()
    orders = [resource for _, resource in _ordered(response)]
    assert orders
    for resource in orders:
        assert resource["requester"] == {"reference": "PractitionerRole/radiology-resident-7"}
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", resource["authoredOn"])


@pytest.mark.parametrize("user", ["Patient/pt-parotid-mec", "RelatedPerson/r1", "dr-okafor"])
def test_a_user_who_is_no_practitioner_is_never_the_requester(engine: CdsEngine, user: str) -> None:
    """Only a Practitioner or PractitionerRole may be the requester (CRD): another user id is
    left out rather than put on the order."""
    body = _without_requester_or_date("parotid_mec_after_parotidectomy_and_imrt_local_mri_neck")
    body["context"]["userId"] = user
    response = engine.evaluate(SERVICE_ID, body).response.to_json()
    orders = [resource for _, resource in _ordered(response)]
    assert orders and all("requester" not in resource for resource in orders)


def test_the_drafts_own_requester_and_date_are_kept(engine: CdsEngine) -> None:
    body = vignette("parotid_mec_after_parotidectomy_and_imrt_local_mri_neck")
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    draft["requester"] = {"reference": "Practitioner/dr-attending"}
    draft["authoredOn"] = "2026-11-20T08:30:00Z"
    response = engine.evaluate(SERVICE_ID, body).response.to_json()
    updates = [resource for kind, resource in _ordered(response) if kind == "update"]
    assert updates
    for resource in updates:
        assert resource["requester"] == {"reference": "Practitioner/dr-attending"}
        assert resource["authoredOn"] == "2026-11-20T08:30:00Z"
