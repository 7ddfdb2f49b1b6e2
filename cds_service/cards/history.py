"""The record in words: the cancer, its treatments, the last report and a recurrence as a card
shows them, and the clinical-history note a suggested order carries for the radiologist."""

from __future__ import annotations

import re

from cds_service.cards.wording import Wording, escape
from cds_service.clinical.guidance import PatientSituation
from cds_service.clinical.pathway import LastReport, Recurrence
from cds_service.clinical.reasoning import CancerEvidence, TreatmentEvidence
from cds_service.fhir.records import PartialDate
from cds_service.knowledge.loader import CardKnowledge


def cancer_date_phrase(words: Wording, cancer: CancerEvidence) -> str:
    condition = cancer.condition
    if condition.onset:
        return words.date("diagnosed", date=condition.onset.text)
    if condition.recorded:
        return words.date("recorded", date=condition.recorded.text)
    return ""


def treatment_date_phrase(words: Wording, treatment: TreatmentEvidence) -> str:
    start, end = treatment.procedure.performed_start, treatment.procedure.performed_end
    if start and end and start != end:
        return words.date("performedPeriod", start=start.text, end=end.text)
    single: PartialDate | None = end or start
    return words.date("performed", date=single.text) if single else ""


class History:
    """One patient's record in the words of cards.json."""

    def __init__(self, k: CardKnowledge, words: Wording, situation: PatientSituation) -> None:
        self.k = k
        self.words = words
        self.situation = situation

    def plain(self, text: str) -> str:
        """An EHR display as a radiologist should read it: billing suffixes cut ("(HCC)")."""
        for suffix in self.k.billingSuffixes:
            text = text.replace(suffix, "")
        return re.sub(r"\s{2,}", " ", text).strip()

    def shown(self, text: str) -> str:
        """An EHR display for card markdown: billing suffixes cut, markdown escaped."""
        return escape(self.plain(text))

    def report_parts(self, report: LastReport) -> dict[str, str]:
        """The last report as modality, date and finding ("MRI", "2026-08-03", "NI-RADS 2b")."""
        reading = report.reading
        finding = (
            self.k.niradsFinding.format(category=reading.category)
            if reading.category
            else self.k.reportFindings[reading.branch]
        )
        return {
            "modality": self.k.modalityNames.get(report.modality, report.modality),
            "date": report.date.text,
            "finding": finding,
        }

    def report_phrase(self, report: LastReport) -> str:
        parts = self.report_parts(report)
        return f"{parts['modality']} {parts['date']}: {parts['finding']}"

    def recurrence_phrase(self, recurrence: Recurrence) -> str:
        """The recurrence's evidence for card markdown: the report by its finding, else the
        Condition by its name."""
        if recurrence.report is not None:
            return self.report_phrase(recurrence.report)
        return self.shown(recurrence.display)

    def note(self) -> str:
        """The clinical-history note of a suggested order (plain text, for the radiologist)."""
        words = self.words
        context = self.situation.context
        pathway = self.situation.pathway
        treatments = "; ".join(
            words.common(
                "historyTreatment",
                display=self.plain(t.display),
                date_phrase=treatment_date_phrase(words, t),
            )
            for t in context.treatments
        )
        last = pathway.last_report
        prior = ""
        latest = self.situation.latest_prior
        if latest and (last is None or latest.fact.reference != last.study.fact.reference):
            prior = words.common(
                "historyPrior",
                prior=self.plain(latest.fact.display),
                date=latest.fact.date.text if latest.fact.date else "date unknown",
            )
        histology = ""
        if pathway.histology and pathway.histology.lower() not in context.cancer.display.lower():
            histology = words.common("historyHistology", histology=pathway.histology)
        return words.common(
            "historyNote",
            cancer=self.plain(context.cancer.display),
            code_label=context.cancer.code.label,
            date_phrase=cancer_date_phrase(words, context.cancer),
            histology=histology,
            treatments=treatments,
            last_report=words.common("historyLastReport", **self.report_parts(last))
            if last
            else "",
            prior=prior,
            hallmark=words.common("accHallmark") if pathway.adenoid_cystic else "",
        )
