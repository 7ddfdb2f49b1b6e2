"""Cards about an implant and the MRI ordered: MR Conditional (MRI kept, with conditions), MR
Unsafe (CT instead), and an implant together with a contrast risk (discuss with radiology)."""

from __future__ import annotations

from cds_service.cards.context import CardContext
from cds_service.cards.model import Rendered
from cds_service.cards.rules.registry import RuleRendering
from cds_service.cards.wording import escape, join_labels, needs
from cds_service.clinical.guidance import (
    DiscussWithRadiology,
    MriConditionalImplant,
    MriContraindicated,
)
from cds_service.knowledge.rules import RuleId


def mri_conditional_implant(c: CardContext, finding: MriConditionalImplant) -> Rendered:
    rule = finding.rule_id
    labels = {"ct-neck-with-contrast": c.text(rule, "ctSuggestionLabel")}
    suggestions = c.orders.offered(c.cell, labels)
    implant = escape(finding.implant.display)
    return Rendered(
        c.summary(rule),
        c.text(rule, "lead", ordered=c.ordered, implant=implant),
        [c.text(rule, "problem")],
        suggestions,
    )


def discuss_with_radiology(c: CardContext, finding: DiscussWithRadiology) -> Rendered:
    """No study is suggested and no action offered: the study is radiology's to decide."""
    rule = finding.rule_id
    return Rendered(
        c.summary(rule),
        c.text(
            rule,
            "lead",
            ordered=c.ordered,
            implant=escape(finding.implant.display),
            risks=escape(join_labels(finding.risks)),
        ),
        [c.text(rule, "problem")],
        [],
    )


def mri_contraindicated(c: CardContext, finding: MriContraindicated) -> Rendered:
    rule = finding.rule_id
    return Rendered(
        c.summary(rule),
        c.text(rule, "lead", implant=escape(finding.implant.display)),
        [c.text(rule, "problem")],
        c.orders.offered(c.cell, {"ct-neck-with-contrast": c.text(rule, "suggestionLabel")}),
    )


RENDERINGS: dict[RuleId, RuleRendering] = {
    RuleId.MRI_CONTRAINDICATED: RuleRendering(
        MriContraindicated,
        mri_contraindicated,
        {"lead": needs("implant"), "problem": needs(), "suggestionLabel": needs()},
    ),
    RuleId.MRI_CONDITIONAL_IMPLANT: RuleRendering(
        MriConditionalImplant,
        mri_conditional_implant,
        {
            "lead": needs("ordered", "implant"),
            "problem": needs(),
            "ctSuggestionLabel": needs(),
        },
    ),
    RuleId.DISCUSS_WITH_RADIOLOGY: RuleRendering(
        DiscussWithRadiology,
        discuss_with_radiology,
        {"lead": needs("ordered", "implant", "risks"), "problem": needs()},
    ),
}
