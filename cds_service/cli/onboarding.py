"""Onboarding check of a site's imaging orderables: how the service reads each name, before
go-live, and a draft orderables ConceptMap for the site's CDS team to review.

A hospital has hundreds of imaging orderables. Each name is read with the service's own reader
(the one that reads draft orders), and matched to a study the service knows (LOINC first, then
SNOMED CT, then the service's own study classes; never CPT, whose one code covers the neck-only
MRI and the full protocol alike). The draft map is honest about what it could not tell:
``equivalent`` only for a clean read of a known study, ``inexact`` with a comment where a review
must decide, ``unmatched`` with the reason otherwise.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cds_service.clinical.orders import OrderClassifier, StudyReading
from cds_service.contract.errors import InputFileError
from cds_service.contract.text_out import terminal_safe
from cds_service.knowledge.codesystems import LOINC, SNOMED, STUDY_CLASS
from cds_service.knowledge.loader import CodedOrderable, ImagingOrderKnowledge

#: Where a study class is looked for, in order of preference.
STUDY_SYSTEMS = (LOINC, SNOMED, STUDY_CLASS)
#: Used when the export has no ``system`` column and none is given on the command line.
DEFAULT_SITE_SYSTEM = "urn:site:orderables"


@dataclass(frozen=True)
class Orderable:
    """One row of the site's export."""

    system: str
    code: str
    name: str


@dataclass(frozen=True)
class OrderableCheck:
    """How the service reads one orderable, the study it matches and what a reviewer must see."""

    orderable: Orderable
    reading: StudyReading | None
    study: CodedOrderable | None
    #: "equivalent", "inexact" or "unmatched", as the draft ConceptMap says it.
    equivalence: str
    #: Empty for a clean read; otherwise why the name needs a look.
    flag: str


