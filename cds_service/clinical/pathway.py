"""Where the patient stands in the pathway after treatment: what the last head and neck report
concluded, and whether a recurrence is on record.

Why: the guidance's next step depends on the last surveillance study (positive: tissue
confirmation and a tumour board; indeterminate: a short-interval MRI in 2-3 months or PET/CT;
negative: routine follow-up), and a recurrence on record means the patient has left routine
surveillance for restaging and salvage planning. Only the latest final report is read, and only
what it says unambiguously: an older report never speaks for a newer one that says nothing clear.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from cds_service.clinical.orders import PriorStudy
from cds_service.clinical.patient_record import PatientRecord
from cds_service.clinical.reasoning import PostTreatmentContext, described, usable
from cds_service.clinical.report_reading import ReportReader, ReportReading
from cds_service.clinical.report_text import compile_linear
from cds_service.fhir.records import ConditionFact, PartialDate
from cds_service.knowledge.loader import Knowledge
from cds_service.knowledge.terminology import ValueSetName

#: A name longer than this is not a procedure or diagnosis name: not read.
_MAX_NAME = 500


@dataclass(frozen=True)
class LastReport:
    """The latest final head and neck cross-sectional report, read. ``reading`` is None when
    the report says nothing clear: it is then named ("see the report") but never acted on."""

    study: PriorStudy
    date: PartialDate
    reading: ReportReading | None
    #: A biopsy or FNA (a completed Procedure) is on record on or after the report's date:
    #: tissue has been sampled, so no card asks for it again.
    tissue_sampled_after: bool = False

    @property
    def branch(self) -> str | None:
        return self.reading.branch if self.reading is not None else None

    @property
    def tissue_next(self) -> bool:
        """Tissue confirmation is the next step: the report is highly suspicious (NI-RADS 3)
        or consistent with recurrence, and no biopsy has followed it."""
        return self.branch in ("positive", "highly-suspicious") and not self.tissue_sampled_after

    @property
    def modality(self) -> str:
        return self.study.reading.modality or ""


@dataclass(frozen=True)
class Recurrence:
    """Evidence that the cancer has recurred: a Condition, or the last report (NI-RADS 4)."""

    reference: str
    display: str
    #: Set when the last report is the evidence (NI-RADS 4): cards then name it by its finding.
    report: LastReport | None = None
    #: Tissue has confirmed it (the report says biopsy-proven, or a biopsy followed it): the
    #: cards then name the tumour board, never tissue confirmation, as the next step.
    proven: bool = False


@dataclass(frozen=True)
class PathwayPosition:
    last_report: LastReport | None = None
    recurrence: Recurrence | None = None
    #: Adenoid cystic carcinoma on record: perineural spread is its hallmark.
    adenoid_cystic: bool = False
    #: The histology as recorded (ICD-O-3 or SNOMED CT morphology), if coded apart from the text.
    histology: str | None = None
    #: The gland the cancer is in (parotid, submandibular, sublingual), when the record says.
    gland: str | None = None
    #: The nerves an adenoid cystic carcinoma of that gland follows (pathway.json acc.nerves).
    acc_nerves: str = ""


class PathwayReader:
    """Built once from the knowledge; ``position`` reads one patient's record."""

    def __init__(self, knowledge: Knowledge) -> None:
        self._k = knowledge.pathway
        self._vs = knowledge.valuesets
        self._reports = ReportReader(knowledge.pathway)
        self._acc_codes = frozenset((c.system, c.code) for c in self._k.acc.morphologyCodes)
        self._acc_text = compile_linear(self._k.acc.textPattern)
        self._biopsy = [compile_linear(p) for p in self._k.tissueSampling.procedurePatterns]
        self._glands = [
            (gland, [compile_linear(p) for p in patterns])
            for gland, patterns in self._k.acc.glandPatterns.items()
        ]

    def position(self, record: PatientRecord, context: PostTreatmentContext) -> PathwayPosition:
        last = self.last_report(record)
        gland = self._gland(context)
        return PathwayPosition(
            last,
            self._recurrence(record, context, last),
            self._adenoid_cystic(context),
            self._histology(context),
            gland,
            self._k.acc.nerves.get(gland or "default", self._k.acc.nerves["default"]),
        )

    def last_report(self, record: PatientRecord) -> LastReport | None:
        """The latest dated final report of a head and neck MRI, CT or PET/CT (its reading None
        when it says nothing clear: its silence is not filled by an older one)."""
        k = self._k
        reports = [
            s
            for s in record.prior_studies
            if s.fact.reference.startswith("DiagnosticReport/")
            and s.fact.status in k.reportStatuses
            and s.reading.modality in k.reportModalities
            and s.fact.date is not None
        ]
        if not reports:
            return None
        latest = max(reports, key=lambda s: s.fact.date.value if s.fact.date else date.min)
        if latest.fact.date is None:
            return None
        reading = self._reports.read(latest.fact.conclusion, latest.fact.coded_conclusion)
        return LastReport(
            latest, latest.fact.date, reading, self._sampled_since(record, latest.fact.date)
        )

    def _sampled_since(self, record: PatientRecord, since: PartialDate) -> bool:
        """A completed biopsy or FNA (by the Procedure's name), or a final pathology or
        cytology report, on or after the report's day."""
        if any(t.date is not None and t.date.value >= since.value for t in record.tissue_reports):
            return True
        for procedure in record.procedures:
            when = procedure.performed_start or procedure.performed_end
            if procedure.status != "completed" or when is None or when.value < since.value:
                continue
            names = [procedure.text, *(c.display for c in procedure.codes)]
            if any(
                n and len(n) <= _MAX_NAME and p.search(n.lower())
                for n in names
                for p in self._biopsy
            ):
                return True
        return False

    def _recurrence(
        self, record: PatientRecord, context: PostTreatmentContext, last: LastReport | None
    ) -> Recurrence | None:
        k = self._k.recurrence
        cancer = context.cancer.condition
        if cancer.clinical_status in k.cancerClinicalStatuses:
            return Recurrence(
                cancer.reference, f"{context.cancer.display}: {cancer.clinical_status}"
            )
        treated = context.treatment_end()
        for condition in record.conditions:
            if not usable(condition) or condition.verification_status not in (
                k.metastasisVerificationStatuses
            ):
                continue
            if condition.clinical_status not in k.metastasisClinicalStatuses:
                continue
            code = self._vs.match(k.metastasisValueSet, condition.codes)
            if code is None or not self._new_since(condition, treated, last):
                continue
            name = described(condition.text, code, self._vs, k.metastasisValueSet)
            return Recurrence(condition.reference, f"{name} ({code.label})")
        if last is not None and last.reading is not None and last.branch == "recurrence":
            proven = last.reading.proven or last.tissue_sampled_after
            return Recurrence(last.study.fact.reference, last.study.fact.display, last, proven)
        return None

    @staticmethod
    def _new_since(
        condition: ConditionFact, treated: PartialDate | None, last: LastReport | None
    ) -> bool:
        """A metastasis is a recurrence only when it began after the end of treatment (one
        coded at staging is part of the treated cancer) and was not already known at the last
        report (a stable, known metastasis is followed, not restaged). Without an onset date
        it is not counted: say less."""
        onset = condition.onset or condition.recorded
        if onset is None or treated is None or onset.value <= treated.value:
            return False
        return last is None or onset.value >= last.date.value

    def _adenoid_cystic(self, context: PostTreatmentContext) -> bool:
        condition = context.cancer.condition
        codes = condition.codes + condition.extension_codes
        if any((c.system, c.code) in self._acc_codes for c in codes):
            return True
        said = [condition.text, context.cancer.display, *(c.display for c in codes)]
        return any(t and self._acc_text.search(t) for t in said)

    def _gland(self, context: PostTreatmentContext) -> str | None:
        """Which gland, from the cancer's code display, text and body site (ICD-10-CM C07 is
        the parotid; C08.0 submandibular; C08.1 sublingual: by their names in the record)."""
        condition = context.cancer.condition
        coded = {(c.system, _bare(c.code)) for c in condition.codes}
        for gland, codes in self._k.acc.glandCodes.items():
            if any((c.system, _bare(c.code)) in coded for c in codes):
                return gland
        said = [context.cancer.display, condition.text or ""]
        said += [c.display or "" for c in condition.codes + condition.body_site_codes]
        text = " ".join(t for t in said if len(t) <= _MAX_NAME).lower()
        found = {gland for gland, patterns in self._glands if any(p.search(text) for p in patterns)}
        return found.pop() if len(found) == 1 else None  # two glands named: not sure

    def _histology(self, context: PostTreatmentContext) -> str | None:
        condition = context.cancer.condition
        code = self._vs.match(
            ValueSetName.MALIGNANT_SALIVARY_HISTOLOGY, condition.codes + condition.extension_codes
        )
        if code is None:
            return None
        return code.display or self._vs.display(ValueSetName.MALIGNANT_SALIVARY_HISTOLOGY, code)


def _bare(code: str) -> str:
    return code.replace(".", "").upper()
