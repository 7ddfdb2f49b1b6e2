"""What one rule's rendering works with: the wording, the order as placed, the patient's
situation, the record in words and the suggestion builder."""

from __future__ import annotations

from dataclasses import dataclass

from cds_service.cards.history import History
from cds_service.cards.suggestions import SuggestionBuilder
from cds_service.cards.wording import Wording, escape
from cds_service.clinical.guidance import OrderAdvice, PatientSituation
from cds_service.knowledge.loader import CardKnowledge
from cds_service.knowledge.rules import RuleId
from cds_service.knowledge.safety_table import Cell


@dataclass(frozen=True)
class CardContext:
    """One card's inputs, built once per card by the renderer."""

    k: CardKnowledge
    words: Wording
    #: The order the card is about; None for a patient-view card (nothing is being ordered).
    advice: OrderAdvice | None
    situation: PatientSituation
    history: History
    orders: SuggestionBuilder
    #: The safety table's cell for this order (None: a study the table does not cover).
    cell: Cell | None = None
    #: The other orders one card speaks for (the history card: every order being signed
    #: without a reason, in one card).
    together: tuple[CardContext, ...] = ()

    @property
    def ordered(self) -> str:
        """The order as placed, as card markdown (order hooks only)."""
        if self.advice is None:
            raise TypeError("a patient-view card is about no order")
        return escape(self.advice.order.draft.display)

    def text(self, rule: RuleId, name: str, /, **values: object) -> str:
        return self.words.rule(rule, name, **values)

    def summary(self, rule: RuleId) -> str:
        return self.k.rules[rule].summary
