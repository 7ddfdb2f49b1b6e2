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
from cds_service.fhir.records import PartialDate
from cds_service.knowledge.linear_regex import compile_linear
from cds_service.knowledge.loader import Knowledge
from cds_service.knowledge.terminology import ValueSetName


@dataclass(frozen=True)
class LastReport:
    """The latest final head and neck cross-sectional report, read."""

    study: PriorStudy
    date: PartialDate
    reading: ReportReading

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


@dataclass(frozen=True)
class PathwayPosition:
    last_report: LastReport | None = None
    recurrence: Recurrence | None = None
    #: Adenoid cystic carcinoma on record: perineural spread is its hallmark.
    adenoid_cystic: bool = False
    #: The histology as recorded (ICD-O-3 or SNOMED CT morphology), if coded apart from the text.
    histology: str | None = None


class PathwayReader:
    """Built once from the knowledge; ``position`` reads one patient's record."""

    def __init__(self, knowledge: Knowledge) -> None:
        self._k = knowledge.pathway
        self._vs = knowledge.valuesets
        self._reports = ReportReader(knowledge.pathway)
        self._acc_codes = frozenset((c.system, c.code) for c in self._k.acc.morphologyCodes)
        self._acc_text = compile_linear(self._k.acc.textPattern, ignore_case=True)

    def position(self, record: PatientRecord, context: PostTreatmentContext) -> PathwayPosition:
        last = self.last_report(record)
        return PathwayPosition(
            last,
            self._recurrence(record, context, last),
            self._adenoid_cystic(context),
            self._histology(context),
        )

    def last_report(self, record: PatientRecord) -> LastReport | None:
        """The latest dated final report of a head and neck MRI, CT or PET/CT, if it says
        something unambiguous; None otherwise (its silence is not filled by an older one)."""
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
        reading = self._reports.read(latest.fact.conclusion)
        if reading is None or latest.fact.date is None:
            return None
        return LastReport(latest, latest.fact.date, reading)

    def _recurrence(
        self, record: PatientRecord, context: PostTreatmentContext, last: LastReport | None
    ) -> Recurrence | None:
        k = self._k.recurrence
        cancer = context.cancer.condition
        if cancer.clinical_status in k.cancerClinicalStatuses:
            return Recurrence(
                cancer.reference, f"{context.cancer.display}: {cancer.clinical_status}"
            )
        for condition in record.conditions:
            if not usable(condition) or condition.verification_status not in (
                k.metastasisVerificationStatuses
            ):
                continue
            if condition.clinical_status not in k.metastasisClinicalStatuses:
                continue
            code = self._vs.match(k.metastasisValueSet, condition.codes)
            if code is not None:
                name = described(condition.text, code, self._vs, k.metastasisValueSet)
                return Recurrence(condition.reference, f"{name} ({code.label})")
        if last is not None and last.reading.branch == "recurrence":
            return Recurrence(last.study.fact.reference, last.study.fact.display, last)
        return None

    def _adenoid_cystic(self, context: PostTreatmentContext) -> bool:
        condition = context.cancer.condition
        codes = condition.codes + condition.extension_codes
        if any((c.system, c.code) in self._acc_codes for c in codes):
            return True
        said = [condition.text, context.cancer.display, *(c.display for c in codes)]
        return any(t and self._acc_text.search(t) for t in said)

    def _histology(self, context: PostTreatmentContext) -> str | None:
        condition = context.cancer.condition
        code = self._vs.match(
            ValueSetName.MALIGNANT_SALIVARY_HISTOLOGY, condition.codes + condition.extension_codes
        )
        if code is None:
            return None
        return code.display or self._vs.display(ValueSetName.MALIGNANT_SALIVARY_HISTOLOGY, code)
