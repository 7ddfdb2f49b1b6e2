"""Advice -> CDS Hooks cards, suggestions and system actions.

Wording comes from hooks/knowledge/cards.json; this module only assembles it. Each rule has one
entry in ``RULES`` (its finding type, its builder, and the texts it needs with the placeholders
the builder fills); at start-up the wording is checked against those entries, so a text that
uses a placeholder its builder does not fill stops the service instead of failing a request.
Every order the service suggests (created, or updated in place) carries the cancer Condition as
its reason, and, when the draft had no reason, a clinical-history note for the radiologist.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from cds_service.cards.markdown import escape_markdown
from cds_service.clinical.contrast import Agent
from cds_service.clinical.guidance import (
    CtNeck,
    DiscussWithRadiology,
    IncompleteMri,
    MriConditionalImplant,
    MriContraindicated,
    OrderAdvice,
    PatientSituation,
    PetTooEarly,
    RecurrenceRestaging,
    RepeatMriTooSoon,
    TissueConfirmationNext,
    UsLimited,
)
from cds_service.clinical.orders import ImagingOrder
from cds_service.clinical.pama import PamaRater, cpt_codes, with_rating
from cds_service.clinical.pathway import LastReport, PathwayPosition, Recurrence
from cds_service.clinical.reasoning import CancerEvidence, TreatmentEvidence
from cds_service.contract.wire import Action, Card, Coding, Link, Source, Suggestion
from cds_service.fhir.records import OrderFact, PartialDate, json_copy
from cds_service.knowledge.loader import (
    CardKnowledge,
    ConcernChoice,
    KnowledgeError,
    OrderKey,
    RatedProcedure,
    RatingKnowledge,
)
from cds_service.knowledge.rules import RuleId

UuidFactory = Callable[[], str]

#: FHIR R4 ServiceRequest.intent (required binding): a created order keeps the draft's.
_REQUEST_INTENTS = frozenset(
    {
        "proposal",
        "plan",
        "directive",
        "order",
        "original-order",
        "reflex-order",
        "filler-order",
        "instance-order",
        "option",
    }
)

INDICATOR_RANK = {"info": 0, "warning": 1, "critical": 2}
_USER_REFERENCE = re.compile(r"^(Practitioner|PractitionerRole)/[A-Za-z0-9\-.]{1,64}$")


ReplacementStyle = Literal["update", "delete-create"]


class RenderedCard(NamedTuple):
    """A card with the rule that decided it and the draft order it is about."""

    rule: RuleId
    card: Card
    order: str
    #: What each of the card's suggestions does ("replace:mri-protocol", "history"...), in order.
    suggestion_kinds: tuple[str, ...] = ()


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


@dataclass(frozen=True)
class OrderingContext:
    """Who orders for whom: used to build suggested orders when the draft does not say."""

    patient_id: str
    user_id: str
    encounter_id: str | None


@dataclass(frozen=True)
class _Rendered:
    summary: str
    #: One sentence: why this card, for this order (the detail opens with it).
    lead: str
    #: The explanation, read after the ACR table.
    paragraphs: list[str]
    suggestions: list[Suggestion]
    #: Which of the rule's override-reason lists fit this card (the problems it names).
    reason_variants: tuple[str, ...] = ("default",)


def _join(labels: tuple[str, ...]) -> str:
    if len(labels) <= 1:
        return "".join(labels)
    return ", ".join(labels[:-1]) + " and " + labels[-1]


def _escape(text: str) -> str:
    """Keep EHR-supplied names from being read as markdown (cds_service.cards.markdown)."""
    return escape_markdown(text)


class Wording:
    """The texts of cards.json, filled only with the placeholders their contract names."""

    def __init__(self, knowledge: CardKnowledge) -> None:
        self._k = knowledge
        self._dates = knowledge.datePhrases.model_dump()

    @staticmethod
    def _fill(
        where: str, template: str, contract: frozenset[str], values: Mapping[str, object]
    ) -> str:
        if set(values) != contract:  # a builder out of step with its RULES entry (a test fails)
            raise ValueError(f"{where}: filled with {sorted(values)}, declared {sorted(contract)}")
        return template.format(**values)

    def rule(self, rule: RuleId, name: str, /, **values: object) -> str:
        contract = RULES[rule].texts[name]
        return self._fill(f"{rule}.{name}", self._k.rules[rule].texts[name], contract, values)

    def common(self, name: str, /, **values: object) -> str:
        return self._fill(name, self._k.common[name], COMMON_TEXTS[name], values)

    def date(self, name: str, /, **values: object) -> str:
        return self._fill(name, self._dates[name], DATE_TEXTS[name], values)


def _check_texts(
    where: str, texts: Mapping[str, str], contract: Mapping[str, frozenset[str]]
) -> None:
    for name, allowed in contract.items():
        if name not in texts:
            raise KnowledgeError(f"cards.json: {where} has no text {name!r}")
        try:
            used = {field for _, field, _, _ in string.Formatter().parse(texts[name]) if field}
        except ValueError as exc:
            raise KnowledgeError(f"cards.json: {where}.{name} is not a valid template") from exc
        unknown = used - allowed
        if unknown:
            raise KnowledgeError(
                f"cards.json: {where}.{name} uses unknown placeholders {sorted(unknown)}"
            )


def check_wording(knowledge: CardKnowledge) -> None:
    """Refuse wording that a rule's builder could not fill (run at start-up)."""
    unregistered = set(RuleId) - set(RULES)
    if unregistered:  # a programming error, caught by the first test that builds an engine
        raise KnowledgeError(f"rules without an entry in the cards' RULES: {unregistered}")
    missing = set(RULES) - set(knowledge.rules)
    if missing:
        raise KnowledgeError(f"cards.json: rules missing: {sorted(missing)}")
    for rule, entry in RULES.items():
        texts = knowledge.rules[rule].texts
        _check_texts(f"rules.{rule}", texts, entry.texts)
        variants = set(knowledge.rules[rule].overrideReasons)
        if variants != entry.reason_variants:
            raise KnowledgeError(
                f"cards.json: rules.{rule}.overrideReasons must list exactly "
                f"{sorted(entry.reason_variants)}, not {sorted(variants)}"
            )
        for name in entry.texts:
            if name.startswith("summary") and len(texts[name]) >= 140:
                raise KnowledgeError(
                    f"cards.json: rules.{rule}.{name} must be under 140 characters"
                )
    _check_texts("common", knowledge.common, COMMON_TEXTS)
    _check_texts("datePhrases", knowledge.datePhrases.model_dump(), DATE_TEXTS)


