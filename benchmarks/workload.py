"""Realistic hook requests of a chosen size, generated deterministically from a seed.

A "typical" request carries about 50 prefetched resources, a "large" one about 2,000 (a long
history: years of encounter diagnoses, labs, imaging and reports), and a "negative" one is a
typical record without a salivary cancer. Every request selects one MRI neck draft.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cds_service.fhir import build as fb
from cds_service.knowledge.codesystems import ICD10CM

ROOT = Path(__file__).resolve().parent.parent
BASE_VIGNETTE = (
    ROOT / "fhir_examples" / "parotid_mec_after_parotidectomy_and_imrt_local_mri_neck.json"
)
LOCAL_LAB = "http://hospital.example.org/fhir/CodeSystem/lab-orderables"
LOCAL_IMAGING = "http://hospital.example.org/fhir/CodeSystem/imaging-orderables"
COMORBIDITIES = [
    ("I10", "Essential (primary) hypertension"),
    ("E11.9", "Type 2 diabetes mellitus without complications"),
    ("E78.5", "Hyperlipidemia, unspecified"),
    ("Z87.891", "Personal history of nicotine dependence"),
]
LABS = ["CBC WITH DIFFERENTIAL", "BASIC METABOLIC PANEL", "TSH", "HEMOGLOBIN A1C", "LIPID PANEL"]
IMAGING = [
    "XR CHEST 2 VIEWS",
    "CT CHEST W CONTRAST",
    "US ABDOMEN COMPLETE",
    "MRI BRAIN W WO CONTRAST",
]
SIZES = {"typical": 50, "large": 2000, "negative": 50}


def _day(rng: random.Random) -> str:
    return f"{rng.randint(2012, 2026)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _filler(pid: str, index: int, rng: random.Random) -> dict[str, Any]:
    kind = rng.choices(
        ["Condition", "Procedure", "ServiceRequest", "ImagingStudy", "DiagnosticReport"],
        weights=[20, 15, 40, 8, 17],
    )[0]
    rid = f"{kind.lower()}-{index}"
    if kind == "Condition":
        code, display = rng.choice(COMORBIDITIES)
        return fb.condition(
            pid,
            rid,
            [fb.coding(ICD10CM, code, display)],
            text=display,
            category="encounter-diagnosis",
            verification=None,
            recorded=_day(rng),
        )
    if kind == "Procedure":
        text = rng.choice(
            ["Dental extraction", "Colonoscopy", "Cataract extraction", "Flu vaccination"]
        )
        return fb.procedure(pid, rid, [], text=text, performed=_day(rng))
    if kind == "ServiceRequest":
        text = rng.choice(LABS + IMAGING[:2])
        return fb.service_request(
            pid,
            rid,
            codings=[fb.coding(LOCAL_LAB, f"L{index}", text)],
            text=text,
            status="completed",
            encounter=None,
            requester=None,
            authored=_day(rng),
        )
    if kind == "ImagingStudy":
        return fb.imaging_study(pid, rid, rng.choice(IMAGING), _day(rng))
    return fb.diagnostic_report(pid, rid, rng.choice(LABS), _day(rng))


def _bundle_key(resource_type: str) -> str:
    return {
        "Condition": "conditions",
        "Procedure": "procedures",
        "ServiceRequest": "serviceRequests",
        "ImagingStudy": "imagingStudies",
        "DiagnosticReport": "diagnosticReports",
    }[resource_type]


def make_request(kind: str, seed: int = 7) -> dict[str, Any]:
    """A complete order-select request of the named kind."""
    rng = random.Random(seed)
    request: dict[str, Any] = copy.deepcopy(json.loads(BASE_VIGNETTE.read_text()))
    pid = request["context"]["patientId"]
    prefetch = request["prefetch"]
    if kind == "negative":
        prefetch["conditions"]["entry"] = [
            e for e in prefetch["conditions"]["entry"] if e["resource"]["id"] != "parotid-mec"
        ]
    present = sum(
        len(v.get("entry", [])) if v.get("resourceType") == "Bundle" else 1
        for v in prefetch.values()
        if isinstance(v, dict)
    )
    for index in range(max(0, SIZES[kind] - present)):
        resource = _filler(pid, index, rng)
        prefetch[_bundle_key(resource["resourceType"])]["entry"].append({"resource": resource})
    return request


def resource_count(request: dict[str, Any]) -> int:
    return sum(
        len(v.get("entry", [])) if v.get("resourceType") == "Bundle" else 1
        for v in request["prefetch"].values()
        if isinstance(v, dict)
    )


#: Written into patient and resource ids by ``personalised``; the load generator replaces it with
#: a number of its own, so every patient it sends is new to the service.
PATIENT_MARK = "@P@"


def personalised(request: dict[str, Any], patient: str) -> dict[str, Any]:
    """The same request for another patient: the patient's id and every resource id (with the
    references, selections and fullUrls that name them) end in ``-<patient>``. Contents differ
    too, since every resource names its subject."""
    ids = {
        (node["resourceType"], node["id"])
        for node in json_objects(request)
        if isinstance(node.get("resourceType"), str) and isinstance(node.get("id"), str)
    }
    ids.add(("Patient", request["context"]["patientId"]))

    def renamed(reference: str) -> str:
        """``Type/id`` or a URL ending in it, renamed when it names a resource of the request."""
        parts = reference.rsplit("/", 2)
        named = len(parts) >= 2 and (parts[-2], parts[-1]) in ids
        return f"{reference}-{patient}" if named else reference

    def rewrite(node: Any) -> Any:
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        if not isinstance(node, dict):
            return node
        out = {key: rewrite(value) for key, value in node.items()}
        if isinstance(out.get("resourceType"), str) and isinstance(out.get("id"), str):
            out["id"] = f"{out['id']}-{patient}"
        for key in ("reference", "fullUrl"):
            if isinstance(out.get(key), str):
                out[key] = renamed(out[key])
        return out

    copied: dict[str, Any] = rewrite(request)
    context = copied["context"]
    context["patientId"] = f"{context['patientId']}-{patient}"
    if "selections" in context:
        context["selections"] = [renamed(s) for s in context["selections"]]
    return copied


def json_objects(node: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object in a document, the root included, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from json_objects(value)
    elif isinstance(node, list):
        for item in node:
            yield from json_objects(item)


#: The drafts of an ordering session, in the order they are selected: the first is the typical
#: request's own "MRI NECK SOFT TISSUE W WO CONTRAST".
SESSION_DRAFTS = [
    ("ct-neck-2", "CT NECK WO CONTRAST"),
    ("us-neck-3", "US NECK SOFT TISSUE"),
    ("mri-neck-4", "MRI NECK W/O CONTRAST"),
    ("lab-5", "CBC WITH DIFFERENTIAL"),
]
ORDER_SELECT = "salivary-post-treatment-imaging-order-select"
ORDER_SIGN = "salivary-post-treatment-imaging-order-sign"


def session_calls(selects: int, seed: int = 7) -> list[tuple[str, dict[str, Any]]]:
    """One ordering session as an EHR sends it: ``selects`` order-select calls (2-5), each
    selecting one more draft, then order-sign with every draft; the same prefetched resources
    (the typical request's) throughout. Returns (service id, request) pairs."""
    if not 2 <= selects <= 1 + len(SESSION_DRAFTS):
        raise ValueError(f"a session selects 2 to {1 + len(SESSION_DRAFTS)} drafts")
    typical = make_request("typical", seed)
    pid = typical["context"]["patientId"]
    first = typical["context"]["draftOrders"]["entry"][0]["resource"]
    drafts = [first] + [
        fb.service_request(pid, rid, codings=[fb.coding(LOCAL_IMAGING, f"S{i}", name)], text=name)
        for i, (rid, name) in enumerate(SESSION_DRAFTS[: selects - 1])
    ]
    calls = []
    for count in range(1, selects + 1):
        request = copy.deepcopy(typical)
        request["context"]["draftOrders"] = fb.collection(drafts[:count])
        request["context"]["selections"] = [f"ServiceRequest/{drafts[count - 1]['id']}"]
        calls.append((ORDER_SELECT, request))
    sign = copy.deepcopy(typical)
    sign["hook"] = "order-sign"
    del sign["context"]["selections"]
    sign["context"]["draftOrders"] = fb.collection(drafts)
    calls.append((ORDER_SIGN, sign))
    return calls


#: A closed loopback port: a non-imaging call that fetched anything would fail (and count as an
#: error in the benchmark), so the figures also prove that no FHIR request is made.
NO_FHIR_SERVER = "http://127.0.0.1:9/fhir"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
#: RxNorm codes of the Inferno CRD kit's and the CDS Hooks sandbox's medication examples.
MEDICATIONS = [
    ("617993", "Amoxicillin 120 MG/ML / clavulanate potassium 8.58 MG/ML Oral Suspension"),
    ("857001", "Acetaminophen 325 MG / Hydrocodone Bitartrate 10 MG Oral Tablet"),
]


def _medication(pid: str, rid: str, code: str, name: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": code, "display": name}],
            "text": name,
        },
        "subject": {"reference": f"Patient/{pid}"},
        "authoredOn": "2026-11-24",
        "requester": {"reference": "Practitioner/dr-okafor"},
        "dosageInstruction": [{"text": "5 mL bid x 10 days"}],
    }


