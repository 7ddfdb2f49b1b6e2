"""The card about the rated study ordered when a contrast allergy or kidney function on record
qualifies its contrast: the safety table's cell gives the summary, the lines and the studies
offered instead (if any); this module only words the lead and the explanation."""

from __future__ import annotations

from cds_service.cards.context import CardContext
from cds_service.cards.model import Rendered
from cds_service.cards.rules.registry import RuleRendering
from cds_service.cards.wording import needs
from cds_service.clinical.guidance import ContrastConcern
from cds_service.knowledge.rules import RuleId


def contrast_on_record(c: CardContext, finding: ContrastConcern) -> Rendered:
    rule = finding.rule_id
    labels = {
        key: c.text(rule, "suggestionLabel", alternative=t.text) for key, t in c.k.orders.items()
    }
    return Rendered(
        c.summary(rule),
        c.text(rule, "lead", ordered=c.ordered),
        [c.text(rule, "problem")],
        c.orders.offered(c.cell, labels),
    )


RENDERINGS: dict[RuleId, RuleRendering] = {
    RuleId.CONTRAST_ON_RECORD: RuleRendering(
        ContrastConcern,
        contrast_on_record,
        {"lead": needs("ordered"), "problem": needs(), "suggestionLabel": needs("alternative")},
    ),
}
