"""Gather the patient's data for one request: prefetch, or the EHR's FHIR server, and the drafts.

This is the only module that knows where data comes from. Per prefetch key:
- present (a resource or a Bundle): used;
- null: the client says there is no such data: used as empty, never fetched;
- an OperationOutcome, or absent: missing;
- a Bundle that is not the whole answer (an error OperationOutcome entry, a ``next`` link to
  pages not sent): missing too, and remembered as such: when it cannot be fetched whole, an
  optional key is "could not be read" (the card says so), never "none found".
Missing keys the reasoning uses are fetched from ``fhirServer`` when it is allow-listed. A failed
fetch of a required key (conditions, procedures) is a 412 naming keys and reasons. A failed fetch
of an optional key (devices, prior imaging) makes that key unknown, exactly as when no server may
be asked: the reasoning never assumes what unknown data would say (unknown devices never let it
call MRI safe), and every card says in one line what could not be read. So a card is produced
only from data that was read, and it says what was missing. Without an (allowed) server, missing
required keys give 412 and missing optional ones are simply unknown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from cds_service.contract.errors import InvalidRequestError, PrefetchUnavailableError
from cds_service.contract.wire import HookRequest
from cds_service.fhir.json_limits import MAX_RESOURCE_DEPTH, same_content, too_deep
from cds_service.fhir.provenance import answers_template
from cds_service.fhir.records import clean, subject_tie
from cds_service.fhir.searchset import incomplete
from cds_service.knowledge.loader import ServiceDefinition

if TYPE_CHECKING:  # the HTTP client is the caller's: the engine never imports it
    from cds_service.fhir.client import FhirFetcher

log = structlog.get_logger("cds_service.gather")
#: The reason given for a key whose Bundle answers another query than its template.
NOT_TEMPLATE = "prefetch-not-its-template"


@dataclass(frozen=True)
class PrefetchReading:
    resources: tuple[Mapping[str, Any], ...]
    #: Keys with no data: the reasoning treats them as unknown (never as "none").
    missing: tuple[str, ...]
    fetched: tuple[str, ...] = ()
    #: Optional keys whose fetch failed, with the reason: unknown too, and the card says so.
    unreadable: Mapping[str, str] = field(default_factory=dict)
    #: Keys whose Bundle's self link names another query than the template: taken as missing.
    not_template: tuple[str, ...] = ()


def _resources_of(key: str, value: Any) -> Iterator[Mapping[str, Any]] | None:
    """Yield the resources of one prefetch value; None when the value counts as missing.

    A value that is neither null nor a FHIR resource is the client's error (400), not missing
    data: guessing it away could hide a broken integration behind silence.
    """
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        raise InvalidRequestError(
            f"prefetch.{key} must be a FHIR resource or null", field=f"prefetch.{key}"
        )
    kind = value.get("resourceType")
    if kind == "OperationOutcome":
        return None
    if kind == "Bundle":
        resources = bundle_resources(value, f"prefetch.{key}")  # shape errors first (400)
        return None if incomplete(value) else iter(resources)
    return iter([value])


def bundle_resources(bundle: Mapping[str, Any], where: str) -> list[Mapping[str, Any]]:
    """The resources of a Bundle's entries. ``entry`` that is not an array is the sender's
    error (InvalidRequestError naming ``where``); an entry without a resource object, or a
    resource without a string resourceType, is passed over (the record builder counts what
    it cannot use); OperationOutcomes are not patient data."""
    entries = bundle.get("entry")
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise InvalidRequestError(f"{where}.entry must be an array", field=f"{where}.entry")
    return [
        entry["resource"]
        for entry in entries
        if isinstance(entry, dict)
        and isinstance(entry.get("resource"), dict)
        and isinstance(entry["resource"].get("resourceType"), str)
        and entry["resource"]["resourceType"] != "OperationOutcome"
    ]


def read_prefetch(
    service: ServiceDefinition,
    prefetch: Mapping[str, Any] | None,
    context: Mapping[str, Any] | None = None,
) -> PrefetchReading:
    """Split the request's prefetch into usable resources and missing keys. A Bundle whose self
    link names another query than the key's template for this ``context`` is missing too
    (``fhir.provenance``): it is not the patient's data the template asks for."""
    prefetch = prefetch or {}
    resources: list[Mapping[str, Any]] = []
    missing: list[str] = []
    not_template: list[str] = []
    partial: dict[str, str] = {}
    for key, template in service.prefetch.items():
        if key in prefetch and prefetch[key] is None:
            continue  # null: no data of that kind, nothing to fetch
        value = prefetch.get(key)
        found = _resources_of(key, value)
        if (  # another query's Bundle: not this patient's answer, complete or not
            context is not None
            and isinstance(value, dict)
            and value.get("resourceType") == "Bundle"
            and not answers_template(value, template, context)
        ):
            not_template.append(key)
            missing.append(key)
            continue
        if found is None:
            missing.append(key)
            if isinstance(value, dict) and value.get("resourceType") == "Bundle":
                partial[key] = incomplete(value) or "incomplete-searchset"
        else:
            resources.extend(found)
    if not_template:  # the keys only: a self link may carry patient identifiers
        log.warning("prefetch-not-its-template", keys=not_template)
    return PrefetchReading(tuple(resources), tuple(missing), (), partial, tuple(not_template))