def non_imaging_calls() -> list[tuple[str, dict[str, Any]]]:
    """Medication and lab calls as EHRs send them most of the day: no prefetch, a FHIR server
    named (a closed port here), order-select of one medication, of a lab order, and order-sign
    of both. Returns (service id, request) pairs."""
    typical = make_request("typical")
    pid = typical["context"]["patientId"]
    lab = fb.service_request(
        pid, "lab-cbc", codings=[fb.coding(LOCAL_LAB, "LAB005", LABS[0])], text=LABS[0]
    )
    calls = []
    for index, (code, name) in enumerate(MEDICATIONS):
        medication = _medication(pid, f"med-{index}", code, name)
        for selected in (medication, lab):
            calls.append((ORDER_SELECT, _bare_call(typical, [medication, lab], selected)))
    sign = _bare_call(typical, [_medication(pid, "med-0", *MEDICATIONS[0]), lab], None)
    sign["hook"] = "order-sign"
    calls.append((ORDER_SIGN, sign))
    return calls


def _bare_call(
    typical: dict[str, Any], drafts: list[dict[str, Any]], selected: dict[str, Any] | None
) -> dict[str, Any]:
    context = typical["context"]
    request: dict[str, Any] = {
        "hookInstance": typical["hookInstance"],
        "hook": "order-select",
        "fhirServer": NO_FHIR_SERVER,
        "context": {
            "userId": context["userId"],
            "patientId": context["patientId"],
            "draftOrders": fb.collection(drafts),
        },
    }
    if selected is not None:
        request["context"]["selections"] = [f"{selected['resourceType']}/{selected['id']}"]
    return request


def mix_calls(
    imaging_share: float = 0.15, size: int = 20
) -> list[tuple[bool, str, dict[str, Any]]]:
    """A hospital-like mix, as (imaging, service id, request): ``imaging_share`` of the calls
    are the typical imaging order-select with its prefetch, the rest non-imaging calls without
    prefetch; imaging calls spread evenly (with 20 calls: 3 imaging, 17 non-imaging)."""
    imaging = round(size * imaging_share)
    others = non_imaging_calls()
    every = size // imaging
    calls: list[tuple[bool, str, dict[str, Any]]] = []
    for index in range(size):
        if index % every == every - 1 and sum(1 for c in calls if c[0]) < imaging:
            calls.append((True, ORDER_SELECT, make_request("typical")))
        else:
            service, request = others[index % len(others)]
            calls.append((False, service, request))
    return calls