class CardRenderer:
    """Built once per process; each render gets the request's uuid factory."""

    def __init__(
        self,
        knowledge: CardKnowledge,
        ratings: RatingKnowledge,
        agent_labels: Mapping[str, str],
    ) -> None:
        check_wording(knowledge)
        self._k = knowledge
        self._words = Wording(knowledge)
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
        style: SuggestionStyle = SuggestionStyle(),
    ) -> list[RenderedCard]:
        """(rule id, card) for each advice at or above ``minimum_indicator``; every card says in
        one line what could not be read from the EHR (``unreadable`` prefetch keys)."""
        floor = INDICATOR_RANK[minimum_indicator]
        cautions = list(dict.fromkeys(self._k.unreadable[key] for key in unreadable))
        rendered = []
        for a in advice:
            card, kinds = self._card(a, situation, ordering, new_uuid, cautions, style)
            # The standalone history card is info, yet shown where the service asks for it
            # (order-sign: once per ordering session) whatever its indicator floor.
            history = a.rule_id == RuleId.MISSING_CLINICAL_HISTORY and style.history_card
            if (INDICATOR_RANK[card.indicator] >= floor or history) and a.rule_id is not None:
                rendered.append(RenderedCard(a.rule_id, card, a.order.reference, kinds))
        return rendered

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

    def _card(
        self,
        advice: OrderAdvice,
        situation: PatientSituation,
        ordering: OrderingContext,
        new_uuid: UuidFactory,
        cautions: Sequence[str] = (),
        style: SuggestionStyle = SuggestionStyle(),
    ) -> tuple[Card, tuple[str, ...]]:
        rule_id = advice.rule_id
        assert rule_id is not None  # advice exists only when something is to be said
        rule = self._k.rules[rule_id]
        build = _Builder(
            self._k, self._words, advice, situation, ordering, new_uuid, style, self.rater
        )
        entry = RULES[rule_id]
        expected = entry.finding
        if not (isinstance(advice.primary, expected) if expected else advice.primary is None):
            raise TypeError(f"{rule_id} renders {expected}, not {type(advice.primary).__name__}")
        rendered = entry.build(build, advice.primary)
        suggestions = rendered.suggestions
        explanation = list(rendered.paragraphs)
        if advice.primary is not None and advice.missing_history:
            explanation.append(build.text(RuleId.MISSING_CLINICAL_HISTORY, "folded"))
            if not any(_touches(s, advice.order.reference, ("update",)) for s in suggestions):
                suggestions = [*suggestions, build.history_update(recommended=False)]
        notices = self._safety_lines(advice, situation, build, suggestions)
        if cautions:
            notices.insert(0, self._words.common("couldNotCheck", lines=" ".join(cautions)))
        explanation[:0] = self._pathway_lines(advice, situation.pathway, build)
        # One sentence of why, what bears on safety, the ratings at a glance; then the rest.
        paragraphs = [
            rendered.lead,
            *notices,
            self._ratings_table(advice.rated, advice.order),
            *explanation,
            *([build.prior_markdown()] if situation.latest_prior else []),
            self._evidence_markdown(situation, build),
        ]
        card = Card(
            uuid=new_uuid(),
            summary=rendered.summary,
            detail="\n\n".join(paragraphs),
            indicator=rule.indicator,
            source=self._source,
            links=self._links,
            suggestions=suggestions or None,
            selectionBehavior=_selection_behavior(suggestions, advice.order.reference)
            if suggestions
            else None,
            overrideReasons=self._reasons(rule_id, rendered.reason_variants),
        )
        return card, tuple(build.kinds[s.uuid] for s in suggestions)

    def _reasons(self, rule_id: RuleId, variants: tuple[str, ...]) -> list[Coding]:
        key = (rule_id, variants)
        if key not in self._override_reasons:  # a handful of combinations: built once each
            self._override_reasons[key] = [
                Coding(**r.model_dump()) for r in self._k.override_reasons(rule_id, variants)
            ]
        return self._override_reasons[key]

    def _safety_lines(
        self,
        advice: OrderAdvice,
        situation: PatientSituation,
        build: _Builder,
        suggestions: Sequence[Suggestion],
    ) -> list[str]:
        """One line for each safety fact that bears on the studies this card is about (the
        ordered one and the suggested ones): a recorded contrast allergy, kidney function, an
        MR Conditional or cochlear implant; and, when nothing is safe to suggest, that."""
        words = self._words
        if advice.rule_id == RuleId.DISCUSS_WITH_RADIOLOGY:
            return []  # its own text names the implant and the contrast risks
        ordered = advice.order.modality
        involved = set(build.suggested)
        if ordered in ("MR", "MRA", "PET-MR"):
            involved.add("mri-protocol")
        if ordered == "CT":
            involved.add("ct-neck-with-contrast")
        contrast = situation.contrast
        lines = []
        studies: tuple[tuple[OrderKey, Agent], ...] = (
            ("mri-protocol", "gadolinium"),
            ("ct-neck-with-contrast", "iodinated"),
        )
        for key, agent in studies:
            allergy = contrast.allergy(agent)
            if key in involved and allergy is not None:
                label = self._agent_labels[agent]
                lines.append(
                    words.common("allergyLine", agent=label, evidence=_escape(allergy.display))
                )
        kidney = contrast.kidney
        if kidney is not None and "ct-neck-with-contrast" in involved:
            lines.append(words.common("kidneyCtLine", evidence=_escape(kidney.display)))
        if kidney is not None and "mri-protocol" in involved:
            lines.append(words.common("kidneyMriLine", evidence=_escape(kidney.display)))
        implant = situation.implant
        if implant is not None and "mri-protocol" in involved:
            name = _escape(implant.display)
            if (
                implant.mr_status == "conditional"
                and advice.rule_id != RuleId.MRI_CONDITIONAL_IMPLANT
            ):
                lines.append(words.common("conditionalLine", implant=name))
            if implant.cochlear and ordered in ("MR", "MRA", "PET-MR"):
                lines.append(words.common("cochlearLine", implant=name))
        quiet = advice.rule_id == RuleId.MRI_CONDITIONAL_IMPLANT
        if not suggestions and not quiet and (contrast.allergies or kidney is not None):
            lines.append(words.common("noStudyLine"))
        return lines

    def _ratings_table(self, rated: RatedProcedure | None, order: ImagingOrder) -> str:
        """The ACR table, the ordered study's row marked: as read from the order, or else as
        its procedure code is rated (CPT 70543 is the rated MRI's code, whatever the name)."""
        words = self._words
        codes = cpt_codes(order.draft.codes)
        coded = self.rater.procedure(codes) if rated is None else None
        rows = [words.common("ratingsColumns"), "|---|---|---|"]
        for procedure in self._ratings.procedures:
            name = procedure.name
            if rated is not None and procedure.id == rated.id:
                name = "**" + words.common("orderedMark", name=name) + "**"
            elif coded is not None and procedure.id == coded.id:
                code = next(c for c in codes if c in procedure.cpt)
                name = "**" + words.common("orderedCodeMark", name=name, code=code) + "**"
            rows.append(f"| {name} | {procedure.category} | {procedure.radiation} |")
        return f"**{words.common('ratingsHeading')}**\n\n" + "\n".join(rows)

    def _pathway_lines(
        self, advice: OrderAdvice, pathway: PathwayPosition, build: _Builder
    ) -> list[str]:
        """Where the patient stands after the last report, in a card about something else:
        a recurrence means restaging; a positive report, tissue confirmation next."""
        if advice.primary is None or isinstance(
            advice.primary, RecurrenceRestaging | TissueConfirmationNext
        ):
            return []
        words = self._words
        if pathway.recurrence is not None:
            recurrence = build.recurrence_phrase(pathway.recurrence)
            return [words.common("restagingLine", recurrence=recurrence)]
        report = pathway.last_report
        if report is not None and report.reading.branch == "positive":
            return [words.common("positiveLine", report=build.report_phrase(report))]
        return []

    def _evidence_markdown(self, situation: PatientSituation, build: _Builder) -> str:
        context, pathway, words = situation.context, situation.pathway, self._words
        lines = [self._cancer_line(context.cancer, build)]
        if pathway.histology and pathway.histology.lower() not in context.cancer.display.lower():
            lines.append(words.common("evidenceHistology", histology=_escape(pathway.histology)))
        lines += [self._treatment_line(t, build) for t in context.treatments]
        if pathway.last_report is not None:
            lines.append(
                words.common("evidenceLastReport", **build.report_parts(pathway.last_report))
            )
        if pathway.recurrence is not None and pathway.recurrence.report is None:
            # (a report's recurrence is already on the line of the last report)
            recurrence = build.recurrence_phrase(pathway.recurrence)
            lines.append(words.common("evidenceRecurrence", recurrence=recurrence))
        if pathway.adenoid_cystic:
            lines.append(words.common("accLine"))
        heading = words.common("evidenceHeading")
        return f"**{heading}**\n\n" + "\n".join(f"- {line}" for line in lines)

    def _cancer_line(self, cancer: CancerEvidence, build: _Builder) -> str:
        return self._words.common(
            "evidenceCondition",
            display=build.shown(cancer.display),
            code_label=cancer.code.label,
            date_phrase=cancer_date_phrase(self._words, cancer),
        )

    def _treatment_line(self, treatment: TreatmentEvidence, build: _Builder) -> str:
        return self._words.common(
            "evidenceTreatment",
            display=build.shown(treatment.display),
            code_label=treatment.code.label,
            date_phrase=treatment_date_phrase(self._words, treatment),
        )


