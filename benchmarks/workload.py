"""Realistic hook requests of a chosen size, generated deterministically from a seed.

A "typical" request carries about 50 prefetched resources, a "large" one about 2,000 (a long
history: years of encounter diagnoses, labs, imaging and reports), and a "negative" one is a
typical record without a salivary cancer. Every request selects one MRI neck draft.
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

from cds_service import fhir_build as fb
from cds_service.codesystems import ICD10CM

ROOT = Path(__file__).resolve().parent.parent
BASE_VIGNETTE = (
    ROOT / "fhir_examples" / "parotid_mec_after_parotidectomy_and_imrt_local_mri_neck.json"
)
LOCAL_LAB = "http://hospital.example.org/fhir/CodeSystem/lab-orderables"
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
