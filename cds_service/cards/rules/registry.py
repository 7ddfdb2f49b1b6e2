"""One entry per rule: the finding it renders, its rendering, and the texts it needs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cds_service.cards.context import CardContext
from cds_service.cards.model import Rendered


@dataclass(frozen=True)
class RuleRendering:
    """Everything about one rule's card in one place: the finding it renders (None for the
    history card, which stands for a missing reason rather than a finding), the rendering, and
    the texts it needs from cards.json with the placeholders the rendering fills in each."""

    finding: type[Any] | None
    build: Callable[[CardContext, Any], Rendered]
    texts: Mapping[str, frozenset[str]]
    #: The override-reason lists cards.json must give this rule (one per problem variant).
    reason_variants: frozenset[str] = frozenset({"default"})