def cancer_date_phrase(words: Wording, cancer: CancerEvidence) -> str:
    condition = cancer.condition
    if condition.onset:
        return words.date("diagnosed", date=condition.onset.text)
    if condition.recorded:
        return words.date("recorded", date=condition.recorded.text)
    return ""


def treatment_date_phrase(words: Wording, treatment: TreatmentEvidence) -> str:
    start, end = treatment.procedure.performed_start, treatment.procedure.performed_end
    if start and end and start != end:
        return words.date("performedPeriod", start=start.text, end=end.text)
    single: PartialDate | None = end or start
    return words.date("performed", date=single.text) if single else ""


def _touches(suggestion: Suggestion, reference: str, kinds: tuple[str, ...]) -> bool:
    return any(
        a.type in kinds
        and (a.resourceId == reference or _resource_reference(a.resource) == reference)
        for a in suggestion.actions
    )


def _updates(suggestion: Suggestion, reference: str) -> bool:
    return _touches(suggestion, reference, ("update", "delete"))


def _resource_reference(resource: dict[str, Any] | None) -> str | None:
    if not resource or not resource.get("id"):
        return None
    return f"{resource.get('resourceType')}/{resource['id']}"


def _selection_behavior(suggestions: list[Suggestion], reference: str) -> str:
    """ "any" when every suggestion can be taken together; "at-most-one" when they exclude
    each other (one deletes the draft another changes, or two change the same draft)."""
    if len(suggestions) < 2:
        return "at-most-one"
    deletes = sum(1 for s in suggestions if _touches(s, reference, ("delete",)))
    changes = sum(1 for s in suggestions if _updates(s, reference))
    return "at-most-one" if deletes or changes > 1 else "any"


