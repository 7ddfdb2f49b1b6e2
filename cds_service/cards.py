"""Decisions -> CDS Hooks cards. Wording comes from hooks/knowledge/cards.json, never from here."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B.servicerequest import ServiceRequest

from cds_service.knowledge import CardKnowledge
from cds_service.reasoning import (
    CancerEvidence,
    Finding,
    IncompleteMriFinding,
    PostTreatmentContext,
    TreatmentEvidence,
)
from cds_service.records import PartialDate
from cds_service.wire import Action, Card, Coding, Source, Suggestion

UuidFactory = Callable[[], str]

_USER_REFERENCE = re.compile(r"^(Practitioner|PractitionerRole)/[A-Za-z0-9\-.]{1,64}$")


@dataclass(frozen=True)
class OrderingContext:
    """Who orders for whom: used to build the replacement order when the draft does not say."""

    patient_id: str
    user_id: str
    encounter_id: str | None


def _join(labels: tuple[str, ...]) -> str:
    if len(labels) <= 1:
        return "".join(labels)
    return ", ".join(labels[:-1]) + " and " + labels[-1]


def _escape(text: str) -> str:
    """Keep EHR-supplied names from being read as markdown."""
    return re.sub(r"([\\`*_{}\[\]<>#|])", r"\\\1", text)


class CardRenderer:
    """Built once per process; each render gets the request's uuid factory."""

    def __init__(self, knowledge: CardKnowledge) -> None:
        self._k = knowledge
        self._source = Source(
            label=knowledge.source.label,
            url=knowledge.source.url,
            topic=Coding(**knowledge.source.topic.model_dump()),
        )
        self._override_reasons = [Coding(**r.model_dump()) for r in knowledge.overrideReasons]

    def render(
        self,
        findings: list[Finding],
        context: PostTreatmentContext,
        ordering: OrderingContext,
        new_uuid: UuidFactory,
    ) -> list[Card]:
        return [self._incomplete_mri(f, context, ordering, new_uuid) for f in findings]

    def _date_phrase(self, date: PartialDate | None, template: str) -> str:
        return template.format(date=date.text) if date else ""

    def _cancer_line(self, cancer: CancerEvidence) -> str:
        rule = self._k.rules.incomplete_mri_protocol
        phrases = self._k.datePhrases
        condition = cancer.condition
        if condition.onset:
            date_phrase = self._date_phrase(condition.onset, phrases.diagnosed)
        else:
            date_phrase = self._date_phrase(condition.recorded, phrases.recorded)
        return rule.evidenceCondition.format(
            display=_escape(condition.display),
            code_label=cancer.code.label,
            date_phrase=date_phrase,
        )

    def _treatment_line(self, treatment: TreatmentEvidence) -> str:
        rule = self._k.rules.incomplete_mri_protocol
        phrases = self._k.datePhrases
        start, end = treatment.procedure.performed_start, treatment.procedure.performed_end
        if start and end and start != end:
            date_phrase = phrases.performedPeriod.format(start=start.text, end=end.text)
        else:
            date_phrase = self._date_phrase(end or start, phrases.performed)
        return rule.evidenceTreatment.format(
            display=_escape(treatment.procedure.display),
            code_label=treatment.code.label,
            date_phrase=date_phrase,
        )

    def evidence_markdown(self, context: PostTreatmentContext) -> str:
        rule = self._k.rules.incomplete_mri_protocol
        lines = [self._cancer_line(context.cancer)]
        lines += [self._treatment_line(t) for t in context.treatments]
        return f"**{rule.evidenceHeading}**\n\n" + "\n".join(f"- {line}" for line in lines)

    def _incomplete_mri(
        self,
        finding: IncompleteMriFinding,
        context: PostTreatmentContext,
        ordering: OrderingContext,
        new_uuid: UuidFactory,
    ) -> Card:
        rule = self._k.rules.incomplete_mri_protocol
        ordered = _escape(finding.order.order.display)
        paragraphs: list[str] = []
        if finding.missing_regions:
            paragraphs.append(
                rule.regionsProblem.format(ordered=ordered, missing=_join(finding.missing_regions))
            )
        if finding.contrast_problem:
            paragraphs.append(
                rule.contrastProblem.format(
                    ordered=ordered,
                    contrast_problem=self._k.contrastProblems[finding.contrast_problem],
                )
            )
        paragraphs += [rule.why, self.evidence_markdown(context)]
        summary = rule.summaryRegions if finding.missing_regions else rule.summaryContrast
        return Card(
            uuid=new_uuid(),
            summary=summary,
            detail="\n\n".join(paragraphs),
            indicator=rule.indicator,
            source=self._source,
            suggestions=[self._replace_suggestion(finding, context, ordering, new_uuid)],
            selectionBehavior="at-most-one",
            overrideReasons=self._override_reasons,
        )

    def recommended_order(
        self,
        finding: IncompleteMriFinding,
        context: PostTreatmentContext,
        ordering: OrderingContext,
    ) -> dict[str, Any]:
        """The full-protocol ServiceRequest that replaces the draft, valid FHIR R4."""
        draft = finding.order.order
        original = draft.resource
        order = self._k.recommendedOrder
        requester = draft.requester or (
            ordering.user_id if _USER_REFERENCE.match(ordering.user_id) else None
        )
        encounter = draft.encounter or (
            f"Encounter/{ordering.encounter_id}" if ordering.encounter_id else None
        )
        cancer = context.cancer.condition
        reasons = [r for r in original.get("reasonReference", []) if isinstance(r, dict)]
        if not any(r.get("reference") == cancer.reference for r in reasons):
            reasons.append({"reference": cancer.reference, "display": cancer.display})
        resource: dict[str, Any] = {
            "resourceType": "ServiceRequest",
            "status": "draft",
            "intent": "order",
            "code": {"coding": [c.model_dump() for c in order.coding], "text": order.text},
            "subject": {"reference": draft.subject or f"Patient/{ordering.patient_id}"},
            "reasonReference": reasons,
        }
        if encounter:
            resource["encounter"] = {"reference": encounter}
        if requester:
            resource["requester"] = {"reference": requester}
        for kept in ("priority", "reasonCode", "note", "occurrenceDateTime", "occurrencePeriod"):
            if kept in original:
                resource[kept] = original[kept]
        ServiceRequest.model_validate(resource)  # never suggest invalid FHIR
        return resource

    def _replace_suggestion(
        self,
        finding: IncompleteMriFinding,
        context: PostTreatmentContext,
        ordering: OrderingContext,
        new_uuid: UuidFactory,
    ) -> Suggestion:
        rule = self._k.rules.incomplete_mri_protocol
        return Suggestion(
            label=rule.suggestionLabel,
            uuid=new_uuid(),
            isRecommended=True,
            actions=[
                Action(
                    type="delete",
                    description=rule.deleteDescription.format(ordered=finding.order.order.display),
                    resourceId=finding.order.reference,
                ),
                Action(
                    type="create",
                    description=rule.createDescription,
                    resource=self.recommended_order(finding, context, ordering),
                ),
            ],
        )
