"""Advice -> CDS Hooks cards, suggestions and system actions.

Wording comes from hooks/knowledge/cards.json; this module only assembles it. Every order the
service suggests (created, or updated in place) carries the cancer Condition as its reason, and,
when the draft had no reason, a clinical-history note for the radiologist.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cds_service.codesystems import CPT
from cds_service.guidance import (
    CtNeck,
    IncompleteMri,
    MriContraindicated,
    OrderAdvice,
    PatientSituation,
    PetTooEarly,
    UsLimited,
)
from cds_service.knowledge import CardKnowledge, OrderKey, RatedProcedure, RatingKnowledge
from cds_service.orders import ImagingOrder
from cds_service.reasoning import CancerEvidence, PostTreatmentContext, TreatmentEvidence
from cds_service.records import OrderFact, PartialDate
from cds_service.wire import Action, Card, Coding, Source, Suggestion

UuidFactory = Callable[[], str]

PAMA_EXTENSION = "http://fhir.org/argonaut/Extension/pama-rating"
PAMA_CODESYSTEM = "http://fhir.org/argonaut/CodeSystem/pama-rating"
INDICATOR_RANK = {"info": 0, "warning": 1, "critical": 2}
_USER_REFERENCE = re.compile(r"^(Practitioner|PractitionerRole)/[A-Za-z0-9\-.]{1,64}$")


@dataclass(frozen=True)
class OrderingContext:
    """Who orders for whom: used to build suggested orders when the draft does not say."""

    patient_id: str
    user_id: str
    encounter_id: str | None


@dataclass(frozen=True)
class _Rendered:
    summary: str
    paragraphs: list[str]
    suggestions: list[Suggestion]


def _join(labels: tuple[str, ...]) -> str:
    if len(labels) <= 1:
        return "".join(labels)
    return ", ".join(labels[:-1]) + " and " + labels[-1]


def _escape(text: str) -> str:
    """Keep EHR-supplied names from being read as markdown."""
    return re.sub(r"([\\`*_{}\[\]<>#|])", r"\\\1", text)


class CardRenderer:
    """Built once per process; each render gets the request's uuid factory."""

    def __init__(self, knowledge: CardKnowledge, ratings: RatingKnowledge) -> None:
        self._k = knowledge
        self._ratings = ratings
        self._source = Source(
            label=knowledge.source.label,
            url=knowledge.source.url,
            topic=Coding(**knowledge.source.topic.model_dump()),
        )
        self._override_reasons = {
            rule_id: [Coding(**r.model_dump()) for r in knowledge.override_reasons(rule_id)]
            for rule_id in knowledge.rules
        }

    # --- public ---------------------------------------------------------------------------

    def render(
        self,
        advice: list[OrderAdvice],
        situation: PatientSituation,
        ordering: OrderingContext,
        new_uuid: UuidFactory,
        minimum_indicator: str = "info",
    ) -> list[tuple[str, Card]]:
        """(rule id, card) for each advice at or above ``minimum_indicator``."""
        floor = INDICATOR_RANK[minimum_indicator]
        rendered = []
        for a in advice:
            card = self._card(a, situation, ordering, new_uuid)
            if INDICATOR_RANK[card.indicator] >= floor and a.rule_id is not None:
                rendered.append((a.rule_id, card))
        return rendered

    def pama_action(self, order: ImagingOrder, rated: RatedProcedure | None) -> Action | None:
        """The Argonaut PAMA rating as an update of a CPT-coded draft (sandbox PAMA view)."""
        draft = order.draft
        if not any(c.system == CPT for c in draft.codes):
            return None
        rating = rated.pama if rated is not None else self._ratings.pamaNoCriteria
        resource = copy.deepcopy(dict(draft.resource))
        extensions = [e for e in resource.get("extension", []) if e.get("url") != PAMA_EXTENSION]
        extensions.append(
            {
                "url": PAMA_EXTENSION,
                "valueCodeableConcept": {"coding": [{"system": PAMA_CODESYSTEM, "code": rating}]},
            }
        )
        resource["extension"] = extensions
        return Action(
            type="update",
            description=f"Record the ACR appropriateness rating on the order: {rating}",
            resource=resource,
        )

    # --- one card ---------------------------------------------------------------------------

    def _card(
        self,
        advice: OrderAdvice,
        situation: PatientSituation,
        ordering: OrderingContext,
        new_uuid: UuidFactory,
    ) -> Card:
        rule_id = advice.rule_id
        assert rule_id is not None  # advice exists only when something is to be said
        rule = self._k.rules[rule_id]
        build = _Builder(self._k, advice, situation, ordering, new_uuid)
        primary = advice.primary
        if isinstance(primary, MriContraindicated):
            rendered = build.mri_contraindicated(primary)
        elif isinstance(primary, IncompleteMri):
            rendered = build.incomplete_mri(primary)
        elif isinstance(primary, CtNeck):
            rendered = build.ct_neck(primary)
        elif isinstance(primary, PetTooEarly):
            rendered = build.pet_too_early(primary)
        elif isinstance(primary, UsLimited):
            rendered = build.us_limited()
        else:
            rendered = build.history_only()
        suggestions = rendered.suggestions
        if primary is not None and advice.missing_history:
            rendered.paragraphs.insert(1, self._k.rules["missing-clinical-history"].texts["folded"])
            if not any(_touches(s, advice.order.reference, ("update",)) for s in suggestions):
                suggestions = [*suggestions, build.history_update(recommended=False)]
        paragraphs = [
            *rendered.paragraphs,
            self._ratings_table(advice.rated),
            *([build.prior_markdown()] if situation.latest_prior else []),
            self._evidence_markdown(situation.context),
        ]
        return Card(
            uuid=new_uuid(),
            summary=rendered.summary,
            detail="\n\n".join(paragraphs),
            indicator=rule.indicator,
            source=self._source,
            suggestions=suggestions,
            selectionBehavior=_selection_behavior(suggestions, advice.order.reference),
            overrideReasons=self._override_reasons[rule_id],
        )

    def _ratings_table(self, rated: RatedProcedure | None) -> str:
        common = self._k.common
        rows = [common["ratingsColumns"], "|---|---|---|"]
        for procedure in self._ratings.procedures:
            name = procedure.name
            if rated is not None and procedure.id == rated.id:
                name = "**" + common["orderedMark"].format(name=name) + "**"
            rows.append(f"| {name} | {procedure.category} | {procedure.radiation} |")
        return f"**{common['ratingsHeading']}**\n\n" + "\n".join(rows)

    def _evidence_markdown(self, context: PostTreatmentContext) -> str:
        common = self._k.common
        lines = [self._cancer_line(context.cancer)]
        lines += [self._treatment_line(t) for t in context.treatments]
        return f"**{common['evidenceHeading']}**\n\n" + "\n".join(f"- {line}" for line in lines)

    def _cancer_line(self, cancer: CancerEvidence) -> str:
        return self._k.common["evidenceCondition"].format(
            display=_escape(cancer.display),
            code_label=cancer.code.label,
            date_phrase=cancer_date_phrase(self._k, cancer),
        )

    def _treatment_line(self, treatment: TreatmentEvidence) -> str:
        return self._k.common["evidenceTreatment"].format(
            display=_escape(treatment.display),
            code_label=treatment.code.label,
            date_phrase=treatment_date_phrase(self._k, treatment),
        )