class _Builder:
    """Assembles one card's texts and suggestions for one order."""

    def __init__(
        self,
        k: CardKnowledge,
        words: Wording,
        advice: OrderAdvice,
        situation: PatientSituation,
        ordering: OrderingContext,
        new_uuid: UuidFactory,
        style: SuggestionStyle,
        rater: PamaRater,
    ) -> None:
        self.k = k
        self.words = words
        self.style = style
        self.rater = rater
        #: What each suggestion does, by its uuid (for the outcome report; no patient data).
        self.kinds: dict[str, str] = {}
        #: The studies this card suggests (for its safety lines).
        self.suggested: set[OrderKey] = set()
        self.advice = advice
        self.draft: OrderFact = advice.order.draft
        self.situation = situation
        self.ordering = ordering
        self.new_uuid = new_uuid
        self.ordered = _escape(self.draft.display)

    # history and orders -----------------------------------------------------------------

    def plain(self, text: str) -> str:
        """An EHR display as a radiologist should read it: billing suffixes cut ("(HCC)")."""
        for suffix in self.k.billingSuffixes:
            text = text.replace(suffix, "")
        return re.sub(r"\s{2,}", " ", text).strip()

    def shown(self, text: str) -> str:
        """An EHR display for card markdown: billing suffixes cut, markdown escaped."""
        return _escape(self.plain(text))

    def report_parts(self, report: LastReport) -> dict[str, str]:
        """The last report as modality, date and finding ("MRI", "2026-08-03", "NI-RADS 2b")."""
        reading = report.reading
        finding = (
            self.k.niradsFinding.format(category=reading.category)
            if reading.category
            else self.k.reportFindings[reading.branch]
        )
        return {
            "modality": self.k.modalityNames.get(report.modality, report.modality),
            "date": report.date.text,
            "finding": finding,
        }

    def report_phrase(self, report: LastReport) -> str:
        parts = self.report_parts(report)
        return f"{parts['modality']} {parts['date']}: {parts['finding']}"

    def recurrence_phrase(self, recurrence: Recurrence) -> str:
        """The recurrence's evidence for card markdown: the report by its finding, else the
        Condition by its name."""
        if recurrence.report is not None:
            return self.report_phrase(recurrence.report)
        return self.shown(recurrence.display)

    def history_note(self) -> str:
        words = self.words
        context = self.situation.context
        pathway = self.situation.pathway
        treatments = "; ".join(
            words.common(
                "historyTreatment",
                display=self.plain(t.display),
                date_phrase=treatment_date_phrase(words, t),
            )
            for t in context.treatments
        )
        last = pathway.last_report
        prior = ""
        latest = self.situation.latest_prior
        if latest and (last is None or latest.fact.reference != last.study.fact.reference):
            prior = words.common(
                "historyPrior",
                prior=self.plain(latest.fact.display),
                date=latest.fact.date.text if latest.fact.date else "date unknown",
            )
        histology = ""
        if pathway.histology and pathway.histology.lower() not in context.cancer.display.lower():
            histology = words.common("historyHistology", histology=pathway.histology)
        return words.common(
            "historyNote",
            cancer=self.plain(context.cancer.display),
            code_label=context.cancer.code.label,
            date_phrase=cancer_date_phrase(words, context.cancer),
            histology=histology,
            treatments=treatments,
            last_report=words.common("historyLastReport", **self.report_parts(last))
            if last
            else "",
            prior=prior,
            hallmark=words.common("accHallmark") if pathway.adenoid_cystic else "",
        )

    def _with_history(
        self, resource: dict[str, Any], concern: ConcernChoice | None = None
    ) -> dict[str, Any]:
        cancer = self.situation.context.cancer.condition
        reasons = [r for r in resource.get("reasonReference", []) if isinstance(r, dict)]
        if not any(r.get("reference") == cancer.reference for r in reasons):
            reasons.append(
                {
                    "reference": cancer.reference,
                    "display": self.plain(self.situation.context.cancer.display),
                }
            )
        resource["reasonReference"] = reasons
        code = self.situation.context.cancer.code
        coded = [r for r in resource.get("reasonCode", []) if isinstance(r, dict)]
        if not any(
            isinstance(c, dict) and c.get("system") == code.system and c.get("code") == code.code
            for r in coded
            for c in r.get("coding", [])
            if isinstance(r.get("coding"), list)
        ):
            coding = {"system": code.system, "code": code.code}
            if code.display:
                coding["display"] = code.display
            coded.append(
                {"coding": [coding], "text": self.plain(self.situation.context.cancer.display)}
            )
        if concern is not None:
            coded.append(
                {
                    "coding": [
                        {
                            "system": self.k.clinicalConcernSystem,
                            "code": concern.code,
                            "display": concern.display,
                        }
                    ],
                    "text": concern.display,
                }
            )
        resource["reasonCode"] = coded
        if not self.draft.has_reason:
            notes = [n for n in resource.get("note", []) if isinstance(n, dict)]
            resource["note"] = [*notes, {"text": self.history_note()}]
        # Built from a validated draft and coded templates: tests/test_cards.py validates every
        # suggested resource of every vignette with fhir.resources (40 µs a call saved here).
        return resource

    def new_order(self, key: OrderKey) -> dict[str, Any]:
        """A new ServiceRequest for ``key``, for the same patient, encounter and requester."""
        original = self.draft.resource
        requester = self.draft.requester or (
            self.ordering.user_id if _USER_REFERENCE.match(self.ordering.user_id) else None
        )
        encounter = self.draft.encounter or (
            f"Encounter/{self.ordering.encounter_id}" if self.ordering.encounter_id else None
        )
        intent = original.get("intent")  # the draft's, as the clinician's order would be
        resource: dict[str, Any] = {
            "resourceType": "ServiceRequest",
            "status": "draft",
            "intent": intent if intent in _REQUEST_INTENTS else "order",
            "code": self._study_code(key),
            "subject": {"reference": self.draft.subject or f"Patient/{self.ordering.patient_id}"},
        }
        if encounter:
            resource["encounter"] = {"reference": encounter}
        if requester:
            resource["requester"] = {"reference": requester}
        for kept in ("category", "priority", "reasonCode", "reasonReference", "note"):
            if kept in original:
                resource[kept] = json_copy(original[kept])
        return self._with_history(resource)

    def updated_draft(self, concern: ConcernChoice | None = None, **changes: Any) -> dict[str, Any]:
        resource = json_copy(dict(self.draft.resource))
        resource.update(changes)
        return self._with_history(resource, concern)

    def _study_code(self, key: OrderKey) -> dict[str, Any]:
        template = self.k.orders[key]
        site = (template.site,) if template.site else ()
        return {
            "coding": [c.model_dump() for c in (*site, *template.coding)],
            "text": template.site.display if template.site else template.text,
        }

    def update(self, description: str, resource: dict[str, Any], warned: bool) -> Action:
        """An update of the draft; with PAMA ratings on, rated as updated (``warned``: this
        card still warns against the order as updated)."""
        if self.style.pama and (codes := cpt_codes(resource["code"].get("coding", []))):
            shown = self.advice.rule_id if warned else None
            resource = with_rating(resource, self.rater.rating(codes, True, shown))
        return Action(type="update", description=description, resource=resource)

    # suggestions --------------------------------------------------------------------------

    def replace(self, label: str, key: OrderKey, recommended: bool) -> Suggestion:
        """Replace the draft with study ``key``: an update of the draft in place, or a delete
        and a create, as the client applies them (``SuggestionStyle``)."""
        if self.style.replacement == "update":
            actions = [
                self.update(
                    self.words.common("replaceDescription", alternative=self.k.orders[key].text),
                    self.updated_draft(code=self._study_code(key)),
                    warned=False,
                )
            ]
            self.suggested.add(key)
        else:
            actions = [
                Action(
                    type="delete",
                    description=self.words.common("deleteDescription", ordered=self.draft.display),
                    resourceId=self.draft.reference,
                ),
                self._create(key),
            ]
        return self._suggestion(f"replace:{key}", label, recommended, actions)

    def add(self, label: str, key: OrderKey) -> Suggestion:
        return self._suggestion(f"add:{key}", label, False, [self._create(key)])

    def _suggestion(
        self, kind: str, label: str, recommended: bool, actions: list[Action]
    ) -> Suggestion:
        suggestion = Suggestion(
            label=label, uuid=self.new_uuid(), isRecommended=recommended, actions=actions
        )
        self.kinds[suggestion.uuid] = kind
        return suggestion

    def _create(self, key: OrderKey) -> Action:
        self.suggested.add(key)
        return Action(
            type="create",
            description=self.words.common("createDescription", alternative=self.k.orders[key].text),
            resource=self.new_order(key),
        )

    def history_choices(self) -> list[Suggestion]:
        """The history as one-click choices of the reason for the exam (the guidance's third
        piece of history): each adds the cancer, the concern and the history note."""
        rule = RuleId.MISSING_CLINICAL_HISTORY
        return [
            self._suggestion(
                "history",
                self.text(rule, "choiceLabel", concern=concern.display),
                False,
                [
                    self.update(
                        self.text(rule, "choiceDescription", concern=concern.display),
                        self.updated_draft(concern),
                        warned=True,
                    )
                ],
            )
            for concern in self.k.clinicalConcerns
        ]

    def history_update(self, recommended: bool) -> Suggestion:
        rule = RuleId.MISSING_CLINICAL_HISTORY
        return self._suggestion(
            "history",
            self.text(rule, "suggestionLabel"),
            recommended,
            [self.update(self.text(rule, "updateDescription"), self.updated_draft(), warned=True)],
        )

    def prior_markdown(self) -> str:
        assert self.situation.latest_prior is not None
        fact = self.situation.latest_prior.fact
        return self.words.common(
            "priorComparison",
            prior=_escape(fact.display),
            date=fact.date.text if fact.date else "date unknown",
        )

    # rules ---------------------------------------------------------------------------------

    def text(self, rule: RuleId, name: str, /, **values: object) -> str:
        return self.words.rule(rule, name, **values)

    def mri_conditional_implant(self, finding: MriConditionalImplant) -> _Rendered:
        rule = finding.rule_id
        suggestions = []
        if finding.implant.cochlear and self.situation.can_suggest("ct-neck-with-contrast"):
            label = self.text(rule, "ctSuggestionLabel")
            suggestions.append(self.replace(label, "ct-neck-with-contrast", False))
        implant = _escape(finding.implant.display)
        return _Rendered(
            self.k.rules[rule].summary,
            self.text(rule, "lead", ordered=self.ordered, implant=implant),
            [self.text(rule, "problem")],
            suggestions,
        )

    def discuss_with_radiology(self, finding: DiscussWithRadiology) -> _Rendered:
        rule = finding.rule_id
        return _Rendered(
            self.k.rules[rule].summary,
            self.text(
                rule,
                "lead",
                ordered=self.ordered,
                implant=_escape(finding.implant.display),
                risks=_escape(_join(finding.risks)),
            ),
            [self.text(rule, "problem")],
            [],
        )

    def mri_contraindicated(self, finding: MriContraindicated) -> _Rendered:
        rule = finding.rule_id
        return _Rendered(
            self.k.rules[rule].summary,
            self.text(rule, "lead", implant=_escape(finding.implant.display)),
            [self.text(rule, "problem")],
            [self.replace(self.text(rule, "suggestionLabel"), "ct-neck-with-contrast", True)],
        )

    def incomplete_mri(self, finding: IncompleteMri) -> _Rendered:
        rule = finding.rule_id
        problems: list[tuple[str, str]] = []  # (lead, explanation) per problem the order has
        if finding.missing_regions:
            missing = _join(finding.missing_regions)
            problems.append(
                (
                    self.text(rule, "regionsLead", ordered=self.ordered, missing=missing),
                    self.text(rule, "regionsProblem"),
                )
            )
        if finding.contrast_problem:
            problem = self.k.contrastProblems[finding.contrast_problem]
            problems.append(
                (
                    self.text(rule, "contrastLead", ordered=self.ordered, contrast_problem=problem),
                    self.text(rule, "contrastProblem"),
                )
            )
        (lead, explanation), *others = problems
        paragraphs = [explanation, *(f"{more} {why}" for more, why in others)]
        restaging = self.situation.pathway.recurrence is not None
        paragraphs.append(self.text(rule, "whyRestaging" if restaging else "why"))
        summary = (
            self.k.rules[rule].summary
            if finding.missing_regions
            else self.text(rule, "summaryContrast")
        )
        implant = self.situation.implant
        if self.situation.can_suggest("mri-protocol"):
            suggestions = [self.replace(self.text(rule, "suggestionLabel"), "mri-protocol", True)]
            if (
                implant is not None
                and implant.cochlear
                and self.situation.can_suggest("ct-neck-with-contrast")
            ):  # the magnet's artefact: CT stays an option
                label = self.text(rule, "ctSuggestionLabel")
                suggestions.append(self.replace(label, "ct-neck-with-contrast", False))
        elif self.situation.can_suggest("ct-neck-with-contrast"):  # gadolinium allergy
            label = self.text(rule, "ctSuggestionLabel")
            suggestions = [self.replace(label, "ct-neck-with-contrast", True)]
        else:
            suggestions = []
        variants = (
            *(("regions",) if finding.missing_regions else ()),
            *((finding.contrast_problem,) if finding.contrast_problem else ()),
        )
        return _Rendered(summary, lead, paragraphs, suggestions, variants)

    def ct_neck(self, finding: CtNeck) -> _Rendered:
        rule = finding.rule_id
        lead = self.text(rule, "lead", ordered=self.ordered)
        paragraphs = [self.text(rule, "problem")]
        summary = self.k.rules[rule].summary
        situation = self.situation
        if rule != RuleId.CT_NECK_MRI_PREFERRED and not situation.can_suggest(
            "ct-neck-with-contrast"
        ):
            summary = self.text(rule, "summaryNoCt")  # never advise the unsafe contrast
        if rule == RuleId.CT_NECK_MRI_PREFERRED:
            # The ordered CT's own contrast is unsafe here: the MRI is then the recommendation.
            at_risk = not situation.can_suggest("ct-neck-with-contrast")
            label = self.text(rule, "suggestionLabel")
            suggestion = self.replace(label, "mri-protocol", at_risk)
            return _Rendered(summary, lead, paragraphs, [suggestion])
        preferred = situation.preferred()
        suggestions = []
        if situation.can_suggest("ct-neck-with-contrast"):
            label = self.text(rule, "ctSuggestionLabel")
            recommended = preferred == "ct-neck-with-contrast"
            suggestions.append(self.replace(label, "ct-neck-with-contrast", recommended))
        if situation.can_suggest("mri-protocol"):
            label = self.text(rule, "mriSuggestionLabel")
            suggestions.append(self.replace(label, "mri-protocol", preferred == "mri-protocol"))
        return _Rendered(summary, lead, paragraphs, suggestions)

    def pet_too_early(self, finding: PetTooEarly) -> _Rendered:
        rule = finding.rule_id
        earliest = finding.earliest.isoformat()
        lead = self.text(
            rule,
            "lead",
            ordered=self.ordered,
            rt_end=finding.radiotherapy_end.text,
            scan_date=finding.scan_date.isoformat(),
            days=finding.days,
            weeks=finding.days // 7,
        )
        paragraphs = [
            self.text(rule, "problem", min_weeks=finding.minimum_weeks, earliest=earliest)
        ]
        defer = self._suggestion(  # the recommendation: MRI now only for a specific concern
            "defer",
            self.text(rule, "deferLabel", earliest=earliest),
            True,
            [
                self.update(
                    self.text(rule, "deferDescription", earliest=earliest),
                    self.updated_draft(occurrenceDateTime=earliest),
                    warned=False,
                )
            ],
        )
        key = self.situation.alternative()
        suggestions = [defer]
        if key is not None:
            label = self.text(rule, "alternativeLabel", alternative=self.k.orders[key].text)
            suggestions.append(self.replace(label, key, False))
        return _Rendered(self.k.rules[rule].summary, lead, paragraphs, suggestions)

    def us_limited(self, finding: UsLimited) -> _Rendered:
        rule = finding.rule_id
        key = self.situation.alternative()
        suggestions = []
        if key is not None:
            label = self.text(rule, "suggestionLabel", alternative=self.k.orders[key].text)
            suggestions.append(self.add(label, key))
        summary = self.k.rules[rule].summary if suggestions else self.text(rule, "summaryNoStudy")
        return _Rendered(
            summary,
            self.text(rule, "lead", ordered=self.ordered),
            [self.text(rule, "problem")],
            suggestions,
        )

    def history_only(self, _finding: None) -> _Rendered:
        rule = RuleId.MISSING_CLINICAL_HISTORY
        return _Rendered(
            self.k.rules[rule].summary,
            self.text(rule, "lead", ordered=self.ordered),
            [self.text(rule, "problem")],
            self.history_choices(),
        )

    def recurrence_restaging(self, finding: RecurrenceRestaging) -> _Rendered:
        rule = finding.rule_id
        recurrence = self.recurrence_phrase(finding.recurrence)
        return _Rendered(
            self.k.rules[rule].summary,
            self.text(rule, "lead", recurrence=recurrence, ordered=self.ordered),
            [self.text(rule, "problem")],
            [],
        )

    def tissue_confirmation_next(self, finding: TissueConfirmationNext) -> _Rendered:
        rule = finding.rule_id
        return _Rendered(
            self.k.rules[rule].summary,
            self.text(rule, "lead", report=self.report_phrase(finding.report)),
            [self.text(rule, "problem")],
            [],
        )

    def repeat_mri_too_soon(self, finding: RepeatMriTooSoon) -> _Rendered:
        rule = finding.rule_id
        parts = self.report_parts(finding.report)
        expected_from = finding.expected_from.isoformat()
        defer = self._suggestion(
            "defer",
            self.text(rule, "deferLabel", expected_from=expected_from),
            False,
            [
                self.update(
                    self.text(rule, "deferDescription", expected_from=expected_from),
                    self.updated_draft(occurrenceDateTime=expected_from),
                    warned=False,
                )
            ],
        )
        return _Rendered(
            self.k.rules[rule].summary,
            self.text(
                rule,
                "lead",
                ordered=self.ordered,
                scan_date=finding.scan_date.isoformat(),
                days=finding.days,
                modality=parts["modality"],
                report_date=parts["date"],
                finding=parts["finding"],
            ),
            [
                self.text(
                    rule,
                    "problem",
                    expected_from=expected_from,
                    expected_to=finding.expected_to.isoformat(),
                )
            ],
            [defer],
        )


