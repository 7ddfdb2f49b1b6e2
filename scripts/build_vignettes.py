"""Write fhir_examples/: one complete order-select request per clinical vignette.

Run it after changing a vignette: ``python scripts/build_vignettes.py``. The JSON files it writes
are committed; the tests read those files, not this script. Every standard code used here is in
hooks/knowledge or in fhir_examples/background-codes.json with the source it was checked against.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "fhir_examples"
SERVICE = "salivary-post-treatment-imaging-order-select"
SIGN_SERVICE = "salivary-post-treatment-imaging-order-sign"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
SCT = "http://snomed.info/sct"
CPT = "http://www.ama-assn.org/go/cpt"
LOINC = "http://loinc.org"
ICDO3 = "http://terminology.hl7.org/CodeSystem/icd-o-3"
LOCAL = "http://hospital.example.org/fhir/CodeSystem/imaging-orderables"
LOCAL_LAB = "http://hospital.example.org/fhir/CodeSystem/lab-orderables"
MCODE_HISTOLOGY = (
    "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-histology-morphology-behavior"
)

REGIONS_SUMMARY = (
    "MRI may miss perineural spread: order MRI orbits face neck without and with IV contrast"
)
CONTRAST_SUMMARY = (
    "MRI needs both non-contrast and post-contrast sequences: "
    "order MRI orbits face neck w/o and w IV contrast"
)


def coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def patient(pid: str, gender: str, birth: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "gender": gender,
        "birthDate": birth,
    }


def condition(
    pid: str,
    cid: str,
    codings: list[dict[str, str]],
    *,
    text: str | None = None,
    onset: str | None = None,
    recorded: str | None = None,
    clinical: str = "active",
    verification: str | None = "confirmed",
    category: str = "problem-list-item",
    body_site: list[dict[str, str]] | None = None,
    histology: dict[str, str] | None = None,
) -> dict[str, Any]:
    c: dict[str, Any] = {
        "resourceType": "Condition",
        "id": cid,
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": clinical,
                }
            ]
        },
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                        "code": category,
                    }
                ]
            }
        ],
        "code": {"coding": codings},
        "subject": {"reference": f"Patient/{pid}"},
    }
    if verification:
        c["verificationStatus"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": verification,
                }
            ]
        }
    if text:
        c["code"]["text"] = text
    if histology:
        c["extension"] = [{"url": MCODE_HISTOLOGY, "valueCodeableConcept": {"coding": [histology]}}]
    if body_site:
        c["bodySite"] = [{"coding": body_site}]
    if onset:
        c["onsetDateTime"] = onset
    if recorded:
        c["recordedDate"] = recorded
    return c


def procedure(
    pid: str,
    prid: str,
    codings: list[dict[str, str]],
    *,
    text: str | None = None,
    status: str = "completed",
    performed: str | None = None,
    period: tuple[str, str] | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    p: dict[str, Any] = {
        "resourceType": "Procedure",
        "id": prid,
        "status": status,
        "code": {"coding": codings},
        "subject": {"reference": f"Patient/{pid}"},
    }
    if text:
        p["code"]["text"] = text
    if performed:
        p["performedDateTime"] = performed
    if period:
        p["performedPeriod"] = {"start": period[0], "end": period[1]}
    if reason:
        p["reasonReference"] = [{"reference": f"Condition/{reason}"}]
    return p


def order(
    pid: str,
    srid: str,
    *,
    codings: list[dict[str, str]] | None = None,
    text: str | None = None,
    status: str = "draft",
    encounter: str | None = "enc-1",
    requester: str = "Practitioner/dr-okafor",
    authored: str = "2026-11-24",
    reason: str | None = None,
    occurrence: str | None = None,
) -> dict[str, Any]:
    s: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": srid,
        "status": status,
        "intent": "order",
        "code": {},
        "subject": {"reference": f"Patient/{pid}"},
        "requester": {"reference": requester},
        "authoredOn": authored,
    }
    if codings:
        s["code"]["coding"] = codings
    if text:
        s["code"]["text"] = text
    if encounter:
        s["encounter"] = {"reference": f"Encounter/{encounter}"}
    if reason:
        s["reasonReference"] = [{"reference": f"Condition/{reason}"}]
    if occurrence:
        s["occurrenceDateTime"] = occurrence
    return s


def searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {
                "fullUrl": f"https://ehr.example.org/fhir/{r['resourceType']}/{r['id']}",
                "resource": r,
            }
            for r in resources
        ],
    }


def hook_request(
    pid: str,
    pat: dict[str, Any],
    conditions: list[dict[str, Any]],
    procedures: list[dict[str, Any]],
    drafts: list[dict[str, Any]],
    selections: list[str] | None,
    prior_orders: list[dict[str, Any]] | None = None,
    *,
    devices: list[dict[str, Any]] | None = None,
    studies: list[dict[str, Any]] | None = None,
    reports: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A complete request; selections None makes it an order-sign request."""
    context: dict[str, Any] = {
        "userId": "Practitioner/dr-okafor",
        "patientId": pid,
        "encounterId": "enc-1",
    }
    if selections is not None:
        context["selections"] = selections
    context["draftOrders"] = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": d} for d in drafts],
    }
    return {
        "hook": "order-select" if selections is not None else "order-sign",
        "hookInstance": str(uuid.uuid5(uuid.NAMESPACE_URL, f"vignette:{pid}")),
        "fhirServer": "https://ehr.example.org/fhir",
        "context": context,
        "prefetch": {
            "patient": pat,
            "conditions": searchset(conditions),
            "procedures": searchset(procedures),
            "serviceRequests": searchset(prior_orders or []),
            "devices": searchset(devices or []),
            "imagingStudies": searchset(studies or []),
            "diagnosticReports": searchset(reports or []),
        },
    }


def device(pid: str, did: str, name: str, status: str = "active") -> dict[str, Any]:
    return {
        "resourceType": "Device",
        "id": did,
        "status": status,
        "deviceName": [{"name": name, "type": "user-friendly-name"}],
        "type": {"text": name},
        "patient": {"reference": f"Patient/{pid}"},
    }


def imaging_study(pid: str, sid: str, description: str, started: str) -> dict[str, Any]:
    return {
        "resourceType": "ImagingStudy",
        "id": sid,
        "status": "available",
        "subject": {"reference": f"Patient/{pid}"},
        "started": started,
        "description": description,
    }


# --- building blocks -----------------------------------------------------------------------

