"""Advice -> CDS Hooks cards, suggestions and system actions.

Wording comes from hooks/knowledge/cards.json; this package only assembles it. Each rule's
rendering lives in its family's module under ``cards.rules`` with the texts it fills; the parts
every card shares (safety lines, the comparison with the recommended study, why this patient)
are in ``sections``, suggested orders in ``suggestions``, the record in words in ``history``.
What a card leaves out to stay short is on its rule's guidance page (``guidance_page``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from cds_service.cards import sections
from cds_service.cards.context import CardContext
from cds_service.cards.guidance_page import DEFAULT_VARIANT, guidance_path
from cds_service.cards.history import History
from cds_service.cards.model import (
    DEFAULT_STYLE,
    INDICATOR_RANK,
    OrderingContext,
    RenderedCard,
    SuggestionStyle,
    UuidFactory,
)
from cds_service.cards.rules import RULES
from cds_service.cards.rules.due_imaging import PATIENT_VIEW_RULES
from cds_service.cards.suggestions import SuggestionBuilder, selection_behavior, touches
from cds_service.cards.wording import Wording, check_wording
from cds_service.clinical.due_imaging import DueImaging
from cds_service.clinical.guidance import OrderAdvice, PatientSituation
from cds_service.clinical.orders import ImagingOrder
from cds_service.clinical.pama import PamaRater, cpt_codes, with_rating
from cds_service.contract.wire import Action, Card, Coding, Link, Source
from cds_service.knowledge.loader import CardKnowledge, KnowledgeError, RatingKnowledge
from cds_service.knowledge.rules import RuleId
from cds_service.knowledge.safety_table import Cell


class CardRenderer:
    """Built once per process; each render gets the request's uuid factory."""

    def __init__(
        self,
        knowledge: CardKnowledge,
        ratings: RatingKnowledge,
        agent_labels: Mapping[str, str],
    ) -> None:
        check_wording(knowledge, RULES)
        for rule in PATIENT_VIEW_RULES:  # a chart opened is no moment for a warning
            if knowledge.rules[rule].indicator != "info":
                raise KnowledgeError(f"cards.json: {rule} is a patient-view card: info only")
        self._k = knowledge
        self._words = Wording(knowledge, {rule: entry.texts for rule, entry in RULES.items()})
        self._agent_labels = dict(agent_labels)
        self._ratings = ratings
        self._source = Source(
            label=knowledge.source.label,
            url=knowledge.source.url,
            topic=Coding(**knowledge.source.topic.model_dump()),
        )
        self.rater = PamaRater(ratings)
        self._links = [
            Link(label=link.label, url=link.url, type="absolute") for link in knowledge.source.links
        ] or None
        self._override_reasons: dict[tuple[RuleId, tuple[str, ...]], list[Coding]] = {}

    # --- public ---------------------------------------------------------------------------

    def render(
        self,
        advice: list[OrderAdvice],
        situation: PatientSituation,
        ordering: OrderingContext,
        new_uuid: UuidFactory,
        minimum_indicator: str = "info",
        unreadable: Sequence[str] = (),
        style: SuggestionStyle = DEFAULT_STYLE,
        guidance_base: str | None = None,
    ) -> list[RenderedCard]:
        """(rule id, card) for each advice at or above ``minimum_indicator``; every card says in
        one line what could not be read from the EHR (``unreadable`` prefetch keys). The orders
        with nothing to say but a missing reason share one history card, after the others.
        ``guidance_base``: the service's public URL, for the link to the rule's guidance page
        (None: the cards link the guidance's public text instead)."""
        floor = INDICATOR_RANK[minimum_indicator]
        cautions = list(dict.fromkeys(self._k.unreadable[key] for key in unreadable))
        findings = [a for a in advice if a.primary is not None]
        reasonless = [a for a in advice if a.primary is None and a.missing_history]
        groups: list[tuple[OrderAdvice, tuple[OrderAdvice, ...]]] = [(a, ()) for a in findings]
        if reasonless:
            groups.append((reasonless[0], tuple(reasonless[1:])))
        rendered = []
        for a, together in groups:
            # The standalone history card is info, yet shown where the service asks for it
            # (order-sign: once per call, for every order without a reason) whatever its floor.
            history = a.rule_id == RuleId.MISSING_CLINICAL_HISTORY and style.history_card
            if a.rule_id is None or not (
                INDICATOR_RANK[self._k.rules[a.rule_id].indicator] >= floor or history
            ):
                continue  # below the floor: not built at all (a card's indicator is its rule's)
            card, kinds = self._card(
                a, situation, ordering, new_uuid, cautions, style, guidance_base, together
            )
            rendered.append(RenderedCard(a.rule_id, card, a.order.reference, kinds, a.variant))
        return rendered

    def render_due(
        self,
        finding: DueImaging,
        situation: PatientSituation,
        ordering: OrderingContext,
        new_uuid: UuidFactory,
        unreadable: Sequence[str] = (),
        style: SuggestionStyle = DEFAULT_STYLE,
        guidance_base: str | None = None,
    ) -> RenderedCard:
        """The one patient-view card: imaging that is due, with one suggestion that creates
        the order (no draft exists), the same safety lines as the order cards and the record's
        evidence. Its ``order`` is empty: the card is about no order."""
        rule_id = finding.rule_id
        # No order is placed: the table's cell is the one for an order it suggests nothing in
        # place of (as for an ultrasound), so the study offered and its safety lines agree.
        cell = situation.table.cell(situation.factors, "us")
        if situation.implant is not None and "implant" not in cell.lines:
            # The study offered is chosen with the implant in mind: its line says what to do
            # first (identify an unknown labelling; an MR Conditional system's conditions).
            cell = replace(cell, lines=(*cell.lines, "implant"))
        context = self._bare_context(None, situation, ordering, new_uuid, style, cell)
        rendered = RULES[rule_id].build(context, finding)
        suggestions = rendered.suggestions
        cautions = list(dict.fromkeys(self._k.unreadable[key] for key in unreadable))
        notices = sections.safety_lines(context, self._agent_labels)
        if cautions:
            notices.insert(0, self._words.common("couldNotCheck", lines=" ".join(cautions)))
        # Short, as the order cards (issue 27): the ACR table and sources are on the rule's
        # guidance page; the history note on the suggested order keeps the whole history.
        paragraphs = [
            rendered.lead,
            *notices,
            *rendered.paragraphs,
            sections.why_patient(context),
        ]
        card = Card(
            uuid=new_uuid(),
            summary=rendered.summary,
            detail="\n\n".join(paragraphs),
            indicator="info",
            source=self._source,
            links=self._card_links(rule_id, rendered.reason_variants, guidance_base),
            suggestions=suggestions or None,
            selectionBehavior=("any" if style.selection == "any" else "at-most-one")
            if suggestions
            else None,
            # the rule's own reasons: the cell stands for no order placed
            overrideReasons=self._reasons(
                rule_id, rendered.reason_variants, replace(context, cell=None)
            ),
        )
        kinds = tuple(context.orders.kinds[s.uuid] for s in suggestions)
        return RenderedCard(rule_id, card, "", kinds)

    def pama_action(self, order: ImagingOrder, rating: str) -> Action | None:
        """The Argonaut PAMA rating as an update of a CPT-coded draft (sandbox PAMA view)."""
        if not cpt_codes(order.draft.codes):
            return None
        return Action(
            type="update",
            description=f"Record the ACR appropriateness rating on the order: {rating}",
            resource=with_rating(order.draft.resource, rating),
        )

    # --- one card ---------------------------------------------------------------------------

    def _context(
        self,
        advice: OrderAdvice,
        situation: PatientSituation,
        ordering: OrderingContext,
        new_uuid: UuidFactory,
        style: SuggestionStyle,
        together: Sequence[OrderAdvice] = (),
    ) -> CardContext:
        cell = situation.cell(advice.order, advice.rated)
        others = tuple(self._context(a, situation, ordering, new_uuid, style) for a in together)
        context = self._bare_context(advice, situation, ordering, new_uuid, style, cell)
        return replace(context, together=others)

    def _bare_context(
        self,
        advice: OrderAdvice | None,
        situation: PatientSituation,
        ordering: OrderingContext,
        new_uuid: UuidFactory,
        style: SuggestionStyle,
        cell: Cell | None,
    ) -> CardContext:
        """One card's inputs: the record in words and a suggestion builder for ``advice``'s
        draft (None: a patient-view card, about no order)."""
        history = History(self._k, self._words, situation)
        orders = SuggestionBuilder(
            self._k,
            self._words,
            history,
            advice,
            situation,
            ordering,
            new_uuid,
            style,
            self.rater,
        )
        return CardContext(self._k, self._words, advice, situation, history, orders, cell=cell)

    def _card(
        self,
        advice: OrderAdvice,
        situation: PatientSituation,
        ordering: OrderingContext,
        new_uuid: UuidFactory,
        cautions: Sequence[str] = (),
        style: SuggestionStyle = DEFAULT_STYLE,
        guidance_base: str | None = None,
        together: Sequence[OrderAdvice] = (),
    ) -> tuple[Card, tuple[str, ...]]:
        """A card short enough to act on without scrolling: one sentence of why, the safety
        lines, the order as placed against the recommended study, why this patient, the
        buttons. The explanation, the full ACR table and the pathway are on the rule's guidance
        page, linked from the card."""
        rule_id = advice.rule_id
        assert rule_id is not None  # advice exists only when something is to be said
        rule = self._k.rules[rule_id]
        context = self._context(advice, situation, ordering, new_uuid, style, together)
        entry = RULES[rule_id]
        expected = entry.finding
        if not (isinstance(advice.primary, expected) if expected else advice.primary is None):
            raise TypeError(f"{rule_id} renders {expected}, not {type(advice.primary).__name__}")
        rendered = entry.build(context, advice.primary)
        suggestions = rendered.suggestions
        # Nothing to click where the study is radiology's to decide (discuss with radiology):
        # not even the history update, which would complete the order as placed.
        discuss = rule_id == RuleId.DISCUSS_WITH_RADIOLOGY or (
            context.cell is not None and context.cell.kind == "discuss"
        )
        # An order without a reason: the card's change adds it (its button says so).
        if (
            advice.primary is not None
            and advice.missing_history
            and not discuss
            and not any(touches(s, advice.order.reference, ("update",)) for s in suggestions)
        ):
            suggestions = [*suggestions, context.orders.history_update(recommended=False)]
        if discuss:
            suggestions = []
        if style.selection == "any":
            suggestions = context.orders.keep_takeable_together(suggestions)
        notices = sections.safety_lines(context, self._agent_labels)
        if cautions:
            notices.insert(0, self._words.common("couldNotCheck", lines=" ".join(cautions)))
        compared = (
            [sections.comparison(context, self._ratings, self.rater, suggestions)]
            if advice.primary is not None
            else []
        )
        paragraphs = [
            rendered.lead,
            *notices,
            *compared,
            sections.why_patient(context),
        ]
        card = Card(
            uuid=new_uuid(),
            summary=sections.safety_summary(context) or rendered.summary,
            detail="\n\n".join(paragraphs),
            indicator=rule.indicator,
            source=self._source,
            links=self._card_links(rule_id, rendered.reason_variants, guidance_base),
            suggestions=suggestions or None,
            selectionBehavior=(
                "any"
                if style.selection == "any"
                else selection_behavior(suggestions, advice.order.reference)
            )
            if suggestions
            else None,
            overrideReasons=self._reasons(rule_id, rendered.reason_variants, context),
        )
        return card, tuple(context.orders.kinds[s.uuid] for s in suggestions)

    def _card_links(
        self, rule_id: RuleId, variants: tuple[str, ...], guidance_base: str | None
    ) -> list[Link] | None:
        """The rule's guidance page on this service (the variant's, when the card names one
        problem), as an absolute link; without a public URL, the guidance's public text. The
        source (``source.url``) links the published guidance either way."""
        if guidance_base is None:
            return self._links
        variant = variants[0] if len(variants) == 1 else DEFAULT_VARIANT
        url = guidance_base.rstrip("/") + guidance_path(rule_id, variant)
        return [Link(label=self._words.common("guidanceLinkLabel"), url=url, type="absolute")]

    def _reasons(
        self, rule_id: RuleId, variants: tuple[str, ...], context: CardContext
    ) -> list[Coding]:
        """The rule's override reasons, then the safety table's for this cell."""
        key = (rule_id, variants)
        if key not in self._override_reasons:  # a handful of combinations: built once each
            self._override_reasons[key] = [
                Coding(**r.model_dump()) for r in self._k.override_reasons(rule_id, variants)
            ]
        reasons = self._override_reasons[key]
        cell = context.cell
        if cell is None or not cell.reasons:
            return reasons
        table = context.situation.table.k.overrideReasons
        codes = {r.code for r in reasons}
        extra = [
            Coding(system=self._k.overrideReasonSystem, code=r.code, display=r.display)
            for r in (table[name] for name in cell.reasons)
            if r.code not in codes
        ]
        return [*extra, *reasons]
