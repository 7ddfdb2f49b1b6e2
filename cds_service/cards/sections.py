"""The parts every card shares around its rule's own text: the safety lines, the ACR ratings
table with the ordered study marked, where the patient stands in the pathway, the prior study
and the record's evidence."""

from __future__ import annotations

from collections.abc import Mapping

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
from cds_service.knowledge.loader import RatedProcedure, RatingKnowledge
from cds_service.knowledge.rules import RuleId
from cds_service.knowledge.safety_table import Cell, StudyKey


def safety_lines(c: CardContext, agent_labels: Mapping[str, str]) -> list[str]:
    """The safety lines of this card, as the safety table's cell lists them: a contrast
    reaction for each agent involved, the other contrast class when it is offered, one kidney
    line, the implant's line. The one function that words them (from safety-table.json)."""
    cell = c.cell
    if cell is None:
        return []
    k = c.situation.table.k
    contrast, implant = c.situation.contrast, c.situation.implant
    lines: list[str] = []
    for source in cell.lines:
        if source.startswith("allergy:"):
            agent: Agent = "gadolinium" if source == "allergy:gadolinium" else "iodinated"
            allergy = contrast.allergy(agent)
            assert allergy is not None
            line = k.allergy[allergy.severity].line or ""
            lines.append(
                line.format(
                    agent=agent_labels[agent],
                    evidence=escape(allergy.display),
                    different_agent=k.differentAgent[agent].text,
                )
            )
        elif source == "other-class":
            lines.append(k.otherClassLine.text)
        elif source == "kidney" and contrast.kidney is not None:
            line = k.kidney[contrast.kidney.category].line or ""
            lines.append(line.format(evidence=escape(contrast.kidney.display)))
        elif source == "implant" and implant is not None:
            entry = k.implant[implant.category]
            text = entry.cardiacLine if implant.cardiac and entry.cardiacLine else entry.line
            conditional_card = (
                c.advice is not None and c.advice.rule_id == RuleId.MRI_CONDITIONAL_IMPLANT
            )
            if text and not (conditional_card and text == entry.line and not implant.cochlear):
                lines.append(text.format(implant=escape(implant.display)))
    return lines


def safety_summary(c: CardContext) -> str | None:
    """The summary the safety table gives this card, when a safety fact decides its advice."""
    return None if c.cell is None else c.situation.table.summary_text(c.cell)


def ratings_table(
    words: Wording,
    ratings: RatingKnowledge,
    rater: PamaRater,
    rated: RatedProcedure | None,
    order: ImagingOrder | None,
    not_here: frozenset[str] = frozenset(),
) -> str:
    """The ACR table, the ordered study's row marked: as read from the order, or else as
    its procedure code is rated (CPT 70543 is the rated MRI's code, whatever the name); the
    rows of ``not_here`` (procedure ids the safety table does not offer) say so. Without an
    order (patient-view) no row is marked."""
    codes = cpt_codes(order.draft.codes) if order is not None else ()
    coded = rater.procedure(codes) if rated is None else None
    rows = [words.common("ratingsColumns"), "|---|---|---|"]
    for procedure in ratings.procedures:
        name = procedure.name
        if rated is not None and procedure.id == rated.id:
            name = "**" + words.common("orderedMark", name=name) + "**"
        elif coded is not None and procedure.id == coded.id:
            code = next(c for c in codes if c in procedure.cpt)
            name = "**" + words.common("orderedCodeMark", name=name, code=code) + "**"
        if procedure.id in not_here:
            name = words.common("notHereMark", name=name)
        rows.append(f"| {name} | {procedure.category} | {procedure.radiation} |")
    return f"**{words.common('ratingsHeading')}**\n\n" + "\n".join(rows)


def not_offered_here(cell: Cell | None, procedures: Mapping[StudyKey, str]) -> frozenset[str]:
    """The rated procedures the safety table keeps from this patient (to avoid, or to wait for
    the implant's labelling), so that the ACR table does not read as an invitation."""
    if cell is None:
        return frozenset()
    return frozenset(
        procedures[key] for key, tier in cell.tiers.items() if tier in ("avoid", "identify")
    )


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
        key = "restagingLineProven" if pathway.recurrence.proven else "restagingLine"
        return [c.words.common(key, recurrence=recurrence), *c.history.acc_chest()]
    report = pathway.last_report
    if report is not None and report.tissue_next:
        return [
            c.words.common(
                "positiveLine",
                report=c.history.report_phrase(report),
                judgement=c.history.judgement(report),
            )
        ]
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
        lines.append(words.common("accLine", nerves=history.acc_nerves()))
    heading = words.common("evidenceHeading")
    return f"**{heading}**\n\n" + "\n".join(f"- {line}" for line in lines)
