"""Each order of a patient's history through the engine, as order-select would have seen it.

The request is the one the EHR would have sent when the clinician selected the order: the
order as a draft in ``draftOrders`` and selected, every prefetch key filled from the snapshot
of the record at that instant (``fhir.build`` makes the Bundles, as for the vignettes), and the
engine's "today" the order's own date. Non-imaging orders are counted and not sent.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from cds_service.cli.simulation.snapshot import PatientHistory, PlacedOrder
from cds_service.contract.errors import CdsError
from cds_service.engine import CdsEngine
from cds_service.fhir import build as fb
from cds_service.fhir.records import order_fact
from cds_service.knowledge.loader import ServiceDefinition

_TEMPLATE_TYPE = re.compile(r"^([A-Za-z]+)")
#: Orders that never were (FHIR: "entered in error"): not counted as placed.
_NOT_PLACED = frozenset({"entered-in-error"})


@dataclass(frozen=True)
class CardOutcome:
    rule: str
    indicator: str
    summary: str
    #: False for a rule in silent mode at the site: decided, not shown.
    shown: bool
    suggestion_kinds: tuple[str, ...]


@dataclass(frozen=True)
class OrderOutcome:
    """What the engine said about one order (patient and order ids for the per-order file
    only; the aggregate never keeps them)."""

    patient_id: str
    order_id: str
    authored: str
    name: str
    imaging: bool
    #: Read as imaging but with no body region the reader could tell.
    region_unread: bool = False
    in_scope: bool = False
    cards: tuple[CardOutcome, ...] = ()
    #: The engine refused the request (its error code), or the order was not judged.
    error: str = ""

    @property
    def month(self) -> str:
        return self.authored[:7]


def order_name(order: Mapping[str, Any]) -> str:
    """The orderable's name as the EHR shows it: code.text, else the first coding display."""
    code = order.get("code")
    if isinstance(code, dict):
        if isinstance(code.get("text"), str) and code["text"].strip():
            return str(code["text"]).strip()
        for c in code.get("coding") or []:
            if isinstance(c, dict) and isinstance(c.get("display"), str):
                return str(c["display"]).strip()
            if isinstance(c, dict) and isinstance(c.get("code"), str):
                return f"{c.get('system', '')}|{c['code']}"
    return "(no name)"


def _counter() -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: f"00000000-0000-4000-8000-{next(numbers):012d}"


class Simulator:
    """Runs each order of a patient through one order-select service of the engine."""

    def __init__(self, engine: CdsEngine, service_id: str | None = None) -> None:
        self.engine = engine
        services = engine.knowledge.services
        self.service: ServiceDefinition = engine.service(
            service_id or next(s.id for s in services.values() if s.hook == "order-select")
        )
        self._calls = itertools.count(1)
        self._keys = {
            key: m.group(1)
            for key, template in self.service.prefetch.items()
            if "?" in template and (m := _TEMPLATE_TYPE.match(template))
        }

    def orders(
        self, history: PatientHistory, since: int | None = None, until: int | None = None
    ) -> Iterator[OrderOutcome]:
        """Every order of the patient authored in [since, until) (epoch µs), in time order."""
        for order in history.orders:
            if since is not None and order.authored < since:
                continue
            if until is not None and order.authored >= until:
                continue
            if order.resource.get("status") in _NOT_PLACED:
                continue
            yield self.judge(history, order)

    def request(self, history: PatientHistory, order: PlacedOrder) -> dict[str, Any]:
        """The order-select request the EHR would have sent when the order was selected."""
        pid = history.patient_id
        draft = dict(order.resource)
        draft["status"] = "draft"  # as it was when selected
        draft["subject"] = {"reference": f"Patient/{pid}"}
        snapshot = history.as_of(order)
        prefetch: dict[str, Any] = {"patient": history.patient}
        for key, kind in self._keys.items():
            prefetch[key] = fb.searchset(snapshot.get(kind, []), base=None)
        requester = draft.get("requester")
        user = "Practitioner/simulate"
        if isinstance(requester, dict) and isinstance(requester.get("reference"), str):
            user = requester["reference"]
        return fb.hook_request(
            self.service.hook,
            pid,
            [draft],
            prefetch,
            selections=[f"ServiceRequest/{draft.get('id')}"],
            user=user,
            encounter=None,
            # a number, not the patient: nothing of the request should name them needlessly
            hook_instance=f"00000000-0000-4000-9000-{next(self._calls):012d}",
            fhir_server=None,
        )

    def judge(self, history: PatientHistory, order: PlacedOrder) -> OrderOutcome:
        resource = order.resource
        base = OrderOutcome(
            history.patient_id,
            str(resource.get("id", "")),
            order.authored_text,
            order_name(resource),
            imaging=False,
        )
        reading = self.engine.classifier.classify(
            order_fact(resource, self.engine.classifier.known_systems)
        )
        if reading is None:
            return base
        region_unread = not reading.reading.regions_known
        if not isinstance(resource.get("id"), str):
            return _with(base, imaging=True, region_unread=region_unread, error="no-order-id")
        try:
            today = date.fromisoformat(order.authored_text[:10])
        except ValueError:
            return _with(base, imaging=True, region_unread=region_unread, error="bad-date")
        try:
            outcome = self.engine.evaluate(
                self.service.id, self.request(history, order), _counter(), today
            )
        except CdsError as exc:
            return _with(base, imaging=True, region_unread=region_unread, error=exc.error)
        if outcome.orders_checked == 0:  # the engine found the draft invalid FHIR
            return _with(base, imaging=True, region_unread=region_unread, error="invalid-order")
        texts = {c.uuid: c for c in outcome.response.cards}
        cards = tuple(
            CardOutcome(
                str(i.rule_id),
                texts[i.card_uuid].indicator if i.card_uuid in texts else "",
                texts[i.card_uuid].summary if i.card_uuid in texts else "",
                i.shown,
                i.suggestion_kinds,
            )
            for i in outcome.issued
        )
        return _with(
            base, imaging=True, region_unread=region_unread, in_scope=outcome.in_scope, cards=cards
        )


def _with(base: OrderOutcome, **changes: Any) -> OrderOutcome:
    return replace(base, **changes)
