"""Cards about the study ordered against the recommended protocol: an MRI that misses regions
or contrast, a CT neck (without, or with unstated, contrast; or when MRI is preferred), and an
ultrasound (limited for the deep tissues)."""

from __future__ import annotations

from dataclasses import replace

from cds_service.cards.context import CardContext
from cds_service.cards.model import Rendered
from cds_service.cards.rules.registry import RuleRendering
from cds_service.cards.wording import join_labels, needs
from cds_service.clinical.guidance import CtNeck, IncompleteMri, UsLimited
from cds_service.knowledge.rules import RuleId


def incomplete_mri(c: CardContext, finding: IncompleteMri) -> Rendered:
    rule = finding.rule_id
    situation = c.situation
    problems: list[tuple[str, str]] = []  # (lead, explanation) per problem the order has
    if finding.missing_regions:
        missing = join_labels(finding.missing_regions)
        problems.append(
            (
                c.text(rule, "regionsLead", ordered=c.ordered, missing=missing),
                c.text(rule, "regionsProblem"),
            )
        )
    if finding.contrast_problem:
        problem = c.k.contrastProblems[finding.contrast_problem]
        problems.append(
            (
                c.text(rule, "contrastLead", ordered=c.ordered, contrast_problem=problem),
                c.text(rule, "contrastProblem"),
            )
        )
    paragraphs = [why for _, why in problems]
    lead = problems[0][0]
    if finding.missing_regions and finding.contrast_problem:  # both problems, in one sentence
        lead = c.text(
            rule,
            "bothLead",
            ordered=c.ordered,
            missing=join_labels(finding.missing_regions),
            contrast_problem=c.k.contrastProblems[finding.contrast_problem],
        )
    restaging = situation.pathway.recurrence is not None
    paragraphs.append(c.text(rule, "whyRestaging" if restaging else "why"))
    summary = c.summary(rule) if finding.missing_regions else c.text(rule, "summaryContrast")
    labels = {
        "mri-protocol": c.text(rule, "suggestionLabel"),
        "ct-neck-with-contrast": c.text(rule, "ctSuggestionLabel"),
    }
    suggestions = c.orders.offered(c.cell, labels)
    variants = (
        *(("regions",) if finding.missing_regions else ()),
        *((finding.contrast_problem,) if finding.contrast_problem else ()),
    )
    return Rendered(summary, lead, paragraphs, suggestions, variants)


def ct_neck(c: CardContext, finding: CtNeck) -> Rendered:
    rule = finding.rule_id
    lead = c.text(rule, "lead", ordered=c.ordered)
    paragraphs = [c.text(rule, "problem")]
    if rule == RuleId.CT_NECK_MRI_PREFERRED:
        labels = {"mri-protocol": c.text(rule, "suggestionLabel")}
    else:
        labels = {
            "mri-protocol": c.text(rule, "mriSuggestionLabel"),
            "ct-neck-with-contrast": c.text(rule, "ctSuggestionLabel"),
        }
    summary = c.summary(rule)
    cell = c.cell
    ct_only = cell is not None and "mri-protocol" not in cell.offered
    if rule != RuleId.CT_NECK_MRI_PREFERRED and ct_only:
        summary = c.text(rule, "summaryCtOnly")  # e.g. an implant: the MRI is not offered
    ct = "ct-neck-with-contrast"
    if (
        rule == RuleId.CT_NECK_CONTRAST_UNSPECIFIED
        and cell is not None
        and ct in cell.offered
        and cell.tiers[ct] == "clear"
    ):  # its summary asks to say "with IV contrast": that is the recommended button
        others = tuple(k for k in cell.offered if k != ct)
        cell = replace(cell, recommended=ct, options=others)
    return Rendered(summary, lead, paragraphs, c.orders.offered(cell, labels))


def us_limited(c: CardContext, finding: UsLimited) -> Rendered:
    rule = finding.rule_id
    labels = {
        key: c.text(rule, "suggestionLabel", alternative=c.k.orders[key].text) for key in c.k.orders
    }
    suggestions = c.orders.offered(c.cell, labels)
    summary = c.summary(rule) if suggestions else c.text(rule, "summaryNoStudy")
    if c.cell is not None and c.cell.offered[:1] == ("ct-neck-with-contrast",):
        summary = c.text(rule, "summaryCt")
    return Rendered(
        summary,
        c.text(rule, "lead", ordered=c.ordered),
        [c.text(rule, "problem")],
        suggestions,
    )


RENDERINGS: dict[RuleId, RuleRendering] = {
    RuleId.INCOMPLETE_MRI_PROTOCOL: RuleRendering(
        IncompleteMri,
        incomplete_mri,
        {
            "summaryContrast": needs(),
            "regionsLead": needs("ordered", "missing"),
            "regionsProblem": needs(),
            "contrastLead": needs("ordered", "contrast_problem"),
            "contrastProblem": needs(),
            "bothLead": needs("ordered", "missing", "contrast_problem"),
            "why": needs(),
            "whyRestaging": needs(),
            "suggestionLabel": needs(),
            "ctSuggestionLabel": needs(),
        },
        reason_variants=frozenset({"regions", "without", "with", "unspecified"}),
    ),
    **{
        rule: RuleRendering(
            CtNeck,
            ct_neck,
            {
                "lead": needs("ordered"),
                "problem": needs(),
                "ctSuggestionLabel": needs(),
                "mriSuggestionLabel": needs(),
                "summaryCtOnly": needs(),
            },
        )
        for rule in (RuleId.CT_NECK_WITHOUT_CONTRAST, RuleId.CT_NECK_CONTRAST_UNSPECIFIED)
    },
    RuleId.CT_NECK_MRI_PREFERRED: RuleRendering(
        CtNeck,
        ct_neck,
        {"lead": needs("ordered"), "problem": needs(), "suggestionLabel": needs()},
    ),
    RuleId.US_LIMITED: RuleRendering(
        UsLimited,
        us_limited,
        {
            "lead": needs("ordered"),
            "problem": needs(),
            "suggestionLabel": needs("alternative"),
            "summaryNoStudy": needs(),
            "summaryCt": needs(),
        },
    ),
}
