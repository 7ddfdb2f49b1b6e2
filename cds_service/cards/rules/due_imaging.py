"""Cards about imaging that is due and that nobody has ordered (patient-view): the baseline
study after treatment, and the follow-up after an indeterminate report. Each offers one
suggestion, a new draft order for the study the order cards would recommend (the MRI protocol,
else CT neck with IV contrast where MRI is ruled out, else none: discuss with radiology), with
the clinical-history note for the radiologist."""

from __future__ import annotations

from cds_service.cards.context import CardContext
from cds_service.cards.model import Rendered
from cds_service.cards.rules.registry import RuleRendering
from cds_service.cards.wording import escape, needs
from cds_service.clinical.due_imaging import BaselineDue, FollowUpOverdue
from cds_service.contract.wire import Suggestion
from cds_service.knowledge.rules import RuleId

#: The rules of the patient-view service: info cards only (start-up checks cards.json).
PATIENT_VIEW_RULES = frozenset({RuleId.BASELINE_IMAGING_DUE, RuleId.FOLLOW_UP_IMAGING_OVERDUE})

#: The texts both rules need to name the study and offer it.
_STUDY_TEXTS = {
    "studyMri": needs(),
    "studyCt": needs(),
    "studyNone": needs(),
    "createLabel": needs("alternative"),
    "mriRuledOutAllergy": needs("evidence"),
}


def _offer(c: CardContext, rule: RuleId) -> tuple[str, list[Suggestion], list[str]]:
    """The study to name, the one suggestion that orders it (none when nothing is safe to
    suggest with one click: the safety lines then say to discuss it with radiology), and why
    MRI is not the one offered, when it is not."""
    situation = c.situation
    why_not_mri = []
    key = situation.alternative()  # the safety table's first study offered (MRI, else CT)
    if key != "mri-protocol":
        implant, allergy = situation.implant, situation.contrast.allergy("gadolinium")
        # An implant: its own safety line says why, and what to do first.
        if implant is None and allergy is not None:
            why_not_mri.append(c.text(rule, "mriRuledOutAllergy", evidence=escape(allergy.display)))
    if key is None:
        return c.text(rule, "studyNone"), [], why_not_mri
    study = c.text(rule, "studyMri" if key == "mri-protocol" else "studyCt")
    label = c.text(rule, "createLabel", alternative=c.k.orders[key].text)
    return study, [c.orders.add(label, key)], why_not_mri


def baseline_due(c: CardContext, finding: BaselineDue) -> Rendered:
    rule = finding.rule_id
    study, suggestions, why_not_mri = _offer(c, rule)
    ended = finding.last.ended.text
    due_from = finding.due_from.isoformat()
    return Rendered(
        c.text(rule, "summary", study=study, ended=ended),
        c.text(
            rule,
            "lead",
            treatment=escape(c.history.plain(finding.last.treatment.display)),
            ended=ended,
        ),
        [
            c.text(rule, "problem", weeks=finding.from_weeks, due_from=due_from),
            *why_not_mri,
        ],
        suggestions,
    )


def follow_up_overdue(c: CardContext, finding: FollowUpOverdue) -> Rendered:
    rule = finding.rule_id
    study, suggestions, why_not_mri = _offer(c, rule)
    parts = c.history.report_parts(finding.report)
    return Rendered(
        c.text(rule, "summary", study=study, modality=parts["modality"], report_date=parts["date"]),
        c.text(
            rule,
            "lead",
            modality=parts["modality"],
            report_date=parts["date"],
            finding=parts["finding"],
            weeks=finding.weeks,
        ),
        [
            c.text(
                rule,
                "problem",
                expected_from=finding.expected_from.isoformat(),
                expected_to=finding.expected_to.isoformat(),
            ),
            *why_not_mri,
        ],
        suggestions,
    )


RENDERINGS: dict[RuleId, RuleRendering] = {
    RuleId.BASELINE_IMAGING_DUE: RuleRendering(
        BaselineDue,
        baseline_due,
        {
            "summary": needs("study", "ended"),
            "lead": needs("treatment", "ended"),
            "problem": needs("weeks", "due_from"),
            **_STUDY_TEXTS,
        },
    ),
    RuleId.FOLLOW_UP_IMAGING_OVERDUE: RuleRendering(
        FollowUpOverdue,
        follow_up_overdue,
        {
            "summary": needs("study", "modality", "report_date"),
            "lead": needs("modality", "report_date", "finding", "weeks"),
            "problem": needs("expected_from", "expected_to"),
            **_STUDY_TEXTS,
        },
    ),
}
