"""The parts every card shares around its rule's own text: the safety lines, the ACR ratings
table with the ordered study marked, where the patient stands in the pathway, the prior study
and the record's evidence."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cds_service.cards.context import CardContext
from cds_service.cards.history import cancer_date_phrase, treatment_date_phrase
from cds_service.cards.wording import Wording, escape
from cds_service.clinical.contrast import Agent
from cds_service.clinical.pama import PamaRater, cpt_codes
from cds_service.contract.wire import Suggestion
from cds_service.knowledge.loader import OrderKey, RatedProcedure, RatingKnowledge
from cds_service.knowledge.rules import RuleId


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


def _row(words: Wording, which: str, study: str, category: str, radiation: str) -> str:
    return f"| {words.common(which)} {study} | {category} | {radiation} |"


def _ordered_cells(
    c: CardContext, ratings: RatingKnowledge, rater: PamaRater
) -> tuple[str, str, RatedProcedure | None]:
    """The ACR rating and radiation of the order as placed, as its PAMA rating has it: by what
    was read from the order, else by its procedure code; "not appropriate now" while this card
    warns against it (ratings.json ``notAppropriateWhen``); "not rated" for any other order."""
    advice, words = c.advice, c.words
    assert advice is not None  # an order card (patient-view cards have no comparison)
    order = advice.order
    codes = cpt_codes(order.draft.codes)
    rated = advice.rated
    coded = rater.procedure(codes) if rated is None else None
    procedure = rated or coded
    rule = advice.rule_id
    warning = ratings.notAppropriateWhen
    if rule in warning.rules and (rule not in warning.codes or rater.warns_against(codes, rule)):
        category = warning.shownAs[rule]
    elif rated is not None:
        category = rated.category
    elif coded is not None:
        code = next(code for code in codes if code in coded.cpt)
        category = words.common("ratedAsCode", category=coded.category, code=code)
    else:
        category = ratings.unrated.category
    unrated = ratings.unrated
    radiation = (
        procedure.radiation
        if procedure is not None
        else unrated.radiation.get(order.modality or "", unrated.otherRadiation)
    )
    return category, radiation, procedure


def comparison(
    c: CardContext, ratings: RatingKnowledge, rater: PamaRater, suggestions: Sequence[Suggestion]
) -> str:
    """Two rows: the order as placed and the study the card recommends (or, with no
    recommendation, the one it offers), each with its ACR rating and radiation. A card that
    offers no study (recurrence, discuss with radiology) shows the ordered row alone."""
    words = c.words
    category, radiation, procedure = _ordered_cells(c, ratings, rater)
    rows = [
        words.common("comparisonColumns"),
        "|---|---|---|",
        _row(words, "comparisonOrdered", f"**{c.ordered}**", category, radiation),
    ]
    studies = [s for s in suggestions if c.orders.kinds.get(s.uuid, "history") != "history"]
    pick = next((s for s in studies if s.isRecommended), None)
    which = "comparisonRecommended"
    if pick is None and studies:
        pick, which = studies[0], "comparisonAlternative"
    if pick is not None:
        kind = c.orders.kinds[pick.uuid]
        if kind == "defer":
            when = next(
                str(a.resource.get("occurrenceDateTime"))
                for a in pick.actions
                if a.resource is not None
            )
            name = procedure.name if procedure is not None else c.ordered
            rated = procedure.category if procedure is not None else ratings.unrated.category
            rows.append(
                _row(
                    words,
                    which,
                    words.common("deferredStudy", study=name, date=when),
                    rated,
                    procedure.radiation if procedure is not None else radiation,
                )
            )
        else:
            key: OrderKey = kind.split(":", 1)[1]  # type: ignore[assignment]  # replace:/add:<key>
            template = c.k.orders[key]
            suggested = rater.procedure(cpt_codes(x.model_dump() for x in template.coding))
            rows.append(
                _row(
                    words,
                    which,
                    template.text,
                    suggested.category if suggested else ratings.unrated.category,
                    suggested.radiation if suggested else ratings.unrated.otherRadiation,
                )
            )
    return "\n".join(rows)


def why_patient(c: CardContext) -> str:
    """One line: the cancer as recorded (code, date, histology where coded apart), each
    completed treatment with its code and dates, and what changes what imaging is for. The full
    history (last report, prior imaging) goes with the suggested orders, for the radiologist."""
    words, history = c.words, c.history
    context, pathway = c.situation.context, c.situation.pathway
    cancer = context.cancer
    histology = ""
    if pathway.histology and pathway.histology.lower() not in cancer.display.lower():
        histology = words.common("whyHistology", histology=escape(pathway.histology))
    return words.common(
        "whyPatient",
        cancer=words.common(
            "evidenceCondition",
            display=history.shown(cancer.display),
            code_label=cancer.code.label,
            date_phrase=cancer_date_phrase(words, cancer),
        ),
        histology=histology,
        treatments="; ".join(
            words.common(
                "whyTreatment",
                display=history.shown(t.display),
                code_label=t.code.label,
                date_phrase=treatment_date_phrase(words, t),
            )
            for t in context.treatments
        ),
        pathway="".join(_pathway_phrases(c)),
    )


def _pathway_phrases(c: CardContext) -> list[str]:
    """What the record says that changes what imaging is for: a recurrence (restaging), a last
    report positive for recurrence (tissue confirmation next), adenoid cystic histology
    (perineural spread)."""
    words, history, pathway = c.words, c.history, c.situation.pathway
    phrases = []
    if pathway.recurrence is not None:
        recurrence = history.recurrence_phrase(pathway.recurrence)
        phrases.append(words.common("whyRecurrence", recurrence=recurrence))
    elif pathway.last_report is not None and pathway.last_report.tissue_next:
        report = history.report_phrase(pathway.last_report)
        judgement = history.judgement(pathway.last_report)
        phrases.append(words.common("whyPositive", report=report, judgement=judgement))
    if pathway.adenoid_cystic:
        phrases.append(words.common("whyAcc", nerves=history.acc_nerves()))
        if pathway.recurrence is not None:  # restaging an adenoid cystic carcinoma
            phrases.append(words.common("whyAccChest"))
    return phrases