C07 = coding(ICD10, "C07", "Malignant neoplasm of parotid gland")
C080 = coding(ICD10, "C08.0", "Malignant neoplasm of submandibular gland")
Z85818 = coding(
    ICD10,
    "Z85.818",
    "Personal history of malignant neoplasm of other sites of lip, oral cavity, and pharynx",
)
HTN = coding(ICD10, "I10", "Essential (primary) hypertension")
DM2 = coding(ICD10, "E11.9", "Type 2 diabetes mellitus without complications")
LIPIDS = coding(ICD10, "E78.5", "Hyperlipidemia, unspecified")
EX_SMOKER = coding(ICD10, "Z87.891", "Personal history of nicotine dependence")
PAROTIDECTOMY_42415 = coding(
    CPT,
    "42415",
    "Excision of parotid tumor or parotid gland; lateral lobe, with dissection and preservation of facial nerve",
)
PAROTIDECTOMY_42420 = coding(
    CPT,
    "42420",
    "Excision of parotid tumor or parotid gland; total, with dissection and preservation of facial nerve",
)
IMRT_77386 = coding(
    CPT,
    "77386",
    "Intensity modulated radiation treatment delivery (IMRT), includes guidance and tracking, when performed; complex",
)
MRI_70543 = coding(
    CPT,
    "70543",
    "Magnetic resonance (eg, proton) imaging, orbit, face, and/or neck; without contrast material(s), "
    "followed by contrast material(s) and further sequences",
)
MRI_70542 = coding(
    CPT,
    "70542",
    "Magnetic resonance (eg, proton) imaging, orbit, face, and/or neck; with contrast material(s)",
)
MRI_70540 = coding(
    CPT,
    "70540",
    "Magnetic resonance (eg, proton) imaging, orbit, face, and/or neck; without contrast material(s)",
)
PRIOR_CT = coding(LOINC, "36235-0", "CT Neck W contrast IV")
CT_70491 = coding(CPT, "70491", "Computed tomography, soft tissue neck; with contrast material(s)")
PET_78815 = coding(
    CPT,
    "78815",
    "Positron emission tomography (PET) with concurrently acquired computed tomography (CT) for attenuation correction and anatomical localization imaging; skull base to mid-thigh",
)
Z950 = coding(ICD10, "Z95.0", "Presence of cardiac pacemaker")


def background(pid: str) -> list[dict[str, Any]]:
    """Everyday comorbidities: the reasoning must look past them."""
    return [
        condition(pid, "htn", [HTN], onset="2012-05-14", recorded="2012-05-14"),
        condition(pid, "dm2", [DM2], onset="2018-09-02", recorded="2018-09-02"),
        condition(pid, "lipids", [LIPIDS], recorded="2019-01-20", clinical="active"),
    ]


