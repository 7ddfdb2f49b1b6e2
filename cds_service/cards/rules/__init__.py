"""Each rule's rendering, next to the texts (and their placeholders) it fills: one module per
rule family. ``RULES`` gathers them; start-up checks cards.json against it."""

from __future__ import annotations

from cds_service.cards.rules import contrast, due_imaging, history, implants, pathway, protocol
from cds_service.cards.rules.registry import RuleRendering
from cds_service.knowledge.rules import RuleId

RULES: dict[RuleId, RuleRendering] = {
    **implants.RENDERINGS,
    **contrast.RENDERINGS,
    **protocol.RENDERINGS,
    **pathway.RENDERINGS,
    **history.RENDERINGS,
    **due_imaging.RENDERINGS,
}