# --- one entry per rule -------------------------------------------------------------------


@dataclass(frozen=True)
class RuleRendering:
    """Everything about one rule's card in one place: the finding it renders (None for the
    history card, which stands for a missing reason rather than a finding), the builder, and
    the texts it needs from cards.json with the placeholders the builder fills in each."""

    finding: type[Any] | None
    build: Callable[[_Builder, Any], _Rendered]
    texts: Mapping[str, frozenset[str]]
    #: The override-reason lists cards.json must give this rule (one per problem variant).
    reason_variants: frozenset[str] = frozenset({"default"})


def _needs(*names: str) -> frozenset[str]:
    return frozenset(names)


RULES: dict[RuleId, RuleRendering] = {
    RuleId.MRI_CONTRAINDICATED: RuleRendering(
        MriContraindicated,
        _Builder.mri_contraindicated,
        {"lead": _needs("implant"), "problem": _needs(), "suggestionLabel": _needs()},
    ),
    RuleId.MRI_CONDITIONAL_IMPLANT: RuleRendering(
        MriConditionalImplant,
        _Builder.mri_conditional_implant,
        {
            "lead": _needs("ordered", "implant"),
            "problem": _needs(),
            "ctSuggestionLabel": _needs(),
        },
    ),
    RuleId.DISCUSS_WITH_RADIOLOGY: RuleRendering(
        DiscussWithRadiology,
        _Builder.discuss_with_radiology,
        {"lead": _needs("ordered", "implant", "risks"), "problem": _needs()},
    ),
    RuleId.INCOMPLETE_MRI_PROTOCOL: RuleRendering(
        IncompleteMri,
        _Builder.incomplete_mri,
        {
            "summaryContrast": _needs(),
            "regionsLead": _needs("ordered", "missing"),
            "regionsProblem": _needs(),
            "contrastLead": _needs("ordered", "contrast_problem"),
            "contrastProblem": _needs(),
            "why": _needs(),
            "whyRestaging": _needs(),
            "suggestionLabel": _needs(),
            "ctSuggestionLabel": _needs(),
        },
        reason_variants=frozenset({"regions", "without", "with", "unspecified"}),
    ),
    **{
        rule: RuleRendering(
            CtNeck,
            _Builder.ct_neck,
            {
                "lead": _needs("ordered"),
                "problem": _needs(),
                "ctSuggestionLabel": _needs(),
                "mriSuggestionLabel": _needs(),
                "summaryNoCt": _needs(),
            },
        )
        for rule in (RuleId.CT_NECK_WITHOUT_CONTRAST, RuleId.CT_NECK_CONTRAST_UNSPECIFIED)
    },
    RuleId.CT_NECK_MRI_PREFERRED: RuleRendering(
        CtNeck,
        _Builder.ct_neck,
        {"lead": _needs("ordered"), "problem": _needs(), "suggestionLabel": _needs()},
    ),
    RuleId.PET_TOO_EARLY: RuleRendering(
        PetTooEarly,
        _Builder.pet_too_early,
        {
            "lead": _needs("ordered", "rt_end", "scan_date", "days", "weeks"),
            "problem": _needs("min_weeks", "earliest"),
            "deferLabel": _needs("earliest"),
            "deferDescription": _needs("earliest"),
            "alternativeLabel": _needs("alternative"),
        },
    ),
    RuleId.US_LIMITED: RuleRendering(
        UsLimited,
        _Builder.us_limited,
        {
            "lead": _needs("ordered"),
            "problem": _needs(),
            "suggestionLabel": _needs("alternative"),
            "summaryNoStudy": _needs(),
        },
    ),
    RuleId.RECURRENCE_RESTAGING: RuleRendering(
        RecurrenceRestaging,
        _Builder.recurrence_restaging,
        {"lead": _needs("recurrence", "ordered"), "problem": _needs()},
    ),
    RuleId.TISSUE_CONFIRMATION_NEXT: RuleRendering(
        TissueConfirmationNext,
        _Builder.tissue_confirmation_next,
        {"lead": _needs("report"), "problem": _needs()},
    ),
    RuleId.REPEAT_MRI_TOO_SOON: RuleRendering(
        RepeatMriTooSoon,
        _Builder.repeat_mri_too_soon,
        {
            "lead": _needs("ordered", "scan_date", "days", "modality", "report_date", "finding"),
            "problem": _needs("expected_from", "expected_to"),
            "deferLabel": _needs("expected_from"),
            "deferDescription": _needs("expected_from"),
        },
    ),
    RuleId.MISSING_CLINICAL_HISTORY: RuleRendering(
        None,
        _Builder.history_only,
        {
            "lead": _needs("ordered"),
            "problem": _needs(),
            "folded": _needs(),
            "suggestionLabel": _needs(),
            "updateDescription": _needs(),
            "choiceLabel": _needs("concern"),
            "choiceDescription": _needs("concern"),
        },
    ),
}

