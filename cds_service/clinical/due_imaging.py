"""Imaging that is due and that nobody has ordered (patient-view): the baseline study after
treatment, and the follow-up after an indeterminate report. Pure functions, with evidence.

Why: order-time cards help only when someone orders. The guidance's pathway also says what
should happen when nobody does: surveillance imaging may begin 8-12 weeks after treatment
(shared/clinical/ni-rads.md), and an indeterminate study is followed by an MRI in 2-3 months
(the ACR article's "What's Next After MRI?"). The windows are data (hooks/knowledge/pathway.json,
``dueImaging``).

Fail safe: a date is read as every day it can mean (a year, a month, a day), and a card is
decided only when every one of those days puts the patient inside the window and no study can
have been done since. A treatment period without an end, a study without a date, a recurrence,
a pending order: nothing is certain or something is already under way, so nothing is said.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from cds_service.clinical.orders import PriorStudy
from cds_service.clinical.pathway import LastReport, PathwayPosition
from cds_service.clinical.patient_record import PatientRecord
from cds_service.clinical.reasoning import PostTreatmentContext, TreatmentEvidence
from cds_service.fhir.records import PartialDate, shift_months
from cds_service.knowledge.loader import PathwayKnowledge
from cds_service.knowledge.rules import RuleId


def span(when: PartialDate) -> tuple[date, date]:
    """The first and last day a FHIR date can mean, by the precision it was sent with."""
    start = when.value
    if len(when.text) == 4:  # a year
        return start, date(start.year, 12, 31)
    if len(when.text) == 7:  # a month
        return start, date(start.year, start.month, calendar.monthrange(start.year, start.month)[1])
    return start, start


@dataclass(frozen=True)
class LastTreatment:
    """The treatment that ended last, and the days its end can fall on."""

    treatment: TreatmentEvidence
    ended: PartialDate
    earliest: date
    latest: date


@dataclass(frozen=True)
class BaselineDue:
    """The baseline post-treatment study is due: the last treatment ended inside the window
    and no head and neck CT, MRI or PET/CT is dated since."""

    last: LastTreatment
    #: When the window opened (the treatment's end + baselineFromWeeks).
    due_from: date
    from_weeks: int
    rule_id: Literal[RuleId.BASELINE_IMAGING_DUE] = RuleId.BASELINE_IMAGING_DUE


@dataclass(frozen=True)
class FollowUpOverdue:
    """The short-interval follow-up after an indeterminate report is overdue."""

    report: LastReport
    #: The interval the guidance gives (2-3 months after the report), as dates.
    expected_from: date
    expected_to: date
    weeks: int
    rule_id: Literal[RuleId.FOLLOW_UP_IMAGING_OVERDUE] = RuleId.FOLLOW_UP_IMAGING_OVERDUE


DueImaging = BaselineDue | FollowUpOverdue


def last_treatment(context: PostTreatmentContext) -> LastTreatment | None:
    """The treatment that ended last (radiotherapy after surgery, or surgery alone), or None
    when any treatment's end is unknown (a period without an end: it may still be going on)."""
    found: list[LastTreatment] = []
    for t in context.treatments:
        ended = t.procedure.performed_end
        if ended is None:
            return None
        first, last = span(ended)
        found.append(LastTreatment(t, ended, first, last))
    if not found:
        return None
    latest = max(found, key=lambda f: (f.latest, f.earliest))
    # The last treatment ended no earlier than the latest "earliest" of them all.
    return LastTreatment(
        latest.treatment, latest.ended, max(f.earliest for f in found), latest.latest
    )


class DueImagingReader:
    """Built once from the knowledge; ``due`` reads one in-scope patient."""

    def __init__(self, pathway: PathwayKnowledge) -> None:
        self._k = pathway.dueImaging
        #: The guidance's short interval after an indeterminate study (2-3 months).
        self._follow_up_months = pathway.indeterminateFollowUpMonths

    def due(
        self,
        record: PatientRecord,
        context: PostTreatmentContext,
        pathway: PathwayPosition,
        today: date,
    ) -> DueImaging | None:
        """What imaging is due, if anything certainly is; None otherwise (say nothing)."""
        k = self._k
        if pathway.recurrence is not None:
            return None  # restaging, not surveillance: another pathway
        if any(o.reading.modality in k.studyModalities for o in record.pending_orders):
            return None  # someone has already ordered it
        last = last_treatment(context)
        if last is None:
            return None
        studies = [s for s in record.prior_studies if s.reading.modality in k.studyModalities]
        if any(s.fact.date is None for s in studies):
            return None  # a study we cannot place in time may be the one that is due
        report = pathway.last_report
        if report is not None and report.branch == "indeterminate":
            first, _ = span(report.date)
            if first > last.latest:  # a surveillance report, after the treatment
                return self._follow_up(report, studies, today)
        return self._baseline(last, studies, today)

    def _baseline(
        self, last: LastTreatment, studies: list[PriorStudy], today: date
    ) -> BaselineDue | None:
        k = self._k
        opened = last.latest + timedelta(weeks=k.baselineFromWeeks)
        if today < opened:
            return None  # window not reached (for every day the end can mean)
        if last.earliest < shift_months(today, -k.baselineUntilMonths):
            return None  # window long past (or it may be)
        if any(_latest(s) >= last.earliest for s in studies):
            return None  # imaging done since the treatment ended (or it may have been)
        return BaselineDue(last, opened, k.baselineFromWeeks)

    def _follow_up(
        self, report: LastReport, studies: list[PriorStudy], today: date
    ) -> FollowUpOverdue | None:
        k = self._k
        first, latest = span(report.date)
        if today < latest + timedelta(weeks=k.followUpFromWeeks):
            return None  # not overdue yet
        if first < shift_months(today, -k.followUpUntilMonths):
            return None  # long past: the record more likely misses the study than the clinic
        own = report.study.fact.reference
        if any(s.fact.reference != own and _latest(s) > first for s in studies):
            return None  # something later (or that may be later) was done
        low, high = (shift_months(report.date.value, m) for m in self._follow_up_months)
        return FollowUpOverdue(report, low, high, (today - report.date.value).days // 7)


def _latest(study: PriorStudy) -> date:
    assert study.fact.date is not None  # undated studies silence the reader before this
    return span(study.fact.date)[1]