def read_export(path: Path, system: str | None = None) -> list[Orderable]:
    """The export's rows (columns ``code``, ``name``, optional ``system``); refuses a file
    without those columns, an empty code or name, and a code listed twice."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            columns = set(reader.fieldnames or ())
            if not {"code", "name"} <= columns:
                raise InputFileError(f"{path}: needs the columns code and name (has {columns})")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputFileError(f"{path}: cannot read the export ({exc})") from exc
    orderables: list[Orderable] = []
    seen: set[tuple[str, str]] = set()
    for line, row in enumerate(rows, start=2):
        code, name = (row.get("code") or "").strip(), (row.get("name") or "").strip()
        row_system = (row.get("system") or "").strip() or system or DEFAULT_SITE_SYSTEM
        if not code or not name:
            raise InputFileError(f"{path}:{line}: code and name must both be given")
        if (row_system, code) in seen:
            raise InputFileError(f"{path}:{line}: code {code} is listed twice")
        seen.add((row_system, code))
        orderables.append(Orderable(row_system, code, name))
    return orderables


class OrderableChecker:
    """Reads orderable names as the service reads draft orders."""

    def __init__(self, imaging: ImagingOrderKnowledge) -> None:
        self._classifier = OrderClassifier(imaging)
        self._protocol = imaging.recommendedProtocol
        self._studies = sorted(
            (o for o in imaging.codedOrderables if o.system in STUDY_SYSTEMS and o.regionsExact),
            key=lambda o: STUDY_SYSTEMS.index(o.system),
        )
        self._full_protocol = next(
            o for o in self._studies if o.system == LOINC and self._is_full_protocol(o)
        )

    def _is_full_protocol(self, study: CodedOrderable | StudyReading) -> bool:
        regions = frozenset(study.regions)
        return (
            study.modality == self._protocol.modality
            and study.contrast == self._protocol.contrast
            and all(regions & set(r.anyOf) for r in self._protocol.requiredRegions)
        )

    def check(self, orderable: Orderable) -> OrderableCheck:
        reading = self._classifier.read([], [orderable.name])
        if reading is None:
            return OrderableCheck(
                orderable, None, None, "unmatched", "cannot read: no single modality in the name"
            )
        if self._classifier.read_text(orderable.name).regions_ambiguous:
            return OrderableCheck(
                orderable,
                reading,
                None,
                "unmatched",
                "ambiguous: CPT-like wording (orbit, face, and/or neck) does not say which "
                "regions this orderable covers",
            )
        if reading.guided_procedure:
            return OrderableCheck(
                orderable, reading, None, "unmatched", "image-guided procedure, not a study"
            )
        if not reading.regions_known:
            return OrderableCheck(
                orderable, reading, None, "unmatched", "cannot read: no body region in the name"
            )
        if reading.contrast == "conflicting":
            return OrderableCheck(
                orderable, reading, None, "unmatched", "contrast words contradict each other"
            )
        exact = next((s for s in self._studies if _same(s, reading)), None)
        if exact is not None:
            return OrderableCheck(orderable, reading, exact, "equivalent", "")
        if self._is_full_protocol(reading):
            return OrderableCheck(
                orderable,
                reading,
                self._full_protocol,
                "inexact",
                f"reads as the full protocol ({_regions(reading)}) but not as "
                f"{self._full_protocol.display}: confirm the protocol with radiology",
            )
        wider = next((s for s in self._studies if _narrower(s, reading)), None)
        if wider is not None:
            extra = sorted(reading.regions - set(wider.regions))
            return OrderableCheck(
                orderable,
                reading,
                wider,
                "inexact",
                f"also names {', '.join(extra)}: review",
            )
        return OrderableCheck(
            orderable,
            reading,
            None,
            "unmatched",
            "" if not _matters(reading, self._protocol.headNeckRegions) else "no study class",
        )


def _same(study: CodedOrderable, reading: StudyReading) -> bool:
    return (
        study.modality == reading.modality
        and frozenset(study.regions) == reading.regions
        and study.contrast == reading.contrast
    )


def _narrower(study: CodedOrderable, reading: StudyReading) -> bool:
    return (
        study.modality == reading.modality
        and frozenset(study.regions) < reading.regions
        and study.contrast == reading.contrast
    )


def _matters(reading: StudyReading, head_neck: frozenset[str]) -> bool:
    """Head and neck imaging, or PET/CT: what the service gives advice on."""
    return bool(reading.regions & head_neck) or reading.modality == "PET-CT"


def _regions(reading: StudyReading) -> str:
    return ", ".join(sorted(reading.regions)) or "-"


def format_checks(checks: Sequence[OrderableCheck]) -> str:
    """A table a CDS team can read: one orderable per line, the flagged ones marked ``!``."""
    header = ["", "code", "name", "modality", "regions", "contrast", "study", "flag"]
    lines = []
    for c in checks:
        r = c.reading
        study = f"{c.study.code} {c.study.display}" if c.study else "-"
        lines.append(
            [
                "!" if c.equivalence != "equivalent" and c.flag else "",
                c.orderable.code,
                c.orderable.name,
                (r.modality or "-") if r else "-",
                _regions(r) if r else "-",
                r.contrast if r else "-",
                study if c.equivalence == "equivalent" else f"({c.equivalence}) {study}",
                c.flag,
            ]
        )
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    rows = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
        for row in [header, *lines]
    ]
    clean = sum(1 for c in checks if c.equivalence == "equivalent")
    flagged = sum(1 for c in checks if c.equivalence != "equivalent" and c.flag)
    summary = (
        f"{len(checks)} orderables: {clean} read cleanly as a known study, {flagged} to review, "
        f"{len(checks) - clean - flagged} outside the service's scope"
    )
    return terminal_safe("\n".join([*rows, "", summary]))  # names from a site's export


def draft_conceptmap(checks: Sequence[OrderableCheck]) -> dict[str, Any]:
    """A draft orderables.json (FHIR R4 ConceptMap) for the site to review: one group per
    (site system, target system); unmatched orderables go in the LOINC group without a code."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in checks:
        target: dict[str, Any] = {"equivalence": c.equivalence}
        if c.study is not None:
            target = {"code": c.study.code, "display": c.study.display, **target}
        if c.flag:
            target["comment"] = c.flag
        elif c.equivalence == "unmatched":
            target["comment"] = "outside this service's scope: read by name"
        element = {"code": c.orderable.code, "display": c.orderable.name, "target": [target]}
        key = (c.orderable.system, c.study.system if c.study else LOINC)
        groups.setdefault(key, []).append(element)
    return {
        "resourceType": "ConceptMap",
        "id": "site-orderables-draft",
        "status": "draft",
        "name": "SiteImagingOrderablesDraft",
        "title": "Site imaging orderables to the studies the salivary imaging CDS service reads",
        "description": (
            "Draft written by `salivary-cds orderables`: review every inexact and unmatched "
            "element (and spot-check the equivalent ones) before putting it in the site folder "
            "as orderables.json. Only equal/equivalent targets are used to read orders."
        ),
        "group": [
            {"source": source, "target": target, "element": elements}
            for (source, target), elements in groups.items()
        ],
    }
