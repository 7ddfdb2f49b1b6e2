"""The card for orders that give no reason: the history as one-click reasons for the exam, one
card for every such order of the call (shown on its own at order-sign; on other cards it is
folded into their suggestions)."""

from __future__ import annotations

from cds_service.cards.context import CardContext
from cds_service.cards.model import Rendered
from cds_service.cards.rules.registry import RuleRendering
from cds_service.cards.wording import join_labels, needs
from cds_service.knowledge.rules import RuleId


def history_only(c: CardContext, _finding: None) -> Rendered:
    rule = RuleId.MISSING_CLINICAL_HISTORY
    ordered = join_labels(tuple(f"**{o.ordered}**" for o in (c, *c.together)))
    return Rendered(
        c.summary(rule),
        f"{c.text(rule, 'lead', ordered=ordered)} {c.text(rule, 'problem')}",
        [],
        c.orders.history_choices(also=[o.orders for o in c.together]),
    )


RENDERINGS: dict[RuleId, RuleRendering] = {
    RuleId.MISSING_CLINICAL_HISTORY: RuleRendering(
        None,
        history_only,
        {
            "lead": needs("ordered"),
            "problem": needs(),
            "suggestionLabel": needs(),
            "updateDescription": needs(),
            "choiceLabel": needs("concern"),
            "choiceDescription": needs("concern"),
        },
    ),
}