def cancer_date_phrase(k: CardKnowledge, cancer: CancerEvidence) -> str:
    condition = cancer.condition
    if condition.onset:
        return k.datePhrases.diagnosed.format(date=condition.onset.text)
    if condition.recorded:
        return k.datePhrases.recorded.format(date=condition.recorded.text)
    return ""


def treatment_date_phrase(k: CardKnowledge, treatment: TreatmentEvidence) -> str:
    start, end = treatment.procedure.performed_start, treatment.procedure.performed_end
    if start and end and start != end:
        return k.datePhrases.performedPeriod.format(start=start.text, end=end.text)
    single: PartialDate | None = end or start
    return k.datePhrases.performed.format(date=single.text) if single else ""


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
        advice: OrderAdvice,
        situation: PatientSituation,
        ordering: OrderingContext,
        new_uuid: UuidFactory,
    ) -> None:
        self.k = k
        self.advice = advice
        self.draft: OrderFact = advice.order.draft
        self.situation = situation
        self.ordering = ordering
        self.new_uuid = new_uuid
        self.ordered = _escape(self.draft.display)

    # history and orders -----------------------------------------------------------------

    def history_note(self) -> str:
        common = self.k.common
        context = self.situation.context
        treatments = "; ".join(
            common["historyTreatment"].format(
                display=t.display, date_phrase=treatment_date_phrase(self.k, t)
            )
            for t in context.treatments
        )
        prior = ""
        if self.situation.latest_prior:
            fact = self.situation.latest_prior.fact
            prior = common["historyPrior"].format(
                prior=fact.display, date=fact.date.text if fact.date else "date unknown"
            )
        return common["historyNote"].format(
            cancer=context.cancer.display,
            code_label=context.cancer.code.label,
            date_phrase=cancer_date_phrase(self.k, context.cancer),
            treatments=treatments,
            prior=prior,
        )

    def _with_history(self, resource: dict[str, Any]) -> dict[str, Any]:
        cancer = self.situation.context.cancer.condition
        reasons = [r for r in resource.get("reasonReference", []) if isinstance(r, dict)]
        if not any(r.get("reference") == cancer.reference for r in reasons):
            reasons.append(
                {"reference": cancer.reference, "display": self.situation.context.cancer.display}
            )
        resource["reasonReference"] = reasons
        if not self.draft.has_reason:
            notes = [n for n in resource.get("note", []) if isinstance(n, dict)]
            resource["note"] = [*notes, {"text": self.history_note()}]
        # Built from a validated draft and coded templates: tests/test_cards.py validates every
        # suggested resource of every vignette with fhir.resources (40 µs a call saved here).
        return resource

    def new_order(self, key: OrderKey) -> dict[str, Any]:
        """A new ServiceRequest for ``key``, for the same patient, encounter and requester."""
        template = self.k.orders[key]
        original = self.draft.resource
        requester = self.draft.requester or (
            self.ordering.user_id if _USER_REFERENCE.match(self.ordering.user_id) else None
        )
        encounter = self.draft.encounter or (
            f"Encounter/{self.ordering.encounter_id}" if self.ordering.encounter_id else None
        )
        resource: dict[str, Any] = {
            "resourceType": "ServiceRequest",
            "status": "draft",
            "intent": "order",
            "code": {"coding": [c.model_dump() for c in template.coding], "text": template.text},
            "subject": {"reference": self.draft.subject or f"Patient/{self.ordering.patient_id}"},
        }
        if encounter:
            resource["encounter"] = {"reference": encounter}
        if requester:
            resource["requester"] = {"reference": requester}
        for kept in ("priority", "reasonCode", "reasonReference", "note"):
            if kept in original:
                resource[kept] = copy.deepcopy(original[kept])
        return self._with_history(resource)

    def updated_draft(self, **changes: Any) -> dict[str, Any]:
        resource = copy.deepcopy(dict(self.draft.resource))
        resource.update(changes)
        return self._with_history(resource)

    # suggestions --------------------------------------------------------------------------

    def replace(self, label: str, key: OrderKey, recommended: bool) -> Suggestion:
        return Suggestion(
            label=label,
            uuid=self.new_uuid(),
            isRecommended=recommended,
            actions=[
                Action(
                    type="delete",
                    description=self.k.common["deleteDescription"].format(
                        ordered=self.draft.display
                    ),
                    resourceId=self.draft.reference,
                ),
                self._create(key),
            ],
        )

    def add(self, label: str, key: OrderKey) -> Suggestion:
        return Suggestion(
            label=label, uuid=self.new_uuid(), isRecommended=False, actions=[self._create(key)]
        )

    def _create(self, key: OrderKey) -> Action:
        return Action(
            type="create",
            description=self.k.common["createDescription"].format(
                alternative=self.k.orders[key].text
            ),
            resource=self.new_order(key),
        )

    def history_update(self, recommended: bool) -> Suggestion:
        texts = self.k.rules["missing-clinical-history"].texts
        return Suggestion(
            label=texts["suggestionLabel"],
            uuid=self.new_uuid(),
            isRecommended=recommended,
            actions=[
                Action(
                    type="update",
                    description=texts["updateDescription"],
                    resource=self.updated_draft(),
                )
            ],
        )

    def alternative(self) -> OrderKey:
        """MRI where nothing on record contraindicates it; else CT neck with IV contrast."""
        return "ct-neck-with-contrast" if self.situation.implant else "mri-protocol"

    def prior_markdown(self) -> str:
        assert self.situation.latest_prior is not None
        fact = self.situation.latest_prior.fact
        return self.k.common["priorComparison"].format(
            prior=_escape(fact.display), date=fact.date.text if fact.date else "date unknown"
        )

    # rules ---------------------------------------------------------------------------------

    def mri_contraindicated(self, finding: MriContraindicated) -> _Rendered:
        rule = self.k.rules[finding.rule_id]
        return _Rendered(
            rule.summary,
            [rule.texts["problem"].format(implant=_escape(finding.implant.display))],
            [self.replace(rule.texts["suggestionLabel"], "ct-neck-with-contrast", True)],
        )

    def incomplete_mri(self, finding: IncompleteMri) -> _Rendered:
        rule = self.k.rules[finding.rule_id]
        texts = rule.texts
        paragraphs: list[str] = []
        if finding.missing_regions:
            paragraphs.append(
                texts["regionsProblem"].format(
                    ordered=self.ordered, missing=_join(finding.missing_regions)
                )
            )
        if finding.contrast_problem:
            paragraphs.append(
                texts["contrastProblem"].format(
                    ordered=self.ordered,
                    contrast_problem=self.k.contrastProblems[finding.contrast_problem],
                )
            )
        paragraphs.append(texts["why"])
        summary = rule.summary if finding.missing_regions else texts["summaryContrast"]
        return _Rendered(
            summary, paragraphs, [self.replace(texts["suggestionLabel"], "mri-protocol", True)]
        )

    def ct_neck(self, finding: CtNeck) -> _Rendered:
        rule = self.k.rules[finding.rule_id]
        texts = rule.texts
        paragraphs = [texts["problem"].format(ordered=self.ordered)]
        if finding.rule_id == "ct-neck-mri-preferred":
            suggestion = self.replace(texts["suggestionLabel"], "mri-protocol", False)
            return _Rendered(rule.summary, paragraphs, [suggestion])
        mri_first = self.situation.mri_possible
        suggestions = [
            self.replace(texts["ctSuggestionLabel"], "ct-neck-with-contrast", not mri_first)
        ]
        if self.situation.implant is None:
            suggestions.append(self.replace(texts["mriSuggestionLabel"], "mri-protocol", mri_first))
        return _Rendered(rule.summary, paragraphs, suggestions)

    def pet_too_early(self, finding: PetTooEarly) -> _Rendered:
        rule = self.k.rules[finding.rule_id]
        texts = rule.texts
        earliest = finding.earliest.isoformat()
        paragraphs = [
            texts["problem"].format(
                ordered=self.ordered,
                rt_end=finding.radiotherapy_end.text,
                scan_date=finding.scan_date.isoformat(),
                days=finding.days,
                weeks=finding.days // 7,
                min_weeks=finding.minimum_weeks,
                earliest=earliest,
            )
        ]
        defer = Suggestion(
            label=texts["deferLabel"].format(earliest=earliest),
            uuid=self.new_uuid(),
            isRecommended=False,
            actions=[
                Action(
                    type="update",
                    description=texts["deferDescription"].format(earliest=earliest),
                    resource=self.updated_draft(occurrenceDateTime=earliest),
                )
            ],
        )
        key = self.alternative()
        instead = self.replace(
            texts["alternativeLabel"].format(alternative=self.k.orders[key].text), key, False
        )
        return _Rendered(rule.summary, paragraphs, [defer, instead])

    def us_limited(self) -> _Rendered:
        rule = self.k.rules["us-limited"]
        key = self.alternative()
        label = rule.texts["suggestionLabel"].format(alternative=self.k.orders[key].text)
        summary = rule.summary
        return _Rendered(
            summary, [rule.texts["problem"].format(ordered=self.ordered)], [self.add(label, key)]
        )

    def history_only(self) -> _Rendered:
        rule = self.k.rules["missing-clinical-history"]
        return _Rendered(
            rule.summary,
            [rule.texts["problem"].format(ordered=self.ordered)],
            [self.history_update(recommended=True)],
        )