def gather(
    service: ServiceDefinition, request: HookRequest, fetcher: FhirFetcher | None
) -> PrefetchReading:
    """Prefetch, completed from the FHIR server where allowed; 412 when data cannot be had."""
    reading = read_prefetch(service, request.prefetch, request.context)
    used = {*service.config.requiredPrefetch, *service.config.optionalPrefetch}
    wanted = [k for k in reading.missing if k in used]
    server = request.fhirServer
    if wanted and fetcher is not None and server and fetcher.allowed(server):
        token = request.fhirAuthorization.access_token if request.fhirAuthorization else None
        result = fetcher.fetch(
            server, {k: service.prefetch[k] for k in wanted}, request.context, token
        )
        required = {
            k: r for k, r in result.failures.items() if k in service.config.requiredPrefetch
        }
        if required:
            raise PrefetchUnavailableError(
                "Data the service needs could not be fetched from the FHIR server",
                missingPrefetch=sorted(required),
                reasons=dict(sorted(result.failures.items())),
                prefetchTemplates={k: service.prefetch[k] for k in sorted(required)},
            )
        fetched = [r for key in wanted for r in result.resources.get(key, [])]
        still_missing = tuple(k for k in reading.missing if k not in result.resources)
        partial = {k: r for k, r in reading.unreadable.items() if k not in result.resources}
        reading = PrefetchReading(
            reading.resources + tuple(fetched),
            still_missing,
            tuple(k for k in wanted if k in result.resources),
            dict(sorted({**partial, **result.failures}.items())),
            reading.not_template,
        )
    needed = [k for k in reading.missing if k in service.config.requiredPrefetch]
    if needed:
        reason = (
            "no-fhir-server"
            if not server
            else "fhir-server-not-allowed"
            if fetcher is None or not fetcher.allowed(server)
            else "not-fetched"
        )
        raise PrefetchUnavailableError(
            "Required prefetch data is missing and the service cannot fetch it",
            missingPrefetch=needed,
            reasons={
                k: NOT_TEMPLATE if k in reading.not_template else reading.unreadable.get(k, reason)
                for k in needed
            },
            prefetchTemplates={k: service.prefetch[k] for k in needed},
        )
    # An optional key sent as another query and not fetched: unknown, and the card says so
    # (with no Bundle at all it is simply unknown, as the client chose to send nothing).
    unchecked = {
        k: NOT_TEMPLATE
        for k in reading.not_template
        if k in reading.missing and k in service.config.optionalPrefetch
    }
    if unchecked:
        reading = replace(reading, unreadable={**reading.unreadable, **unchecked})
    if reading.unreadable:  # only the keys the reasoning reads: the card has a line for each
        kept = {k: r for k, r in reading.unreadable.items() if k in used}
        reading = replace(reading, unreadable=kept)
    return reading


