"""Gather the patient's data for one request: prefetch -> raw resources, and the draft orders.

This is the only module that knows where data comes from. Per prefetch key:
- present (a resource or a Bundle): used;
- null: the client says there is no data: used as empty;
- an OperationOutcome, or absent: missing. Missing required keys give 412 until the FHIR server
  fallback exists; see the README's "Prefetch" section.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from cds_service.errors import InvalidRequestError, PrefetchUnavailableError
from cds_service.knowledge import ServiceDefinition
from cds_service.records import clean, names_other_patient, validated


@dataclass(frozen=True)
class PrefetchReading:
    resources: tuple[Mapping[str, Any], ...]
    missing: tuple[str, ...]


def _resources_of(value: Any) -> Iterator[Mapping[str, Any]] | None:
    """Yield the resources of one prefetch value; None when the value counts as missing."""
    if not isinstance(value, dict):
        return None
    kind = value.get("resourceType")
    if kind == "OperationOutcome":
        return None
    if kind == "Bundle":
        return (
            entry["resource"]
            for entry in value.get("entry") or []
            if isinstance(entry, dict)
            and isinstance(entry.get("resource"), dict)
            and entry["resource"].get("resourceType") != "OperationOutcome"
        )
    if isinstance(kind, str):
        return iter([value])
    return None


def read_prefetch(
    service: ServiceDefinition, prefetch: Mapping[str, Any] | None
) -> PrefetchReading:
    """Split the request's prefetch into usable resources and missing keys."""
    prefetch = prefetch or {}
    resources: list[Mapping[str, Any]] = []
    missing: list[str] = []
    for key in service.prefetch:
        if key in prefetch and prefetch[key] is None:
            continue  # null: no data of that kind, nothing to fetch
        found = _resources_of(prefetch.get(key))
        if found is None:
            missing.append(key)
        else:
            resources.extend(found)
    return PrefetchReading(tuple(resources), tuple(missing))


def require_prefetch(service: ServiceDefinition, reading: PrefetchReading) -> None:
    """Raise 412 when data the reasoning needs is missing (no FHIR fallback yet)."""
    needed = [k for k in reading.missing if k in service.config.requiredPrefetch]
    if needed:
        raise PrefetchUnavailableError(
            "Required prefetch data is missing and the service cannot fetch it",
            missingPrefetch=needed,
            prefetchTemplates={k: service.prefetch[k] for k in needed},
        )


def draft_orders(
    draft_bundle: Mapping[str, Any], wanted: set[str] | None, patient_id: str
) -> list[dict[str, Any]]:
    """Return the draft ServiceRequests (all, or those named in ``wanted``), cleaned and valid.

    Tolerates what real clients send: no Bundle.type, no intent (drafts are orders), no status
    (they are drafts), no subject (it is the patient in context), ``coding: [{}]``. Other request
    types (MedicationRequest, NutritionOrder...) are ignored; selections that match no entry are
    ignored; a ServiceRequest that names another patient is refused as contradictory.
    """
    if draft_bundle.get("resourceType") not in (None, "Bundle"):
        raise InvalidRequestError(
            "context.draftOrders must be a FHIR Bundle", field="context.draftOrders"
        )
    orders: list[dict[str, Any]] = []
    entries = draft_bundle.get("entry") or []
    if not isinstance(entries, list):
        raise InvalidRequestError(
            "context.draftOrders.entry must be an array", field="context.draftOrders"
        )
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or resource.get("resourceType") != "ServiceRequest":
            continue
        if wanted is not None and f"ServiceRequest/{resource.get('id')}" not in wanted:
            continue
        if names_other_patient(resource, patient_id):
            continue
        filled = clean(resource)
        filled.setdefault("status", "draft")
        filled.setdefault("intent", "order")
        filled.setdefault("subject", {"reference": f"Patient/{patient_id}"})
        valid = validated(filled)
        if valid is not None:
            orders.append(valid)
    return orders
