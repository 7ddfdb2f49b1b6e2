"""Cards about where the patient stands in the pathway after treatment: a PET/CT too soon after
radiotherapy, a recurrence on record (restaging), a positive report (tissue confirmation next)
and a repeat MRI sooner than the follow-up an indeterminate report calls for."""

from __future__ import annotations

from cds_service.cards.context import CardContext
from cds_service.cards.model import Rendered
from cds_service.cards.rules.registry import RuleRendering
from cds_service.cards.wording import needs
from cds_service.clinical.guidance import (
    PetTooEarly,
    RecurrenceRestaging,
    RepeatMriTooSoon,
    TissueConfirmationNext,
)
from cds_service.knowledge.rules import RuleId


def pet_too_early(c: CardContext, finding: PetTooEarly) -> Rendered:
    rule = finding.rule_id
    earliest = finding.earliest.isoformat()
    lead = c.text(
        rule,
        "lead",
        ordered=c.ordered,
        rt_end=finding.radiotherapy_end.text,
        scan_date=finding.scan_date.isoformat(),
        days=finding.days,
        weeks=finding.days // 7,
    )
    paragraphs = [c.text(rule, "problem", min_weeks=finding.minimum_weeks, earliest=earliest)]
    defer = c.orders.defer(  # the recommendation: MRI now only for a specific concern
        c.text(rule, "deferLabel", earliest=earliest),
        c.text(rule, "deferDescription", earliest=earliest),
        earliest,
        recommended=True,
    )
    key = c.situation.alternative()
    suggestions = [defer]
    if key is not None:  # the PET/CT stays deferred: the MRI is added, not swapped in
        label = c.text(rule, "alternativeLabel", alternative=c.k.orders[key].text)
        suggestions.append(c.orders.add(label, key))
    return Rendered(c.summary(rule), lead, paragraphs, suggestions)


def recurrence_restaging(c: CardContext, finding: RecurrenceRestaging) -> Rendered:
    rule = finding.rule_id
    recurrence = c.history.recurrence_phrase(finding.recurrence)
    proven = finding.recurrence.proven  # tissue has spoken: never ask for it again
    return Rendered(
        c.text(rule, "summaryProven") if proven else c.summary(rule),
        c.text(rule, "lead", recurrence=recurrence, ordered=c.ordered),
        [c.text(rule, "problemProven" if proven else "problem"), *c.history.acc_chest()],
        [],
    )


def tissue_confirmation_next(c: CardContext, finding: TissueConfirmationNext) -> Rendered:
    rule = finding.rule_id
    highly = finding.report.branch == "highly-suspicious"  # NI-RADS 3: not "positive"
    return Rendered(
        c.text(rule, "summaryHighlySuspicious") if highly else c.summary(rule),
        c.text(
            rule,
            "lead",
            report=c.history.report_phrase(finding.report),
            judgement=c.history.judgement(finding.report),
        ),
        [c.text(rule, "problem")],
        [],
    )


def repeat_mri_too_soon(c: CardContext, finding: RepeatMriTooSoon) -> Rendered:
    rule = finding.rule_id
    parts = c.history.report_parts(finding.report)
    expected_from = finding.expected_from.isoformat()
    defer = c.orders.defer(
        c.text(rule, "deferLabel", expected_from=expected_from),
        c.text(rule, "deferDescription", expected_from=expected_from),
        expected_from,
        recommended=False,
    )
    return Rendered(
        c.summary(rule),
        c.text(
            rule,
            "lead",
            ordered=c.ordered,
            scan_date=finding.scan_date.isoformat(),
            days=finding.days,
            modality=parts["modality"],
            report_date=parts["date"],
            finding=parts["finding"],
        ),
        [
            c.text(
                rule,
                "problem",
                expected_from=expected_from,
                expected_to=finding.expected_to.isoformat(),
            )
        ],
        [defer],
    )


RENDERINGS: dict[RuleId, RuleRendering] = {
    RuleId.PET_TOO_EARLY: RuleRendering(
        PetTooEarly,
        pet_too_early,
        {
            "lead": needs("ordered", "rt_end", "scan_date", "days", "weeks"),
            "problem": needs("min_weeks", "earliest"),
            "deferLabel": needs("earliest"),
            "deferDescription": needs("earliest"),
            "alternativeLabel": needs("alternative"),
        },
    ),
    RuleId.RECURRENCE_RESTAGING: RuleRendering(
        RecurrenceRestaging,
        recurrence_restaging,
        {
            "lead": needs("recurrence", "ordered"),
            "problem": needs(),
            "summaryProven": needs(),
            "problemProven": needs(),
        },
    ),
    RuleId.TISSUE_CONFIRMATION_NEXT: RuleRendering(
        TissueConfirmationNext,
        tissue_confirmation_next,
        {
            "lead": needs("report", "judgement"),
            "problem": needs(),
            "summaryHighlySuspicious": needs(),
        },
    ),
    RuleId.REPEAT_MRI_TOO_SOON: RuleRendering(
        RepeatMriTooSoon,
        repeat_mri_too_soon,
        {
            "lead": needs("ordered", "scan_date", "days", "modality", "report_date", "finding"),
            "problem": needs("expected_from", "expected_to"),
            "deferLabel": needs("expected_from"),
            "deferDescription": needs("expected_from"),
        },
    ),
}