def treated_parotid_cancer(pid: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The plain in-scope record: parotid cancer (C07) treated by superficial parotidectomy."""
    conds = [condition(pid, "parotid-ca", [C07], onset="2023-01-09")]
    procs = [procedure(pid, "parotidectomy", [PAROTIDECTOMY_42415], performed="2023-02-14")]
    return conds, procs


def local_mri(pid: str, srid: str, name: str, code: str) -> dict[str, Any]:
    return order(pid, srid, codings=[coding(LOCAL, code, name)], text=name)


def prior_ct(pid: str) -> dict[str, Any]:
    return order(
        pid,
        "prior-ct-2025",
        codings=[PRIOR_CT],
        text="CT NECK W CONTRAST",
        status="completed",
        authored="2025-05-12",
    )


VIGNETTES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {}


def vignette(
    name: str, description: str, request: dict[str, Any], expected: dict[str, Any]
) -> None:
    VIGNETTES[name] = (description, request, expected)


MRI_TEXT = "MRI orbits face neck without and with IV contrast"
CT_TEXT = "CT neck with IV contrast"


def card(
    indicator: str, summary: str, mentions: list[str], suggestions: list[list[str]]
) -> dict[str, Any]:
    """One expected card; suggestions as their actions, e.g. "delete ServiceRequest/x"."""
    return {
        "indicator": indicator,
        "summary": summary,
        "detailMentions": mentions,
        "suggestions": suggestions,
    }


def replace(draft: str, text: str = MRI_TEXT) -> list[str]:
    return [f"delete {draft}", f"create {text}"]


def update(draft: str) -> list[str]:
    return [f"update {draft}"]


def outcome(
    *cards: dict[str, Any], pama: list[list[str]] | None = None, service: str = SERVICE
) -> dict[str, Any]:
    return {"service": service, "cards": list(cards), "pama": pama or []}


def warning(summary: str, draft: str, mentions: list[str], history: bool = True) -> dict[str, Any]:
    """The incomplete-MRI card; without a reason on the draft, the history update is offered too."""
    suggestions = [replace(draft)] + ([update(draft)] if history else [])
    return outcome(card("warning", summary, mentions, suggestions))


NO_CARDS: dict[str, Any] = outcome()


def build() -> None:
    # 1 ICD-10-CM only, local orderable text only.
    pid = "pt-parotid-mec"
    conds = [
        *background(pid),
        condition(
            pid,
            "parotid-mec",
            [C07],
            text="Mucoepidermoid carcinoma of left parotid gland",
            onset="2024-02-06",
            recorded="2024-02-20",
        ),
    ]
    procs = [
        procedure(
            pid,
            "parotidectomy",
            [PAROTIDECTOMY_42415],
            text="Left superficial parotidectomy",
            performed="2024-03-12",
            reason="parotid-mec",
        ),
        procedure(
            pid,
            "imrt",
            [IMRT_77386],
            text="Adjuvant IMRT to left parotid bed, 60 Gy in 30 fractions",
            period=("2024-04-22", "2024-06-03"),
            reason="parotid-mec",
        ),
    ]
    draft = local_mri(pid, "mri-neck-1", "MRI NECK SOFT TISSUE W WO CONTRAST", "IMG10487")
    vignette(
        "parotid_mec_after_parotidectomy_and_imrt_local_mri_neck",
        "62-year-old, two years after left superficial parotidectomy and adjuvant IMRT for mucoepidermoid carcinoma (ICD-10-CM C07 only); new deep ache; the clinician picks the local orderable 'MRI NECK SOFT TISSUE W WO CONTRAST' (local code, name only).",
        hook_request(
            pid,
            patient(pid, "female", "1964-07-19"),
            conds,
            procs,
            [draft],
            ["ServiceRequest/mri-neck-1"],
            [prior_ct(pid)],
        ),
        warning(
            REGIONS_SUMMARY,
            "ServiceRequest/mri-neck-1",
            [
                "ICD-10-CM C07",
                "CPT 42415",
                "CPT 77386",
                "2024-06-03",
                "face and orbits/skull base",
                "Compare with prior imaging:** CT NECK W CONTRAST (2025-05-12)",
            ],
        ),
    )

    # 2 SNOMED CT only, LOINC-coded MRI neck.
    pid = "pt-parotid-snomed"
    conds = [
        condition(
            pid,
            "parotid-ca",
            [coding(SCT, "363379000", "Malignant tumor of parotid gland")],
            onset="2022-10-03",
        )
    ]
    procs = [
        procedure(
            pid, "parotidectomy", [coding(SCT, "81870009", "Parotidectomy")], performed="2022-11-08"
        ),
        procedure(
            pid,
            "rt-course",
            [coding(SCT, "1217123003", "Radiotherapy course")],
            period=("2022-12-12", "2023-01-27"),
        ),
    ]
    draft = order(
        pid, "mri-neck-loinc", codings=[coding(LOINC, "24840-1", "MR Neck WO and W contrast IV")]
    )
    vignette(
        "parotid_carcinoma_snomed_only_loinc_mri_neck",
        "Parotid carcinoma coded in SNOMED CT only (363379000), parotidectomy and a radiotherapy course in SNOMED CT; the draft MRI carries only LOINC 24840-1 'MR Neck WO and W contrast IV'.",
        hook_request(
            pid,
            patient(pid, "male", "1958-03-02"),
            conds,
            procs,
            [draft],
            ["ServiceRequest/mri-neck-loinc"],
        ),
        warning(
            REGIONS_SUMMARY,
            "ServiceRequest/mri-neck-loinc",
            ["SNOMED CT 363379000", "SNOMED CT 81870009", "SNOMED CT 1217123003"],
        ),
    )

    # 3 submandibular, neck MRI without contrast (regions and contrast both wrong).
    pid = "pt-submandibular"
    conds = [
        *background(pid),
        condition(
            pid,
            "smg-acc",
            [C080],
            text="Adenoid cystic carcinoma, right submandibular gland",
            onset="2023-06-15",
        ),
    ]
    procs = [
        procedure(
            pid,
            "smg-excision",
            [coding(CPT, "42440", "Excision of submandibular (submaxillary) gland")],
            performed="2023-07-10",
        )
    ]
    draft = local_mri(pid, "mri-neck-noncon", "MRI NECK W/O CONTRAST", "IMG10480")
    vignette(
        "submandibular_acc_after_excision_mri_neck_without_contrast",
        "Adenoid cystic carcinoma of the submandibular gland (C08.0) after gland excision; new facial numbness; 'MRI NECK W/O CONTRAST' selected: no face or skull base, and no post-contrast images.",
        hook_request(
            pid,
            patient(pid, "female", "1971-01-30"),
            conds,
            procs,
            [draft],
            ["ServiceRequest/mri-neck-noncon"],
        ),
        warning(
            REGIONS_SUMMARY,
            "ServiceRequest/mri-neck-noncon",
            ["ICD-10-CM C08.0", "CPT 42440", "without IV contrast only"],
        ),
    )

    # 4 the right order: no card.
    pid = "pt-full-protocol"
    conds = [condition(pid, "parotid-ca", [C07], onset="2021-04-01")]
    procs = [procedure(pid, "total-parotidectomy", [PAROTIDECTOMY_42420], performed="2021-05-05")]
    draft = order(
        pid,
        "mri-ofn",
        codings=[MRI_70543],
        text="MRI orbits face neck w/wo IV contrast",
        reason="parotid-ca",
    )
    vignette(
        "parotid_cancer_full_protocol_ordered",
        "Treated parotid cancer; the clinician already orders 'MRI orbits face neck w/wo IV contrast' (CPT 70543): silence.",
        hook_request(
            pid,
            patient(pid, "male", "1955-12-12"),
            conds,
            procs,
            [draft],
            ["ServiceRequest/mri-ofn"],
        ),
        outcome(pama=[["ServiceRequest/mri-ofn", "appropriate"]]),
    )

    # 5 full regions, contrast only.
    pid = "pt-contrast-only"
    conds, procs = treated_parotid_cancer(pid)
    draft = order(
        pid, "mri-ofn-post", codings=[MRI_70542], text="MRI ORBITS FACE NECK WITH CONTRAST"
    )
    vignette(
        "parotid_cancer_mri_orbits_face_neck_with_contrast_only",
        "Treated parotid cancer; 'MRI ORBITS FACE NECK WITH CONTRAST' (CPT 70542) covers the regions but omits the non-contrast T1 sequences.",
        hook_request(
            pid,
            patient(pid, "female", "1960-08-08"),
            conds,
            procs,
            [draft],
            ["ServiceRequest/mri-ofn-post"],
        ),
        {
            **warning(CONTRAST_SUMMARY, "ServiceRequest/mri-ofn-post", ["with IV contrast only"]),
            "pama": [["ServiceRequest/mri-ofn-post", "no-criteria-apply"]],
        },
    )

    # 6 CPT 70543 only: regions unknown, contrast right -> say nothing.
    pid = "pt-cpt-only"
    conds, procs = treated_parotid_cancer(pid)
    draft = order(pid, "mri-cpt", codings=[MRI_70543], reason="parotid-ca")
    vignette(
        "parotid_cancer_cpt_70543_only",
        "Treated parotid cancer; the draft carries only CPT 70543 ('orbit, face, and/or neck'), which does not tell a neck-only MRI from the full protocol: the service says nothing rather than guess.",
        hook_request(
            pid,
            patient(pid, "male", "1966-02-17"),
            conds,
            procs,
            [draft],
            ["ServiceRequest/mri-cpt"],
        ),
        outcome(pama=[["ServiceRequest/mri-cpt", "no-criteria-apply"]]),
    )

    # 7 CPT 70540 only: contrast certainly incomplete.
    pid = "pt-cpt-70540"
    conds, procs = treated_parotid_cancer(pid)
    draft = order(pid, "mri-cpt-noncon", codings=[MRI_70540])
    vignette(
        "parotid_cancer_cpt_70540_without_contrast",
        "Treated parotid cancer; the draft carries only CPT 70540 (without contrast): whatever the regions, the post-contrast images are missing.",
        hook_request(
            pid,
            patient(pid, "female", "1959-11-23"),
            conds,
            procs,
            [draft],
            ["ServiceRequest/mri-cpt-noncon"],
        ),
        {
            **warning(
                CONTRAST_SUMMARY, "ServiceRequest/mri-cpt-noncon", ["without IV contrast only"]
            ),
            "pama": [["ServiceRequest/mri-cpt-noncon", "no-criteria-apply"]],
        },
    )

    # 8 ICD-O-3 topography + morphology (mCODE style), face/neck MRI without orbits.
    pid = "pt-sublingual-icdo3"
    conds = [
        condition(
            pid,
            "sublingual-acc",
            [coding(SCT, "255072001", "Malignant tumor of salivary gland")],
            text="Adenoid cystic carcinoma of sublingual gland",
            onset="2024-09-30",
            body_site=[coding(ICDO3, "C08.1", "Sublingual gland")],
            histology=coding(ICDO3, "8200/3", "Adenoid cystic carcinoma"),
            category="encounter-diagnosis",
        )
    ]
    procs = [
        procedure(
            pid,
            "sublingual-excision",
            [coding(CPT, "42450", "Excision of sublingual gland")],
            performed="2024-10-21",
        ),
        procedure(
            pid,
            "imrt",
            [coding(SCT, "441799006", "Intensity modulated radiation therapy")],
            period=("2024-11-25", "2025-01-10"),
        ),
    ]
    draft = local_mri(pid, "mr-face-neck", "MR FACE/NECK W+WO", "IMG10512")
    vignette(
        "sublingual_acc_icdo3_coded_mr_face_neck",
        "Sublingual adenoid cystic carcinoma recorded mCODE-style: a broad SNOMED code (255072001, too broad alone) with ICD-O-3 topography C08.1 and histology 8200/3; after excision and IMRT, 'MR FACE/NECK W+WO' leaves out the orbits and skull base.",
        hook_request(
            pid,
            patient(pid, "male", "1969-05-05"),
            conds,
            procs,
            [draft],
            ["ServiceRequest/mr-face-neck"],
        ),
        warning(
            REGIONS_SUMMARY,
            "ServiceRequest/mr-face-neck",
            ["ICD-O-3 8200/3", "CPT 42450", "orbits/skull base"],
        ),
    )

    # 9 Z85.818 + parotidectomy.
    pid = "pt-history-parotid"
    conds = [
        *background(pid),
        condition(pid, "hx-cancer", [Z85818], recorded="2020-03-03", clinical="active"),
    ]
    procs = [
        procedure(
            pid,
            "parotidectomy",
            [
                coding(
                    CPT,
                    "42410",
                    "Excision of parotid tumor or parotid gland; lateral lobe, without nerve dissection",
                )
            ],
            performed="2016-06-20",
        )
    ]
    draft = local_mri(pid, "mri-neck-hx", "MRI NECK W WO CONTRAST", "IMG10488")
    vignette(
        "history_code_with_parotidectomy_mri_neck",
        "Outside records: only a personal-history code Z85.818 (not salivary-specific alone) and a parotidectomy (CPT 42410), no benign salivary tumour on record: treated as a treated salivary cancer.",
        hook_request(
            pid,
            patient(pid, "male", "1950-04-14"),
            conds,
            procs,
            [draft],
            ["ServiceRequest/mri-neck-hx"],
        ),
        warning(REGIONS_SUMMARY, "ServiceRequest/mri-neck-hx", ["ICD-10-CM Z85.818", "CPT 42410"]),
    )

    # 10 Z85.818 + neck dissection only: not salivary-specific.
    pid = "pt-history-neck-dissection"
    conds = [condition(pid, "hx-cancer", [Z85818], recorded="2019-08-01")]
    procs = [
        procedure(
            pid,
            "mrnd",
            [coding(CPT, "38724", "Cervical lymphadenectomy (modified radical neck dissection)")],
            performed="2018-02-02",
        )
    ]
    draft = local_mri(pid, "mri-neck-hx2", "MRI NECK W WO CONTRAST", "IMG10488")
    vignette(
        "history_code_with_neck_dissection_only",
        "Z85.818 and a neck dissection: as likely an oral cavity or pharynx cancer; nothing salivary-specific, so no card.",
        hook_request(
            pid,
            patient(pid, "female", "1957-10-10"),
            conds,
            procs,
            [draft],
            ["ServiceRequest/mri-neck-hx2"],
        ),
        NO_CARDS,
    )

    # 11 benign pleomorphic adenoma.
    pid = "pt-pleomorphic-adenoma"
    conds = [
        condition(
            pid,
            "pa",
            [
                coding(ICD10, "D11.0", "Benign neoplasm of parotid gland"),
                coding(SCT, "255155005", "Pleomorphic adenoma of parotid gland"),
            ],
            onset="2025-01-15",
        )
    ]
    procs = [
        procedure(pid, "parotidectomy", [PAROTIDECTOMY_42415], performed="2025-02-20", reason="pa")
    ]
    draft = local_mri(pid, "mri-neck-pa", "MRI NECK SOFT TISSUE W WO CONTRAST", "IMG10487")
    vignette(
        "benign_pleomorphic_adenoma_after_parotidectomy",
        "Pleomorphic adenoma (D11.0) removed by parotidectomy: benign, another rationale; no card.",
        hook_request(
            pid,
            patient(pid, "female", "1980-02-29"),
            conds,
            procs,
            [draft],
            ["ServiceRequest/mri-neck-pa"],
        ),
        NO_CARDS,
    )

    # 12 Warthin tumour.
    pid = "pt-warthin"
    conds = [
        condition(
            pid,
            "warthin",
            [coding(SCT, "422470007", "Adenolymphoma")],
            text="Warthin tumour, right parotid",
            onset="2024-05-05",
        ),
        condition(pid, "smoker", [EX_SMOKER], recorded="2010-01-01"),
    ]
    procs = [
        procedure(
            pid, "parotidectomy", [coding(SCT, "81870009", "Parotidectomy")], performed="2024-06-11"
        )
    ]
    draft = local_mri(pid, "mri-neck-w", "MRI NECK W WO CONTRAST", "IMG10488")
    vignette(
        "warthin_tumour_after_parotidectomy",
        "Warthin tumour (adenolymphoma) after parotidectomy: benign; no card.",
        hook_request(
            pid,
            patient(pid, "male", "1953-09-09"),
            conds,
            procs,
            [draft],
            ["ServiceRequest/mri-neck-w"],
        ),
        NO_CARDS,
    )

    # 13 oropharynx.
    pid = "pt-oropharynx"
    conds = [
        condition(
            pid,
            "opscc",
            [coding(ICD10, "C10.9", "Malignant neoplasm of oropharynx, unspecified")],
            onset="2023-03-03",
        )
    ]
    procs = [
        procedure(
            pid,
            "crt",
            [coding(SCT, "703423002", "Combined chemotherapy and radiation therapy")],
            period=("2023-04-01", "2023-05-20"),
        ),
        procedure(
            pid,
            "mrnd",
            [coding(CPT, "38724", "Cervical lymphadenectomy (modified radical neck dissection)")],
            performed="2023-08-01",
        ),
    ]
    draft = local_mri(pid, "mri-neck-op", "MRI NECK W WO CONTRAST", "IMG10488")
    vignette(
        "oropharynx_cancer_after_chemoradiation",
        "Oropharyngeal cancer (C10.9) after chemoradiation and neck dissection: another head and neck cancer, another protocol; no card.",
        hook_request(
            pid,
            patient(pid, "male", "1961-06-06"),
            conds,
            procs,
            [draft],
            ["ServiceRequest/mri-neck-op"],
        ),
        NO_CARDS,
    )

    # 14 minor salivary gland (palate).
    pid = "pt-palate"
    conds = [
        condition(
            pid,
            "palate",
            [coding(ICD10, "C05.9", "Malignant neoplasm of palate, unspecified")],
            text="Adenoid cystic carcinoma of hard palate (minor salivary gland)",
            onset="2022-02-02",
        )
    ]
    procs = [procedure(pid, "imrt", [IMRT_77386], period=("2022-04-04", "2022-05-16"))]
    draft = local_mri(pid, "mri-neck-pal", "MRI NECK W WO CONTRAST", "IMG10488")
    vignette(
        "minor_salivary_palate_cancer_after_radiotherapy",
        "Adenoid cystic carcinoma of a minor salivary gland of the palate (C05.9): not a major salivary gland; no card.",
        hook_request(
            pid,
            patient(pid, "female", "1975-03-03"),
            conds,
            procs,
            [draft],
            ["ServiceRequest/mri-neck-pal"],
        ),
        NO_CARDS,
    )

    # 15 larynx.
    pid = "pt-larynx"
    conds = [
        condition(
            pid,
            "larynx",
            [coding(ICD10, "C32.9", "Malignant neoplasm of larynx, unspecified")],
            onset="2021-01-01",
        )
    ]
    procs = [
        procedure(
            pid,
            "rt",
            [coding(SCT, "1217123003", "Radiotherapy course")],
            period=("2021-02-01", "2021-03-15"),
        )
    ]
    draft = local_mri(pid, "mri-neck-lx", "MRI NECK W WO CONTRAST", "IMG10488")
    vignette(
        "laryngeal_cancer_after_radiotherapy",
        "Laryngeal cancer after radiotherapy: another head and neck site; no card.",
        hook_request(
            pid,
            patient(pid, "male", "1949-12-01"),
            conds,
            procs,
            [draft],
            ["ServiceRequest/mri-neck-lx"],
        ),
        NO_CARDS,
    )

    # 16 untreated new cancer.
    pid = "pt-new-parotid"
    conds = [
        condition(
            pid,
            "parotid-new",
            [C07],
            text="Parotid carcinoma, biopsy-proven",
            onset="2026-11-10",
            clinical="active",
        )
    ]
    procs = [procedure(pid, "planned-parotidectomy", [PAROTIDECTOMY_42420], status="preparation")]
    draft = local_mri(pid, "mri-neck-staging", "MRI NECK W WO CONTRAST", "IMG10488")
    vignette(
        "untreated_new_parotid_cancer_initial_staging",
        "Newly diagnosed parotid carcinoma, surgery only planned (Procedure status preparation): initial staging is another ACR variant; no card.",
        hook_request(
            pid,
            patient(pid, "female", "1968-08-18"),
            conds,
            procs,
            [draft],
            ["ServiceRequest/mri-neck-staging"],
        ),
        NO_CARDS,
    )

    # 17 refuted.
    pid = "pt-refuted"
    conds = [
        condition(
            pid,
            "parotid-ruled-out",
            [C07],
            onset="2025-03-01",
            verification="refuted",
            clinical="resolved",
        ),
        condition(
            pid,
            "pa",
            [coding(ICD10, "D11.0", "Benign neoplasm of parotid gland")],
            onset="2025-03-20",
        ),
    ]
    procs = [procedure(pid, "parotidectomy", [PAROTIDECTOMY_42415], performed="2025-04-02")]
    draft = local_mri(pid, "mri-neck-ref", "MRI NECK W WO CONTRAST", "IMG10488")
    vignette(
        "refuted_parotid_cancer_benign_on_pathology",
        "Suspected parotid cancer refuted by pathology (verificationStatus refuted; benign D11.0 confirmed): no card.",
        hook_request(
            pid,
            patient(pid, "male", "1970-07-07"),
            conds,
            procs,
            [draft],
            ["ServiceRequest/mri-neck-ref"],
        ),
        NO_CARDS,
    )

    # 18 entered in error.
    pid = "pt-error"
    conds = [
        condition(pid, "parotid-error", [C07], onset="2024-01-01", verification="entered-in-error")
    ]
    procs = [procedure(pid, "parotidectomy", [PAROTIDECTOMY_42415], performed="2024-02-02")]
    draft = local_mri(pid, "mri-neck-err", "MRI NECK W WO CONTRAST", "IMG10488")
    vignette(
        "parotid_cancer_entered_in_error",
        "A parotid cancer diagnosis entered in error (on the wrong chart): no card.",
        hook_request(
            pid,
            patient(pid, "female", "1982-12-24"),
            conds,
            procs,
            [draft],
            ["ServiceRequest/mri-neck-err"],
        ),
        NO_CARDS,
    )

    # 19 procedure not completed.
    pid = "pt-not-done"
    conds = [condition(pid, "parotid-ca", [C07], onset="2026-09-01")]
    procs = [procedure(pid, "parotidectomy", [PAROTIDECTOMY_42420], status="not-done")]
    draft = local_mri(pid, "mri-neck-nd", "MRI NECK W WO CONTRAST", "IMG10488")
    vignette(
        "parotid_cancer_surgery_not_done",
        "Parotid cancer whose parotidectomy was not done (status not-done): untreated; no card.",
        hook_request(
            pid,
            patient(pid, "male", "1952-01-15"),
            conds,
            procs,
            [draft],
            ["ServiceRequest/mri-neck-nd"],
        ),
        NO_CARDS,
    )

    # 20 parotidectomy years before a new cancer.
    pid = "pt-old-surgery"
    conds = [condition(pid, "parotid-new", [C07], onset="2026-10-20")]
    procs = [procedure(pid, "old-parotidectomy", [PAROTIDECTOMY_42415], performed="2014-05-05")]
    draft = local_mri(pid, "mri-neck-old", "MRI NECK W WO CONTRAST", "IMG10488")
    vignette(
        "parotidectomy_years_before_new_parotid_cancer",
        "A parotidectomy in 2014 cannot have treated a parotid cancer diagnosed in 2026: untreated, initial staging; no card.",
        hook_request(
            pid,
            patient(pid, "female", "1962-04-04"),
            conds,
            procs,
            [draft],
            ["ServiceRequest/mri-neck-old"],
        ),
        NO_CARDS,
    )

    # 21 no imaging selected.
    pid = "pt-lab-only"
    conds, procs = treated_parotid_cancer(pid)
    lab = order(
        pid,
        "cbc",
        codings=[coding(LOCAL_LAB, "LAB005", "CBC WITH DIFFERENTIAL")],
        text="CBC WITH DIFFERENTIAL",
    )
    mri = local_mri(pid, "mri-neck-unselected", "MRI NECK W WO CONTRAST", "IMG10488")
    vignette(
        "treated_parotid_cancer_lab_order_selected",
        "Treated parotid cancer; the clinician selects a blood count. An MRI neck sits unselected in the draft list: order-select speaks only of the selection; no card.",
        hook_request(
            pid,
            patient(pid, "male", "1964-10-01"),
            conds,
            procs,
            [lab, mri],
            ["ServiceRequest/cbc"],
        ),
        NO_CARDS,
    )

    # 22 what real clients send.
    pid = "pt-quirks"
    conds, procs = treated_parotid_cancer(pid)
    quirky = {
        "resourceType": "ServiceRequest",
        "id": "mri-quirky",
        "status": "draft",
        "code": {"coding": [{}], "text": "MRI NECK W/WO CONTRAST"},
        "subject": {"reference": f"Patient/{pid}"},
        "reasonCode": [],
        "note": [],
    }
    med = {
        "resourceType": "MedicationRequest",
        "id": "gabapentin",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {"text": "gabapentin 300 mg capsule"},
        "subject": {"reference": f"Patient/{pid}"},
    }
    request = hook_request(
        pid,
        patient(pid, "female", "1966-06-16"),
        conds,
        procs,
        [quirky, med],
        [
            "ServiceRequest/mri-quirky",
            "MedicationRequest/gabapentin",
            "ServiceRequest/not-in-bundle",
        ],
    )
    del request["context"]["draftOrders"]["type"]
    del request["prefetch"]["conditions"]["type"]
    vignette(
        "client_quirks_no_intent_empty_coding_stray_selection",
        "What real clients send: draftOrders without Bundle.type, a ServiceRequest without intent and with coding [{}] and empty arrays, a MedicationRequest draft, a selection that matches no entry. The MRI neck is still read and warned about.",
        request,
        warning(REGIONS_SUMMARY, "ServiceRequest/mri-quirky", ["ICD-10-CM C07"]),
    )

    # 23 CT neck with contrast.
    pid = "pt-ct"
    conds, procs = treated_parotid_cancer(pid)
    draft = order(pid, "ct-neck", codings=[CT_70491], text="CT SOFT TISSUE NECK W CONTRAST")
    vignette(
        "treated_parotid_cancer_ct_neck_with_contrast",
        "Treated parotid cancer, no implant on record; CT neck with IV contrast (also Usually Appropriate): no warning, an info card that MRI tells scar from recurrence better, with a switch that is not pre-selected, and the history for the radiologist since the order has no reason.",
        hook_request(
            pid,
            patient(pid, "male", "1947-02-02"),
            conds,
            procs,
            [draft],
            ["ServiceRequest/ct-neck"],
        ),
        outcome(
            card(
                "info",
                "CT neck is appropriate, but MRI better tells scar from recurrence and shows perineural spread",
                ["Nothing on record contraindicates MRI", "CT neck with IV contrast ← ordered"],
                [replace("ServiceRequest/ct-neck"), update("ServiceRequest/ct-neck")],
            ),
            pama=[["ServiceRequest/ct-neck", "appropriate"]],
        ),
    )

    # 24 two drafts, only the selected one is checked.
    pid = "pt-two-drafts"
    conds, procs = treated_parotid_cancer(pid)
    good = order(
        pid,
        "mri-ofn",
        codings=[MRI_70543],
        text="MRI ORBITS FACE NECK W WO CONTRAST",
        reason="parotid-ca",
    )
    weak = local_mri(pid, "mri-neck-earlier", "MRI NECK W WO CONTRAST", "IMG10488")
    vignette(
        "two_drafts_full_protocol_selected",
        "Two draft MRIs; the newly selected one is the full protocol: silence (the earlier neck MRI was judged when it was selected).",
        hook_request(
            pid,
            patient(pid, "female", "1973-03-13"),
            conds,
            procs,
            [weak, good],
            ["ServiceRequest/mri-ofn"],
        ),
        outcome(pama=[["ServiceRequest/mri-ofn", "appropriate"]]),
    )

    # --- the rest of the ACR guidance -----------------------------------------------------

    # 25 the right MRI, but no reason on the order; a prior MRI to compare with.
    pid = "pt-no-history"
    conds = [
        condition(
            pid,
            "parotid-acc",
            [C07],
            text="Adenoid cystic carcinoma of right parotid gland",
            onset="2022-03-01",
        )
    ]
    procs = [
        procedure(pid, "total-parotidectomy", [PAROTIDECTOMY_42420], performed="2022-04-04"),
        procedure(pid, "imrt", [IMRT_77386], period=("2022-05-09", "2022-06-20")),
    ]
    draft = order(pid, "mri-ofn-nr", codings=[MRI_70543], text="MRI ORBITS FACE NECK W WO CONTRAST")
    studies = [
        imaging_study(pid, "mri-2025", "MRI ORBITS FACE NECK W WO CONTRAST", "2025-11-02"),
        imaging_study(pid, "mri-2024", "MRI ORBITS FACE NECK W WO CONTRAST", "2024-10-28"),
        imaging_study(pid, "ct-chest-2025", "CT CHEST W CONTRAST", "2026-01-15"),
    ]
    vignette(
        "full_protocol_without_clinical_history_prior_mri",
        "The right study is ordered without a reason: an info card offers to add the cancer diagnosis and a clinical-history note (histology, treatment, dates) and names the latest prior head and neck MRI for comparison (a later chest CT is not head and neck imaging).",
        hook_request(
            pid,
            patient(pid, "female", "1963-05-25"),
            conds,
            procs,
            [draft],
            ["ServiceRequest/mri-ofn-nr"],
            studies=studies,
        ),
        outcome(
            card(
                "info",
                "Add the clinical history to this imaging order: histology, treatment and dates guide the radiologist",
                [
                    "carries no reason",
                    "Compare with prior imaging:** MRI ORBITS FACE NECK W WO CONTRAST (2025-11-02)",
                    "MRI orbits face neck without and with IV contrast ← ordered",
                ],
                [update("ServiceRequest/mri-ofn-nr")],
            ),
            pama=[["ServiceRequest/mri-ofn-nr", "appropriate"]],
        ),
    )

    # 26 CT neck without contrast.
    pid = "pt-ct-noncon"
    conds, procs = treated_parotid_cancer(pid)
    draft = order(
        pid,
        "ct-noncon",
        codings=[coding(LOCAL, "IMG20031", "CT NECK WO CONTRAST")],
        text="CT NECK WO CONTRAST",
        reason="parotid-ca",
    )
    vignette(
        "treated_parotid_cancer_ct_neck_without_contrast",
        "Treated parotid cancer; CT neck without contrast: a warning, with CT neck with IV contrast and the MRI protocol as replacements (MRI pre-selected: nothing contraindicates it).",
        hook_request(
            pid,
            patient(pid, "male", "1958-08-30"),
            conds,
            procs,
            [draft],
            ["ServiceRequest/ct-noncon"],
        ),
        outcome(
            card(
                "warning",
                "CT neck without IV contrast is not the rated study: order CT neck with IV contrast or the MRI protocol",
                ["is done without IV contrast"],
                [replace("ServiceRequest/ct-noncon", CT_TEXT), replace("ServiceRequest/ct-noncon")],
            )
        ),
    )

    # 27 CT neck with contrast, pacemaker: MRI not possible, silence.
    pid = "pt-ct-pacemaker"
    conds = [
        condition(pid, "parotid-ca", [C07], onset="2023-01-09"),
        condition(pid, "pacemaker", [Z950], recorded="2019-02-02"),
    ]
    procs = [procedure(pid, "parotidectomy", [PAROTIDECTOMY_42415], performed="2023-02-14")]
    draft = order(
        pid,
        "ct-neck-pm",
        codings=[CT_70491],
        text="CT SOFT TISSUE NECK W CONTRAST",
        reason="parotid-ca",
    )
    vignette(
        "treated_parotid_cancer_pacemaker_ct_neck_with_contrast",
        "Treated parotid cancer with a cardiac pacemaker (Z95.0): CT neck with IV contrast is the right alternative; silence.",
        hook_request(
            pid,
            patient(pid, "male", "1944-04-12"),
            conds,
            procs,
            [draft],
            ["ServiceRequest/ct-neck-pm"],
        ),
        outcome(pama=[["ServiceRequest/ct-neck-pm", "appropriate"]]),
    )

    # 28 MRI with a pacemaker on the problem list.
    pid = "pt-mri-pacemaker"
    conds = [
        condition(pid, "parotid-ca", [C07], onset="2023-01-09"),
        condition(pid, "pacemaker", [Z950], recorded="2019-02-02"),
    ]
    procs = [procedure(pid, "parotidectomy", [PAROTIDECTOMY_42415], performed="2023-02-14")]
    draft = order(
        pid,
        "mri-pm",
        codings=[MRI_70543],
        text="MRI ORBITS FACE NECK W WO CONTRAST",
        reason="parotid-ca",
    )
    vignette(
        "treated_parotid_cancer_pacemaker_mri_selected",
        "Treated parotid cancer; a pacemaker (Z95.0) on the problem list; the full MRI protocol is selected: a warning that MRI may be contraindicated, replacing it by CT neck with IV contrast.",
        hook_request(
            pid,
            patient(pid, "female", "1941-09-09"),
            conds,
            procs,
            [draft],
            ["ServiceRequest/mri-pm"],
        ),
        outcome(
            card(
                "warning",
                "An implant on record may contraindicate MRI: consider CT neck with IV contrast instead",
                ["Presence of cardiac pacemaker (ICD-10-CM Z95.0)", "CT neck with IV contrast"],
                [replace("ServiceRequest/mri-pm", CT_TEXT)],
            ),
            pama=[["ServiceRequest/mri-pm", "appropriate"]],
        ),
    )

    # 29 MRI with a cochlear implant recorded only as a Device.
    pid = "pt-mri-cochlear"
    conds = [condition(pid, "smg-ca", [C080], onset="2024-01-20")]
    procs = [
        procedure(
            pid,
            "smg-excision",
            [coding(CPT, "42440", "Excision of submandibular (submaxillary) gland")],
            performed="2024-02-12",
        )
    ]
    draft = local_mri(pid, "mri-neck-ci", "MRI NECK W WO CONTRAST", "IMG10488")
    vignette(
        "treated_submandibular_cancer_cochlear_implant_device_mri_neck",
        "Treated submandibular cancer; a cochlear implant recorded only as a Device resource (by name); an MRI neck is selected: the implant warning comes first, the incomplete protocol is moot.",
        hook_request(
            pid,
            patient(pid, "male", "1977-07-07"),
            conds,
            procs,
            [draft],
            ["ServiceRequest/mri-neck-ci"],
            devices=[device(pid, "ci-left", "Cochlear implant, left ear")],
        ),
        outcome(
            card(
                "warning",
                "An implant on record may contraindicate MRI: consider CT neck with IV contrast instead",
                ["Cochlear implant, left ear", "carries no reason"],
                [
                    replace("ServiceRequest/mri-neck-ci", CT_TEXT),
                    update("ServiceRequest/mri-neck-ci"),
                ],
            )
        ),
    )

    # 30 a pacemaker since removed (Device inactive): MRI is fine.
    pid = "pt-removed-pacemaker"
    conds, procs = treated_parotid_cancer(pid)
    draft = order(
        pid,
        "mri-ok",
        codings=[MRI_70543],
        text="MRI ORBITS FACE NECK W WO CONTRAST",
        reason="parotid-ca",
    )
    vignette(
        "treated_parotid_cancer_explanted_pacemaker_full_protocol",
        "A pacemaker recorded as an inactive Device (explanted); the full MRI protocol is selected: silence.",
        hook_request(
            pid,
            patient(pid, "male", "1950-10-10"),
            conds,
            procs,
            [draft],
            ["ServiceRequest/mri-ok"],
            devices=[device(pid, "old-pm", "Cardiac pacemaker", status="inactive")],
        ),
        outcome(pama=[["ServiceRequest/mri-ok", "appropriate"]]),
    )

    # 31 PET/CT six weeks after radiotherapy.
    pid = "pt-pet-early"
    conds = [
        condition(
            pid,
            "parotid-sdc",
            [C07],
            text="Salivary duct carcinoma of left parotid gland",
            onset="2026-04-02",
        )
    ]
    procs = [
        procedure(pid, "parotidectomy", [PAROTIDECTOMY_42420], performed="2026-05-05"),
        procedure(pid, "imrt", [IMRT_77386], period=("2026-08-31", "2026-10-13")),
    ]
    draft = order(
        pid,
        "pet-early",
        codings=[PET_78815],
        text="PET/CT SKULL BASE TO MID-THIGH",
        reason="parotid-sdc",
        occurrence="2026-11-24",
    )
    vignette(
        "pet_ct_six_weeks_after_radiotherapy",
        "Salivary duct carcinoma after parotidectomy and IMRT ending 2026-10-13; an FDG-PET/CT for 2026-11-24 (42 days later): a warning about false positives from post-treatment inflammation, with the date math and the offer to defer to 2027-01-05 or switch to the MRI protocol.",
        hook_request(
            pid,
            patient(pid, "female", "1956-01-31"),
            conds,
            procs,
            [draft],
            ["ServiceRequest/pet-early"],
        ),
        outcome(
            card(
                "warning",
                "PET/CT within 12 weeks of radiotherapy may be falsely positive: defer it or order the MRI protocol",
                [
                    "Radiotherapy ended on **2026-10-13**",
                    "**2026-11-24**, 42 days (6 weeks) later",
                    "**2027-01-05**",
                    "FDG-PET/CT skull base to mid-thigh ← ordered",
                ],
                [update("ServiceRequest/pet-early"), replace("ServiceRequest/pet-early")],
            ),
            pama=[["ServiceRequest/pet-early", "appropriate"]],
        ),
    )

    # 32 PET/CT well after radiotherapy.
    pid = "pt-pet-late"
    conds = [condition(pid, "parotid-ca", [C07], onset="2025-09-02")]
    procs = [
        procedure(pid, "parotidectomy", [PAROTIDECTOMY_42420], performed="2025-10-01"),
        procedure(
            pid,
            "rt",
            [coding(SCT, "1217123003", "Radiotherapy course")],
            period=("2025-11-03", "2025-12-15"),
        ),
    ]
    draft = order(
        pid,
        "pet-late",
        codings=[PET_78815],
        text="PET/CT SKULL BASE TO MID-THIGH",
        reason="parotid-ca",
        occurrence="2026-11-24",
    )
    vignette(
        "pet_ct_eleven_months_after_radiotherapy",
        "FDG-PET/CT eleven months after radiotherapy, with a reason: Usually Appropriate; silence.",
        hook_request(
            pid,
            patient(pid, "male", "1960-12-12"),
            conds,
            procs,
            [draft],
            ["ServiceRequest/pet-late"],
        ),
        outcome(pama=[["ServiceRequest/pet-late", "appropriate"]]),
    )

    # 33 ultrasound of the neck.
    pid = "pt-us"
    conds, procs = treated_parotid_cancer(pid)
    draft = order(
        pid,
        "us-neck",
        codings=[coding(LOCAL, "IMG30077", "US NECK SOFT TISSUE")],
        text="US NECK SOFT TISSUE",
        reason="parotid-ca",
    )
    vignette(
        "treated_parotid_cancer_us_neck",
        "Treated parotid cancer; a neck ultrasound is selected: an info card on what ultrasound can and cannot show, offering to add the MRI protocol.",
        hook_request(
            pid,
            patient(pid, "female", "1985-05-15"),
            conds,
            procs,
            [draft],
            ["ServiceRequest/us-neck"],
        ),
        outcome(
            card(
                "info",
                "Neck ultrasound cannot assess deep tissues or perineural spread: add MRI orbits face neck if needed",
                ["fine-needle aspiration", "US neck ← ordered"],
                [[f"create {MRI_TEXT}"]],
            )
        ),
    )

    # 34 ultrasound-guided FNA.
    pid = "pt-us-fna"
    conds, procs = treated_parotid_cancer(pid)
    draft = order(
        pid,
        "us-fna",
        codings=[coding(LOCAL, "IMG30190", "US GUIDED FNA NECK LYMPH NODE")],
        text="US GUIDED FNA NECK LYMPH NODE",
        reason="parotid-ca",
    )
    vignette(
        "treated_parotid_cancer_us_guided_fna",
        "An ultrasound-guided FNA of a neck node: a procedure, not a diagnostic study to advise on; silence.",
        hook_request(
            pid,
            patient(pid, "male", "1971-11-11"),
            conds,
            procs,
            [draft],
            ["ServiceRequest/us-fna"],
        ),
        NO_CARDS,
    )

    # 35 order-sign: every draft, warnings only.
    pid = "pt-sign"
    conds, procs = treated_parotid_cancer(pid)
    mri = local_mri(pid, "mri-neck-sign", "MRI NECK SOFT TISSUE W WO CONTRAST", "IMG10487")
    mri["reasonReference"] = [{"reference": "Condition/parotid-ca"}]
    ct = order(pid, "ct-neck-sign", codings=[CT_70491], text="CT SOFT TISSUE NECK W CONTRAST")
    vignette(
        "order_sign_mri_neck_and_ct_neck",
        "order-sign with two drafts: an MRI neck (the incomplete protocol is still there at signing: warning) and a CT neck with contrast (its info-level advice is not repeated at signing).",
        hook_request(pid, patient(pid, "female", "1967-06-06"), conds, procs, [mri, ct], None),
        outcome(
            card(
                "warning",
                REGIONS_SUMMARY,
                ["MRI NECK SOFT TISSUE W WO CONTRAST"],
                [replace("ServiceRequest/mri-neck-sign")],
            ),
            service=SIGN_SERVICE,
        ),
    )

    # 36 order-sign of the right study.
    pid = "pt-sign-ok"
    conds, procs = treated_parotid_cancer(pid)
    draft = order(
        pid, "mri-ofn-sign", codings=[MRI_70543], text="MRI orbits face neck w/wo IV contrast"
    )
    vignette(
        "order_sign_full_protocol",
        "order-sign of the full protocol without a reason: the missing history was info at selection, and is not repeated at signing; silence.",
        hook_request(pid, patient(pid, "male", "1962-02-22"), conds, procs, [draft], None),
        outcome(service=SIGN_SERVICE),
    )

    # 37 the CDS Hooks sandbox's PAMA screen, for a patient outside the scenario.
    pid = "pt-pama-other"
    conds = [
        condition(
            pid,
            "opscc",
            [coding(ICD10, "C10.9", "Malignant neoplasm of oropharynx, unspecified")],
            onset="2023-03-03",
        )
    ]
    procs = [
        procedure(
            pid,
            "crt",
            [coding(SCT, "703423002", "Combined chemotherapy and radiation therapy")],
            period=("2023-04-01", "2023-05-20"),
        )
    ]
    draft = order(pid, "pama-mri", codings=[MRI_70543])
    vignette(
        "pama_cpt_order_outside_the_scenario",
        "As the sandbox's PAMA Imaging screen sends it: a CPT 70543 draft for a patient treated for oropharyngeal cancer. No card; the rating system action says no criteria of this service apply.",
        hook_request(
            pid,
            patient(pid, "male", "1959-09-19"),
            conds,
            procs,
            [draft],
            ["ServiceRequest/pama-mri"],
        ),
        outcome(pama=[["ServiceRequest/pama-mri", "no-criteria-apply"]]),
    )

    # 38 CT neck, contrast not said.
    pid = "pt-ct-unsaid"
    conds, procs = treated_parotid_cancer(pid)
    draft = order(
        pid,
        "ct-neck-plain",
        codings=[coding(LOCAL, "IMG20001", "CT NECK SOFT TISSUE")],
        text="CT NECK SOFT TISSUE",
        reason="parotid-ca",
    )
    vignette(
        "treated_parotid_cancer_ct_neck_contrast_not_said",
        "Treated parotid cancer; 'CT NECK SOFT TISSUE' does not say whether IV contrast is given: an info card naming the rated CT (with IV contrast) and the MRI protocol.",
        hook_request(
            pid,
            patient(pid, "female", "1969-03-03"),
            conds,
            procs,
            [draft],
            ["ServiceRequest/ct-neck-plain"],
        ),
        outcome(
            card(
                "info",
                "Say 'with IV contrast': CT neck with IV contrast is the rated CT for treated salivary gland cancer",
                ["does not say that it is done with IV contrast"],
                [
                    replace("ServiceRequest/ct-neck-plain", CT_TEXT),
                    replace("ServiceRequest/ct-neck-plain"),
                ],
            )
        ),
    )


def write_record_bundle() -> None:
    """The first vignette's record as a plain FHIR Bundle, for `salivary-cds replay --order-text`."""
    _, request, _ = VIGNETTES["parotid_mec_after_parotidectomy_and_imrt_local_mri_neck"]
    prefetch = request["prefetch"]
    resources = [prefetch["patient"]] + [
        e["resource"]
        for key in ("conditions", "procedures", "serviceRequests")
        for e in prefetch[key]["entry"]
    ]
    bundle = {
        "resourceType": "Bundle",
        "id": "parotid-mec-record",
        "type": "collection",
        "entry": [
            {
                "fullUrl": f"https://ehr.example.org/fhir/{r['resourceType']}/{r['id']}",
                "resource": r,
            }
            for r in resources
        ],
    }
    (OUT / "bundles").mkdir(exist_ok=True)
    (OUT / "bundles" / "parotid_mec_record.json").write_text(
        json.dumps(bundle, indent=2) + "\n", encoding="utf-8"
    )


def main() -> None:
    build()
    expected: dict[str, Any] = {}
    for name, (description, request, result) in VIGNETTES.items():
        (OUT / f"{name}.json").write_text(json.dumps(request, indent=2) + "\n", encoding="utf-8")
        expected[name] = {"description": description, **result}
    (OUT / "expected-outcomes.json").write_text(
        json.dumps(expected, indent=2) + "\n", encoding="utf-8"
    )
    write_record_bundle()
    print(f"wrote {len(VIGNETTES)} vignettes to {OUT}")


if __name__ == "__main__":
    main()
