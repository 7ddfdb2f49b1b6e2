"""The small types the card stage passes around: how a client applies suggestions, who orders
for whom, what one rule's rendering returns, and the card it becomes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple

from cds_service.contract.wire import Card, Suggestion
from cds_service.knowledge.rules import RuleId

UuidFactory = Callable[[], str]

INDICATOR_RANK = {"info": 0, "warning": 1, "critical": 2}

ReplacementStyle = Literal["update", "delete-create"]


class RenderedCard(NamedTuple):
    """A card with the rule that decided it and the draft order it is about."""

    rule: RuleId
    card: Card
    order: str
    #: What each of the card's suggestions does ("replace:mri-protocol", "history"...), in order.
    suggestion_kinds: tuple[str, ...] = ()
    #: The kind of the rule's card a mode may be set for apart from the rule (RULE_VARIANTS).
    variant: str | None = None


@dataclass(frozen=True)
class SuggestionStyle:
    """How the client applies suggestions. ``update``: a replacement changes the selected draft
    in place (same id; the CDS Hooks sandbox's PAMA screen applies only updates);
    ``delete-create``: it removes the draft and creates the new order. ``pama``: every update of
    a CPT-coded order carries its PAMA rating as updated (the sandbox reads it from each one)."""

    replacement: ReplacementStyle = "update"
    pama: bool = False
    #: This service shows the standalone history card (order-sign: once per ordering session).
    history_card: bool = False
    #: ``per-card``: at-most-one or any, as the suggestions allow; ``any``: a client that knows
    #: no other value gets only suggestions that can all be taken together.
    selection: Literal["per-card", "any"] = "per-card"


@dataclass(frozen=True)
class OrderingContext:
    """Who orders for whom: used to build suggested orders when the draft does not say."""

    patient_id: str
    user_id: str
    encounter_id: str | None


@dataclass(frozen=True)
class Rendered:
    """What a rule's rendering says; the renderer adds the shared parts around it."""

    summary: str
    #: One sentence: why this card, for this order (the detail opens with it).
    lead: str
    #: The explanation. Not on the card (it is the same for every patient: the rule's guidance
    #: page tells it); kept for the rule's tests and as what the lead is short for.
    paragraphs: list[str]
    suggestions: list[Suggestion]
    #: Which of the rule's override-reason lists fit this card (the problems it names).
    reason_variants: tuple[str, ...] = ("default",)


#: A client that applies updates, without PAMA ratings, with no standalone history card.
DEFAULT_STYLE = SuggestionStyle()
