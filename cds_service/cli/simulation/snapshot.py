"""A patient's record as it stood when an order was placed.

A resource is in the snapshot when it entered the record (see ``export`` for the date each type
is read by) strictly before the order was authored. A resource with no date at all is in the
snapshot only where leaving it out could make a card say *more*: a Device or an
AllergyIntolerance (an implant or a contrast allergy makes the advice safer, never bolder) and
the Patient. An undated Condition, Procedure, report, study, lab result or past order is left
out (it could put a patient in scope too early). What a snapshot cannot tell, such as a status
changed after the order, is listed in the README.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from cds_service.cli.simulation.export import Row

#: Types kept when undated: leaving them out could only make the advice bolder.
UNDATED_KEPT = frozenset({"Patient", "Device", "AllergyIntolerance"})


@dataclass(frozen=True)
class Dated:
    kind: str
    at: int | None
    resource: Mapping[str, Any]


@dataclass(frozen=True)
class PlacedOrder:
    """A ServiceRequest as an order placed at ``authored`` (epoch µs)."""

    authored: int
    authored_text: str
    resource: Mapping[str, Any]


class PatientHistory:
    """One patient's resources, parsed once, from which each order's snapshot is cut."""

    def __init__(self, patient_id: str, rows: Iterable[Row]) -> None:
        self.patient_id = patient_id
        self.resources: list[Dated] = []
        self.orders: list[PlacedOrder] = []
        #: Resources left out of every snapshot because they have no date (by type).
        self.undated_left_out: dict[str, int] = defaultdict(int)
        for row in rows:
            try:
                resource = orjson.loads(row.body)
            except orjson.JSONDecodeError:  # DuckDB read it as JSON: not expected
                continue
            if not isinstance(resource, dict):
                continue
            self.resources.append(Dated(row.kind, row.at, resource))
            if row.at is None and row.kind not in UNDATED_KEPT:
                self.undated_left_out[row.kind] += 1
            if row.kind == "ServiceRequest" and row.authored is not None:
                text = resource.get("authoredOn")
                if isinstance(text, str):
                    self.orders.append(PlacedOrder(row.authored, text, resource))
        self.orders.sort(key=lambda o: o.authored)
        self.patient: Mapping[str, Any] = next(
            (d.resource for d in self.resources if d.kind == "Patient"),
            {"resourceType": "Patient", "id": patient_id},
        )

    def as_of(self, order: PlacedOrder) -> dict[str, list[Mapping[str, Any]]]:
        """The resources of each type in the record when ``order`` was placed (the order itself
        left out)."""
        found: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        for d in self.resources:
            if d.resource is order.resource or d.kind == "Patient":
                continue
            if d.at is None:
                if d.kind in UNDATED_KEPT:
                    found[d.kind].append(d.resource)
            elif d.at < order.authored:
                found[d.kind].append(d.resource)
        return found
