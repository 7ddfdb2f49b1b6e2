"""A bulk FHIR export of made-up patients whose orders and reports happen over time.

Written with the vignettes' builder (``fhir.build``, codes by name from the vignettes' checked
code lists, so no display is invented), deterministically from a seed, as NDJSON per resource
type, gzip or not, spread over several files per type: what ``salivary-cds simulate`` reads.
The tests use it with a few patients, the benchmark with up to 100,000.

One patient in ``in_scope_every`` has a timeline after a parotid cancer (days from the date
the cancer was recorded, D):

- D+10   MRI NECK W WO CONTRAST ordered: before any treatment, so no card (initial staging);
- D+30   superficial parotidectomy; D+60 to D+105 IMRT;
- D+133  PET/CT ordered 4 weeks after radiotherapy: ``pet-too-early``;
- D+270  MRI NECK W WO CONTRAST ordered: ``incomplete-mri-protocol``; done D+272, its report
         (NI-RADS 2b) issued D+275, after the order, which therefore must not see it;
- D+284  MRI ORBITS FACE NECK W WO CONTRAST ordered 9 days after that indeterminate report:
         ``repeat-mri-too-soon``.
Every other patient has a laryngeal cancer or none, and routine imaging and laboratory orders.
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import IO, Any

from cds_service.cli.vignettes import Codebook, default_examples_dir
from cds_service.fhir import build as fb
from cds_service.knowledge.loader import Knowledge

LOCAL_IMAGING = "http://hospital.example.org/fhir/CodeSystem/imaging-orderables"
LOCAL_LAB = "http://hospital.example.org/fhir/CodeSystem/lab-orderables"
ROUTINE_IMAGING = ["XR CHEST 2 VIEWS", "CT CHEST W CONTRAST", "US ABDOMEN COMPLETE"]
LABS = ["CBC WITH DIFFERENTIAL", "BASIC METABOLIC PANEL", "TSH", "LIPID PANEL"]
START = date(2023, 1, 1)

#: What the in-scope timeline's orders are expected to get, by order id suffix.
EXPECTED = {
    "staging-mri": None,
    "early-pet": "pet-too-early",
    "mri-neck": "incomplete-mri-protocol",
    "repeat-mri": "repeat-mri-too-soon",
}

Resource = dict[str, Any]


def codebook(knowledge: Knowledge) -> Codebook:
    root = default_examples_dir()
    systems = json.loads((root / "vignettes.json").read_text(encoding="utf-8"))["systems"]
    return Codebook.of(knowledge, systems, root / "background-codes.json")


def _day(d: date, time: str | None = None) -> str:
    return f"{d.isoformat()}T{time}" if time else d.isoformat()


def _order(pid: str, oid: str, name: str, system: str, code: str, at: date, **kw: Any) -> Resource:
    return fb.service_request(
        pid,
        oid,
        codings=[fb.coding(system, code)],
        text=name,
        status=kw.pop("status", "completed"),
        authored=_day(at, "09:30:00Z"),
        **kw,
    )


class ExportWriter:
    """Builds patients; ``write`` spreads them over NDJSON files."""

    def __init__(self, knowledge: Knowledge, seed: int = 31, in_scope_every: int = 10) -> None:
        self.codes = codebook(knowledge)
        self.random = random.Random(seed)
        self.in_scope_every = in_scope_every

    def patient(self, n: int) -> Iterator[Resource]:
        pid = f"sim-{n:07d}"
        r = self.random
        birth = START - timedelta(days=r.randint(40 * 365, 85 * 365))
        yield fb.patient(pid, r.choice(["female", "male"]), birth.isoformat())
        yield fb.condition(
            pid, f"{pid}-htn", self.codes.codings(["ICD-10-CM I10"]), recorded="2015-03-02"
        )
        d0 = START + timedelta(days=r.randint(0, 365))
        if n % self.in_scope_every == 0:
            yield from self._in_scope(pid, d0)
        elif n % self.in_scope_every == 1:
            yield fb.condition(
                pid, f"{pid}-larynx", self.codes.codings(["ICD-10-CM C32.9"]), recorded=_day(d0)
            )
            yield _order(
                pid,
                f"{pid}-mri-neck",
                "MRI NECK W WO CONTRAST",
                LOCAL_IMAGING,
                "IMG1",
                d0 + timedelta(days=200),
            )
        for i in range(r.randint(0, 3)):
            at = d0 + timedelta(days=r.randint(0, 500))
            name = r.choice(ROUTINE_IMAGING)
            yield _order(pid, f"{pid}-img-{i}", name, LOCAL_IMAGING, f"IMG{10 + i}", at)
        for i in range(r.randint(1, 4)):
            at = d0 + timedelta(days=r.randint(0, 500))
            name = r.choice(LABS)
            yield _order(pid, f"{pid}-lab-{i}", name, LOCAL_LAB, f"LAB{i}", at)

    def _in_scope(self, pid: str, d0: date) -> Iterator[Resource]:
        def on(days: int) -> date:
            return d0 + timedelta(days=days)

        cancer = f"{pid}-parotid"
        yield fb.condition(
            pid,
            cancer,
            self.codes.codings(["ICD-10-CM C07"]),
            text="Mucoepidermoid carcinoma of left parotid gland",
            onset=_day(on(-14)),
            recorded=_day(d0),
        )
        yield _order(
            pid, f"{pid}-staging-mri", "MRI NECK W WO CONTRAST", LOCAL_IMAGING, "IMG1", on(10)
        )
        yield fb.procedure(
            pid,
            f"{pid}-parotidectomy",
            self.codes.codings(["CPT 42415"]),
            text="Left superficial parotidectomy",
            performed=_day(on(30)),
            reason=cancer,
        )
        yield fb.procedure(
            pid,
            f"{pid}-imrt",
            self.codes.codings(["CPT 77386"]),
            text="Adjuvant IMRT to left parotid bed",
            period=(_day(on(60)), _day(on(105))),
            reason=cancer,
        )
        yield fb.service_request(
            pid,
            f"{pid}-early-pet",
            codings=self.codes.codings(["CPT 78815"]),
            text="PET/CT SKULL BASE TO MID-THIGH",
            status="completed",
            authored=_day(on(133), "09:30:00Z"),
        )
        yield _order(
            pid,
            f"{pid}-mri-neck",
            "MRI NECK W WO CONTRAST",
            LOCAL_IMAGING,
            "IMG1",
            on(270),
            occurrence=_day(on(272), "14:00:00Z"),
        )
        report = fb.diagnostic_report(
            pid,
            f"{pid}-mri-report",
            "MRI NECK W WO CONTRAST",
            _day(on(272), "14:00:00Z"),
            conclusion="NI-RADS 2b: indeterminate enhancement in the left parotid bed.",
        )
        report["issued"] = _day(on(275), "08:00:00Z")
        yield report
        yield _order(
            pid,
            f"{pid}-repeat-mri",
            "MRI ORBITS FACE NECK W WO CONTRAST",
            LOCAL_IMAGING,
            "IMG2",
            on(284),
        )

    def write(
        self, root: Path, patients: int, files_per_type: int = 1, compress: bool = False
    ) -> dict[str, int]:
        """Write ``patients`` patients; return the resources written per type."""
        root.mkdir(parents=True, exist_ok=True)
        handles: dict[tuple[str, int], IO[str]] = {}
        counts: dict[str, int] = {}
        suffix = ".ndjson.gz" if compress else ".ndjson"
        try:
            for n in range(patients):
                for resource in self.patient(n):
                    kind = resource["resourceType"]
                    slot = (kind, counts.get(kind, 0) % files_per_type)
                    handle = handles.get(slot)
                    if handle is None:
                        path = root / f"{kind}.{slot[1]:03d}{suffix}"
                        handle = (
                            gzip.open(path, "wt", encoding="utf-8", compresslevel=1)  # noqa: SIM115 - many open at once, closed below
                            if compress
                            else path.open("w", encoding="utf-8")
                        )
                        handles[slot] = handle
                    handle.write(json.dumps(resource, separators=(",", ":")) + "\n")
                    counts[kind] = counts.get(kind, 0) + 1
        finally:
            for handle in handles.values():
                handle.close()
        return counts