#: Texts every card may use, and the placeholders the renderer fills in each.
COMMON_TEXTS: dict[str, frozenset[str]] = {
    "evidenceHeading": _needs(),
    "evidenceCondition": _needs("display", "code_label", "date_phrase"),
    "evidenceTreatment": _needs("display", "code_label", "date_phrase"),
    "ratingsHeading": _needs(),
    "ratingsColumns": _needs(),
    "orderedMark": _needs("name"),
    "orderedCodeMark": _needs("name", "code"),
    "replaceDescription": _needs("alternative"),
    "priorComparison": _needs("prior", "date"),
    "historyNote": _needs(
        "cancer",
        "code_label",
        "date_phrase",
        "histology",
        "treatments",
        "last_report",
        "prior",
        "hallmark",
    ),
    "historyHistology": _needs("histology"),
    "historyLastReport": _needs("modality", "date", "finding"),
    "evidenceHistology": _needs("histology"),
    "evidenceLastReport": _needs("modality", "date", "finding"),
    "evidenceRecurrence": _needs("recurrence"),
    "accHallmark": _needs(),
    "accLine": _needs(),
    "restagingLine": _needs("recurrence"),
    "positiveLine": _needs("report"),
    "historyTreatment": _needs("display", "date_phrase"),
    "historyPrior": _needs("prior", "date"),
    "createDescription": _needs("alternative"),
    "deleteDescription": _needs("ordered"),
    "couldNotCheck": _needs("lines"),
    "allergyLine": _needs("agent", "evidence"),
    "kidneyCtLine": _needs("evidence"),
    "kidneyMriLine": _needs("evidence"),
    "conditionalLine": _needs("implant"),
    "cochlearLine": _needs("implant"),
    "noStudyLine": _needs(),
}

DATE_TEXTS: dict[str, frozenset[str]] = {
    "diagnosed": _needs("date"),
    "recorded": _needs("date"),
    "performed": _needs("date"),
    "performedPeriod": _needs("start", "end"),
}
