"""Cards about the study ordered against the recommended protocol: an MRI that misses regions
or contrast, a CT neck (without, or with unstated, contrast; or when MRI is preferred), and an
ultrasound (limited for the deep tissues)."""

from __future__ import annotations

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
    implant = situation.implant
    if situation.can_suggest("mri-protocol"):
        suggestions = [c.orders.replace(c.text(rule, "suggestionLabel"), "mri-protocol", True)]
        if (
            implant is not None
            and implant.cochlear
            and situation.can_suggest("ct-neck-with-contrast")
        ):  # the magnet's artefact: CT stays an option
            label = c.text(rule, "ctSuggestionLabel")
            suggestions.append(c.orders.replace(label, "ct-neck-with-contrast", False))
    elif situation.can_suggest("ct-neck-with-contrast"):  # gadolinium allergy
        label = c.text(rule, "ctSuggestionLabel")
        suggestions = [c.orders.replace(label, "ct-neck-with-contrast", True)]
    else:
        suggestions = []
    variants = (
        *(("regions",) if finding.missing_regions else ()),
        *((finding.contrast_problem,) if finding.contrast_problem else ()),
    )
    return Rendered(summary, lead, paragraphs, suggestions, variants)


def ct_neck(c: CardContext, finding: CtNeck) -> Rendered:
    rule = finding.rule_id
    lead = c.text(rule, "lead", ordered=c.ordered)
    paragraphs = [c.text(rule, "problem")]
    summary = c.summary(rule)
    situation = c.situation
    if rule != RuleId.CT_NECK_MRI_PREFERRED and not situation.can_suggest("ct-neck-with-contrast"):
        summary = c.text(rule, "summaryNoCt")  # never advise the unsafe contrast
    if rule == RuleId.CT_NECK_MRI_PREFERRED:
        # The ordered CT's own contrast is unsafe here: the MRI is then the recommendation.
        at_risk = not situation.can_suggest("ct-neck-with-contrast")
        label = c.text(rule, "suggestionLabel")
        suggestion = c.orders.replace(label, "mri-protocol", at_risk)
        return Rendered(summary, lead, paragraphs, [suggestion])
    preferred = situation.preferred()
    if rule == RuleId.CT_NECK_CONTRAST_UNSPECIFIED and situation.can_suggest(
        "ct-neck-with-contrast"
    ):  # its summary asks to say "with IV contrast": that is the recommended button
        preferred = "ct-neck-with-contrast"
    suggestions = []
    if situation.can_suggest("ct-neck-with-contrast"):
        label = c.text(rule, "ctSuggestionLabel")
        recommended = preferred == "ct-neck-with-contrast"
        suggestions.append(c.orders.replace(label, "ct-neck-with-contrast", recommended))
    if situation.can_suggest("mri-protocol"):
        label = c.text(rule, "mriSuggestionLabel")
        suggestions.append(c.orders.replace(label, "mri-protocol", preferred == "mri-protocol"))
    return Rendered(summary, lead, paragraphs, suggestions)


def us_limited(c: CardContext, finding: UsLimited) -> Rendered:
    rule = finding.rule_id
    key = c.situation.alternative()
    suggestions = []
    if key is not None:
        label = c.text(rule, "suggestionLabel", alternative=c.k.orders[key].text)
        suggestions.append(c.orders.add(label, key))
    summary = c.summary(rule) if suggestions else c.text(rule, "summaryNoStudy")
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
                "summaryNoCt": needs(),
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
        },
    ),
}
