"""One CDS Hooks call, from parsed request to response, without HTTP or network.

The same engine serves the Flask endpoint, the replay command and the tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from cds_service.cards import CardRenderer, OrderingContext, UuidFactory
from cds_service.errors import InvalidRequestError, UnknownServiceError
from cds_service.fhir_data import draft_orders, read_prefetch, require_prefetch
from cds_service.knowledge import Knowledge, ServiceDefinition
from cds_service.orders import OrderClassifier
from cds_service.reasoning import find_post_treatment_context, guidance
from cds_service.records import build_record, order_fact
from cds_service.wire import CdsResponse, HookRequest, OrderSelectContext


def random_uuid() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Outcome:
    """The response and what the log line needs (no patient data)."""

    response: CdsResponse
    in_scope: bool
    orders_checked: int
    resources_skipped: int


def _first_error(exc: ValidationError, prefix: str) -> InvalidRequestError:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
    return InvalidRequestError(f"{where}: {err['msg']}", field=where)


def parse_request(service: ServiceDefinition, body: Any) -> tuple[HookRequest, OrderSelectContext]:
    """Validate the wire request for ``service``; raise InvalidRequestError naming the field."""
    if not isinstance(body, dict):
        raise InvalidRequestError("The request body must be a JSON object")
    try:
        request = HookRequest.model_validate(body)
    except ValidationError as exc:
        raise _first_error(exc, "") from exc
    if request.hook != service.hook:
        raise InvalidRequestError(
            f"hook is {request.hook!r} but service {service.id} answers {service.hook!r}",
            field="hook",
        )
    try:
        context = OrderSelectContext.model_validate(request.context)
    except ValidationError as exc:
        raise _first_error(exc, "context") from exc
    return request, context


class Engine:
    """Holds the validated knowledge and the precompiled readers built from it."""

    def __init__(self, knowledge: Knowledge) -> None:
        self.knowledge = knowledge
        self.classifier = OrderClassifier(knowledge.imaging)
        self.renderer = CardRenderer(knowledge.cards)

    def service(self, service_id: str) -> ServiceDefinition:
        try:
            return self.knowledge.services[service_id]
        except KeyError:
            raise UnknownServiceError(f"No CDS service with id {service_id!r}") from None

    def evaluate(self, service_id: str, body: Any, new_uuid: UuidFactory = random_uuid) -> Outcome:
        service = self.service(service_id)
        request, context = parse_request(service, body)
        reading = read_prefetch(service, request.prefetch)
        require_prefetch(service, reading)
        return self.decide(service, context, reading.resources, new_uuid)

    def decide(
        self,
        service: ServiceDefinition,
        context: OrderSelectContext,
        resources: tuple[Mapping[str, Any], ...],
        new_uuid: UuidFactory = random_uuid,
    ) -> Outcome:
        wanted = (
            {"/".join(s.split("/")[-2:]) for s in context.selections}
            if service.config.ordersToCheck == "selections"
            else None
        )
        known = self.classifier.known_systems
        drafts = draft_orders(context.draftOrders, wanted, context.patientId)
        orders = [
            o for d in drafts if (o := self.classifier.classify(order_fact(d, known))) is not None
        ]
        record = build_record(context.patientId, resources, known)
        if not orders:
            return Outcome(CdsResponse(cards=[]), False, 0, record.skipped)
        clinical = find_post_treatment_context(record, self.knowledge.valuesets)
        findings = guidance(clinical, orders, self.knowledge.imaging.recommendedProtocol)
        cards = []
        if clinical is not None and findings:
            ordering = OrderingContext(context.patientId, context.userId, context.encounterId)
            cards = self.renderer.render(findings, clinical, ordering, new_uuid)
        return Outcome(CdsResponse(cards=cards), clinical is not None, len(orders), record.skipped)