#: Largest draft order judged, as JSON: a card's suggestions copy the draft (an update carries
#: the whole order), so a draft's size multiplies into the response. A real ServiceRequest is
#: 1-3 KB; one past this is left unjudged (say less), never copied.
MAX_DRAFT_BYTES = 32 * 1024


def _json_size(resource: Mapping[str, Any]) -> int:
    try:
        return len(orjson.dumps(resource))
    except TypeError:  # not serialisable canonically (an integer past 64 bits): too odd to judge
        return MAX_DRAFT_BYTES + 1


#: Whether a cleaned draft, filled in for the patient in context, is valid FHIR.
DraftCheck = Callable[[Mapping[str, Any], str], bool]


def draft_orders(
    draft_bundle: Mapping[str, Any],
    wanted: set[str] | None,
    patient_id: str,
    limit: int,
    is_valid: DraftCheck,
    is_wanted: Callable[[Mapping[str, Any]], bool] | None = None,
) -> list[dict[str, Any]]:
    """Return the draft ServiceRequests (all, or those named in ``wanted``), cleaned and valid.

    Tolerates what real clients send: no Bundle.type, no intent (drafts are orders), no status
    (they are drafts), no subject (it is the patient in context), ``coding: [{}]``. Other request
    types (MedicationRequest, NutritionOrder...) are ignored; selections that match no entry are
    ignored. A ServiceRequest whose subject is another patient, or cannot be tied to this one,
    is left out; so is an id sent twice with different content (contradictory: say less); the
    same draft sent twice is judged once. More than ``limit`` drafts to judge is a 400.
    ``is_wanted`` (the engine: "reads as imaging") is asked of the raw draft before the costly
    depth check, cleaning and validation, which only wanted drafts go through.
    """
    if draft_bundle.get("resourceType") not in (None, "Bundle"):
        raise InvalidRequestError(
            "context.draftOrders must be a FHIR Bundle", field="context.draftOrders"
        )
    by_id: dict[str, Mapping[str, Any]] = {}
    contradictory: set[str] = set()
    for resource in bundle_resources(draft_bundle, "context.draftOrders"):
        rid = resource.get("id")
        if resource.get("resourceType") != "ServiceRequest" or not isinstance(rid, str):
            continue
        if wanted is not None and f"ServiceRequest/{rid}" not in wanted:
            continue
        earlier = by_id.setdefault(rid, resource)
        if earlier is not resource and not same_content(earlier, resource):
            contradictory.add(rid)
    chosen = [r for rid, r in by_id.items() if rid not in contradictory]
    if len(chosen) > limit:
        raise InvalidRequestError(
            f"{len(chosen)} draft orders to judge; at most {limit} are judged per call",
            field="context.draftOrders",
        )
    orders: list[dict[str, Any]] = []
    for resource in chosen:
        if is_wanted is not None and not is_wanted(resource):
            continue
        if subject_tie(resource, patient_id) == "other":
            continue
        if too_deep(resource, MAX_RESOURCE_DEPTH) is not None:
            continue  # no real order nests so deep; cleaning it would recurse without end
        if _json_size(resource) > MAX_DRAFT_BYTES:
            continue  # copied into every suggestion about it: no real order is this large
        filled = clean(resource)
        filled.setdefault("status", "draft")
        filled.setdefault("intent", "order")
        filled.setdefault("subject", {"reference": f"Patient/{patient_id}"})
        if is_valid(filled, patient_id):
            orders.append(filled)  # cleaned already: what validated() would return
    return orders
