"""A small FHIR R4 builder: the resources and hook requests that the vignettes, the replay
command, the benchmarks and the tests make. One place, so that a resource made for a test looks
like one made for a vignette, and a change of shape is made once."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cds_service.knowledge.codesystems import CPT

CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
MCODE_HISTOLOGY = (
    "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-histology-morphology-behavior"
)
EXAMPLE_FHIR_BASE = "https://ehr.example.org/fhir"

Resource = dict[str, Any]
Coding = dict[str, str]


def coding(system: str, code: str, display: str | None = None) -> Coding:
    found = {"system": system, "code": code}
    if display is not None:
        found["display"] = display
    return found


def patient(pid: str, gender: str, birth_date: str) -> Resource:
    return {"resourceType": "Patient", "id": pid, "gender": gender, "birthDate": birth_date}


def _status(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def condition(
    pid: str,
    cid: str,
    codings: Sequence[Coding],
    *,
    text: str | None = None,
    onset: str | None = None,
    recorded: str | None = None,
    clinical: str = "active",
    verification: str | None = "confirmed",
    category: str = "problem-list-item",
    body_site: Sequence[Coding] | None = None,
    histology: Coding | None = None,
) -> Resource:
    c: Resource = {
        "resourceType": "Condition",
        "id": cid,
        "clinicalStatus": _status(CONDITION_CLINICAL, clinical),
        "category": [_status(CONDITION_CATEGORY, category)],
        "code": {"coding": list(codings)} if codings else {},
        "subject": {"reference": f"Patient/{pid}"},
    }
    if verification:
        c["verificationStatus"] = _status(CONDITION_VERIFICATION, verification)
    if text:
        c["code"]["text"] = text
    if histology:
        c["extension"] = [{"url": MCODE_HISTOLOGY, "valueCodeableConcept": {"coding": [histology]}}]
    if body_site:
        c["bodySite"] = [{"coding": list(body_site)}]
    if onset:
        c["onsetDateTime"] = onset
    if recorded:
        c["recordedDate"] = recorded
    return c


def procedure(
    pid: str,
    prid: str,
    codings: Sequence[Coding],
    *,
    text: str | None = None,
    status: str = "completed",
    performed: str | None = None,
    period: tuple[str, str | None] | None = None,
    reason: str | None = None,
) -> Resource:
    """A Procedure; a ``period`` whose end is None is sent without one (not charted yet)."""
    p: Resource = {
        "resourceType": "Procedure",
        "id": prid,
        "status": status,
        "code": {"coding": list(codings)} if codings else {},
        "subject": {"reference": f"Patient/{pid}"},
    }
    if text:
        p["code"]["text"] = text
    if performed:
        p["performedDateTime"] = performed
    if period:
        p["performedPeriod"] = {"start": period[0]}
        if period[1] is not None:
            p["performedPeriod"]["end"] = period[1]
    if reason:
        p["reasonReference"] = [{"reference": f"Condition/{reason}"}]
    return p


def service_request(
    pid: str,
    srid: str,
    *,
    codings: Sequence[Coding] | None = None,
    text: str | None = None,
    status: str = "draft",
    encounter: str | None = "enc-1",
    requester: str | None = "Practitioner/dr-okafor",
    authored: str | None = None,
    reason: str | None = None,
    occurrence: str | None = None,
) -> Resource:
    """An imaging order: a draft by default, or a past one (``status="completed"``)."""
    s: Resource = {
        "resourceType": "ServiceRequest",
        "id": srid,
        "status": status,
        "intent": "order",
        "code": {},
        "subject": {"reference": f"Patient/{pid}"},
    }
    if requester:
        s["requester"] = {"reference": requester}
    if authored:
        s["authoredOn"] = authored
    if codings:
        s["code"]["coding"] = list(codings)
    if text:
        s["code"]["text"] = text
    if encounter:
        s["encounter"] = {"reference": f"Encounter/{encounter}"}
    if reason:
        s["reasonReference"] = [{"reference": f"Condition/{reason}"}]
    if occurrence:
        s["occurrenceDateTime"] = occurrence
    return s


def draft_order(pid: str, srid: str, text: str | None = None, cpt: str | None = None) -> Resource:
    """The smallest valid draft: a name and/or a CPT code, nothing else."""
    codings = [coding(CPT, cpt)] if cpt else None
    return service_request(pid, srid, codings=codings, text=text, encounter=None, requester=None)


def device(
    pid: str, did: str, name: str, status: str = "active", safety: str | None = None
) -> Resource:
    """A device by name; ``safety`` is its MR safety labelling (e.g. "MR Conditional")."""
    d: Resource = {
        "resourceType": "Device",
        "id": did,
        "status": status,
        "deviceName": [{"name": name, "type": "user-friendly-name"}],
        "type": {"text": name},
        "patient": {"reference": f"Patient/{pid}"},
    }
    if safety:
        d["safety"] = [{"text": safety}]
    return d


def allergy(
    pid: str,
    aid: str,
    substance: str,
    clinical: str = "active",
    severity: str | None = None,
    criticality: str | None = None,
    manifestation: str = "Hives",
) -> Resource:
    """An allergy to a substance named in text (how EHRs often record contrast allergies), with
    the reaction's severity and the allergy's criticality when given."""
    d: Resource = {
        "resourceType": "AllergyIntolerance",
        "id": aid,
        "clinicalStatus": _status(ALLERGY_CLINICAL, clinical),
        "verificationStatus": _status(ALLERGY_VERIFICATION, "confirmed"),
        "code": {"text": substance},
        "patient": {"reference": f"Patient/{pid}"},
    }
    if criticality:
        d["criticality"] = criticality
    if severity:
        d["reaction"] = [{"manifestation": [{"text": manifestation}], "severity": severity}]
    return d


def lab_result(
    pid: str, oid: str, codings: Sequence[Coding], value: float, unit: str, effective: str
) -> Resource:
    """A final numeric laboratory Observation (an eGFR)."""
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [_status(OBSERVATION_CATEGORY, "laboratory")],
        "code": {"coding": list(codings)},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": effective,
        "valueQuantity": {"value": value, "unit": unit},
    }


def imaging_study(pid: str, sid: str, description: str, started: str) -> Resource:
    return {
        "resourceType": "ImagingStudy",
        "id": sid,
        "status": "available",
        "subject": {"reference": f"Patient/{pid}"},
        "started": started,
        "description": description,
    }


def diagnostic_report(
    pid: str,
    rid: str,
    text: str,
    effective: str,
    status: str = "final",
    conclusion: str | None = None,
) -> Resource:
    report: Resource = {
        "resourceType": "DiagnosticReport",
        "id": rid,
        "status": status,
        "code": {"text": text},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": effective,
    }
    if conclusion:
        report["conclusion"] = conclusion
    return report


def next_page_link(key: str, patient_id: str) -> list[dict[str, str]]:
    """The ``link`` of a searchset's first page whose other pages were not sent (the
    ``_getpages`` form HAPI FHIR servers use)."""
    return [
        {"relation": "next", "url": f"{EXAMPLE_FHIR_BASE}?_getpages={key}-{patient_id}&_offset=20"}
    ]


def searchset(
    resources: Sequence[Mapping[str, Any]],
    base: str | None = EXAMPLE_FHIR_BASE,
    typed: bool = True,
) -> Resource:
    """A search result Bundle, each entry with its fullUrl on ``base`` (None: no fullUrl);
    ``typed=False`` leaves out Bundle.type, as some clients do."""
    entries = []
    for r in resources:
        entry: dict[str, Any] = {}
        if base:
            entry["fullUrl"] = f"{base}/{r['resourceType']}/{r['id']}"
        entry["resource"] = r
        entries.append(entry)
    bundle: Resource = {"resourceType": "Bundle"}
    if typed:
        bundle["type"] = "searchset"
    bundle.update(total=len(resources), entry=entries)
    return bundle


def collection(resources: Iterable[Mapping[str, Any]], typed: bool = True) -> Resource:
    bundle: Resource = {"resourceType": "Bundle"}
    if typed:
        bundle["type"] = "collection"
    bundle["entry"] = [{"resource": r} for r in resources]
    return bundle


def hook_request(
    hook: str,
    pid: str,
    drafts: Sequence[Mapping[str, Any]],
    prefetch: Mapping[str, Any],
    *,
    selections: Sequence[str] | None = None,
    user: str = "Practitioner/dr-okafor",
    encounter: str | None = "enc-1",
    hook_instance: str | None = None,
    fhir_server: str | None = EXAMPLE_FHIR_BASE,
    untyped_drafts: bool = False,
) -> Resource:
    """A complete CDS Hooks request; order-select gets its selections (default: every draft),
    patient-view no draft orders."""
    context: dict[str, Any] = {"userId": user, "patientId": pid}
    if encounter:
        context["encounterId"] = encounter
    if hook == "order-select":
        context["selections"] = list(
            selections if selections is not None else (f"ServiceRequest/{d['id']}" for d in drafts)
        )
    if hook != "patient-view":
        context["draftOrders"] = collection(drafts, typed=not untyped_drafts)
    request: Resource = {
        "hook": hook,
        "hookInstance": hook_instance or str(uuid.uuid5(uuid.NAMESPACE_URL, f"vignette:{pid}")),
    }
    if fhir_server:
        request["fhirServer"] = fhir_server
    request["context"] = context
    request["prefetch"] = dict(prefetch)
    return request
