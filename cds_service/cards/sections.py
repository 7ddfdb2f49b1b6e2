"""The parts every card shares around its rule's own text: the safety lines, the ACR ratings
table with the ordered study marked, where the patient stands in the pathway, the prior study
and the record's evidence."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cds_service.cards.context import CardContext
from cds_service.cards.history import cancer_date_phrase, treatment_date_phrase
from cds_service.cards.wording import Wording, escape
from cds_service.clinical.contrast import Agent
from cds_service.clinical.guidance import (
    OrderAdvice,
    PatientSituation,
    RecurrenceRestaging,
    TissueConfirmationNext,
)
from cds_service.clinical.orders import ImagingOrder
from cds_service.clinical.pama import PamaRater, cpt_codes
from cds_service.contract.wire import Suggestion
from cds_service.knowledge.loader import OrderKey, RatedProcedure, RatingKnowledge
from cds_service.knowledge.rules import RuleId


def safety_lines(
    c: CardContext, agent_labels: Mapping[str, str], suggestions: Sequence[Suggestion]
) -> list[str]:
    """One line for each safety fact that bears on the studies this card is about (the
    ordered one and the suggested ones): a recorded contrast allergy, kidney function, an
    MR Conditional or cochlear implant; and, when nothing is safe to suggest, that."""
    words, advice, situation = c.words, c.advice, c.situation
    if advice.rule_id == RuleId.DISCUSS_WITH_RADIOLOGY:
        return []  # its own text names the implant and the contrast risks
    ordered = advice.order.modality
    involved = set(c.orders.suggested)
    if ordered in ("MR", "MRA", "PET-MR"):
        involved.add("mri-protocol")
    if ordered == "CT":
        involved.add("ct-neck-with-contrast")
    contrast = situation.contrast
    lines = []
    studies: tuple[tuple[OrderKey, Agent], ...] = (
        ("mri-protocol", "gadolinium"),
        ("ct-neck-with-contrast", "iodinated"),
    )
    for key, agent in studies:
        allergy = contrast.allergy(agent)
        if key in involved and allergy is not None:
            label = agent_labels[agent]
            lines.append(words.common("allergyLine", agent=label, evidence=escape(allergy.display)))
    kidney = contrast.kidney
    if kidney is not None and "ct-neck-with-contrast" in involved:
        lines.append(words.common("kidneyCtLine", evidence=escape(kidney.display)))
    if kidney is not None and "mri-protocol" in involved:
        lines.append(words.common("kidneyMriLine", evidence=escape(kidney.display)))
    implant = situation.implant
    if implant is not None and "mri-protocol" in involved:
        name = escape(implant.display)
        if implant.mr_status == "conditional" and advice.rule_id != RuleId.MRI_CONDITIONAL_IMPLANT:
            lines.append(words.common("conditionalLine", implant=name))
        if implant.cochlear and ordered in ("MR", "MRA", "PET-MR"):
            lines.append(words.common("cochlearLine", implant=name))
    quiet = advice.rule_id == RuleId.MRI_CONDITIONAL_IMPLANT
    if not suggestions and not quiet and (contrast.allergies or kidney is not None):
        lines.append(words.common("noStudyLine"))
    return lines


def ratings_table(
    words: Wording,
    ratings: RatingKnowledge,
    rater: PamaRater,
    rated: RatedProcedure | None,
    order: ImagingOrder,
) -> str:
    """The ACR table, the ordered study's row marked: as read from the order, or else as
    its procedure code is rated (CPT 70543 is the rated MRI's code, whatever the name)."""
    codes = cpt_codes(order.draft.codes)
    coded = rater.procedure(codes) if rated is None else None
    rows = [words.common("ratingsColumns"), "|---|---|---|"]
    for procedure in ratings.procedures:
        name = procedure.name
        if rated is not None and procedure.id == rated.id:
            name = "**" + words.common("orderedMark", name=name) + "**"
        elif coded is not None and procedure.id == coded.id:
            code = next(c for c in codes if c in procedure.cpt)
            name = "**" + words.common("orderedCodeMark", name=name, code=code) + "**"
        rows.append(f"| {name} | {procedure.category} | {procedure.radiation} |")
    return f"**{words.common('ratingsHeading')}**\n\n" + "\n".join(rows)


def pathway_lines(c: CardContext, advice: OrderAdvice) -> list[str]:
    """Where the patient stands after the last report, in a card about something else:
    a recurrence means restaging; a positive report, tissue confirmation next."""
    if advice.primary is None or isinstance(
        advice.primary, RecurrenceRestaging | TissueConfirmationNext
    ):
        return []
    pathway = c.situation.pathway
    if pathway.recurrence is not None:
        recurrence = c.history.recurrence_phrase(pathway.recurrence)
        return [c.words.common("restagingLine", recurrence=recurrence)]
    report = pathway.last_report
    if report is not None and report.reading.branch == "positive":
        return [c.words.common("positiveLine", report=c.history.report_phrase(report))]
    return []


def prior_markdown(words: Wording, situation: PatientSituation) -> str:
    assert situation.latest_prior is not None
    fact = situation.latest_prior.fact
    return words.common(
        "priorComparison",
        prior=escape(fact.display),
        date=fact.date.text if fact.date else "date unknown",
    )


def evidence_markdown(c: CardContext) -> str:
    """Why the patient is in scope: the cancer, its histology, the treatments, the last report,
    a recurrence and the adenoid cystic hallmark, one line each."""
    words, history = c.words, c.history
    context, pathway = c.situation.context, c.situation.pathway
    cancer = context.cancer
    lines = [
        words.common(
            "evidenceCondition",
            display=history.shown(cancer.display),
            code_label=cancer.code.label,
            date_phrase=cancer_date_phrase(words, cancer),
        )
    ]
    if pathway.histology and pathway.histology.lower() not in context.cancer.display.lower():
        lines.append(words.common("evidenceHistology", histology=escape(pathway.histology)))
    lines += [
        words.common(
            "evidenceTreatment",
            display=history.shown(t.display),
            code_label=t.code.label,
            date_phrase=treatment_date_phrase(words, t),
        )
        for t in context.treatments
    ]
    if pathway.last_report is not None:
        lines.append(
            words.common("evidenceLastReport", **history.report_parts(pathway.last_report))
        )
    if pathway.recurrence is not None and pathway.recurrence.report is None:
        # (a report's recurrence is already on the line of the last report)
        recurrence = history.recurrence_phrase(pathway.recurrence)
        lines.append(words.common("evidenceRecurrence", recurrence=recurrence))
    if pathway.adenoid_cystic:
        lines.append(words.common("accLine"))
    heading = words.common("evidenceHeading")
    return f"**{heading}**\n\n" + "\n".join(f"- {line}" for line in lines)
