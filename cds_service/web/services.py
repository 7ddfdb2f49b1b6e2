"""Discovery and hook endpoints, one route keyed by service id (not one route per service)."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Collection
from typing import Any

import structlog
from flask import Blueprint, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge

from cds_service.contract.errors import CdsError, InvalidRequestError, UnsupportedMediaTypeError
from cds_service.engine import Outcome
from cds_service.web.runtime import runtime

blueprint = Blueprint("cds_services", __name__)
log = structlog.get_logger("cds_service.hook")
#: A host as a link may name it: a DNS name or an IP literal, with an optional port.
_HOST = re.compile(r"^(?:[a-z0-9.-]+|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def loggable_hook_instance(value: Any) -> str:
    """The hookInstance as logged: a UUID as sent; anything else only as a short hash.

    The spec says hookInstance is a UUID; a client that puts other text there could leak patient
    data into logs, so such a value is never written out as it is.
    """
    text = str(value)
    if _UUID.match(text):
        return text
    return "hmac:" + runtime().pseudonyms(text)  # keyed: not reversible by trying candidates


@blueprint.get("/cds-services")
def discovery() -> ResponseReturnValue:
    services = [s.discovery_entry() for s in runtime().engine.knowledge.services.values()]
    return jsonify({"services": services})


def json_body() -> Any:
    """The request's JSON: 415 if it is not JSON, 413 past the size limit (a chunked body is
    counted as it arrives: it has no Content-Length to refuse up front), 400 if it does not
    parse."""
    if not request.is_json:
        raise UnsupportedMediaTypeError("Send the request as application/json")
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is None and request.environ.get("wsgi.input_terminated"):
        raw = request.environ["wsgi.input"].read(limit + 1)
        if len(raw) > limit:
            raise RequestEntityTooLarge()
        try:
            return current_app.json.loads(raw)
        except ValueError:
            raise InvalidRequestError("The request body is not valid JSON") from None
    try:
        return request.get_json()
    except BadRequest:
        raise InvalidRequestError("The request body is not valid JSON") from None


def client_key() -> str:
    """Who is calling: a hash of the verified token's issuer ("" without authentication)."""
    issuer = g.get("cds_issuer")
    if not isinstance(issuer, str):
        return ""
    return hashlib.sha256(issuer.encode()).hexdigest()[:16]


def _record_cards(service_id: str, hook_instance: str, outcome: Outcome) -> None:
    """Remember the cards shown, for feedback, off the request path (see card_log)."""
    runtime().card_log.record(service_id, hook_instance, outcome.issued, client_key())


def public_base() -> str | None:
    """The service's public URL, under which the cards link their guidance pages: the
    configured ``CDS_PUBLIC_BASE_URL`` (behind a proxy that changes host or scheme it must be
    set: the same URL the client JWT's aud names), else the URL this request came to."""
    configured = runtime().settings.public_base_url
    if configured:
        return configured.rstrip("/")
    # request.host_url, less its IRI decoding (a card's link is a URI: an IDN host stays in
    # its ASCII form) and its cost (~30 µs, paid by every call, imaging or not). Without a
    # usable host the cards link the guidance's public text instead (no broken link).
    host = request.host.lower()
    if not host or not _HOST.match(host):
        return None
    return f"{request.scheme}://{host}"


def overridden_before(order_keys: Collection[str], minutes: int) -> set[tuple[str, str]]:
    """The cards overridden in this ordering session, from the feedback store. If the store
    cannot be read the cards are shown (as they were before it was asked), and that is logged."""
    try:
        return runtime().feedback.overridden(order_keys, minutes)
    except SQLAlchemyError as exc:
        log.warning("override-lookup-failed", error_type=type(exc).__name__)
        return set()


@blueprint.post("/cds-services/<service_id>")
def call_service(service_id: str) -> ResponseReturnValue:
    started = time.perf_counter()
    running = runtime()
    engine = running.engine
    engine.service(service_id)  # 404 before reading the body
    body = json_body()
    hook_instance = body.get("hookInstance") if isinstance(body, dict) else None
    bound = log.bind(service=service_id, hookInstance=loggable_hook_instance(hook_instance))
    try:
        fetcher = running.fetcher.for_issuer(g.get("cds_fhir_servers"))
        outcome = engine.evaluate(
            service_id,
            body,
            fetcher=fetcher,
            snooze=running.snooze,
            guidance_base=public_base(),
            overridden=overridden_before,
        )
    except CdsError as exc:
        bound.info(
            "hook",
            outcome=exc.error,
            status=exc.status,
            ms=round((time.perf_counter() - started) * 1000, 2),
        )
        raise
    if outcome.issued:  # stored as logged: a non-UUID hookInstance only as its hash
        _record_cards(service_id, loggable_hook_instance(hook_instance), outcome)
    bound.info(
        "hook",
        outcome="cards" if outcome.response.cards else "no-cards",
        status=200,
        cards=len(outcome.response.cards),
        in_scope=outcome.in_scope,
        orders_checked=outcome.orders_checked,
        no_imaging_order=outcome.no_imaging_order,
        rules=list(outcome.rules),
        snoozed=list(outcome.snoozed_rules),
        hidden_rules=list(outcome.hidden_rules),
        fetched=list(outcome.fetched),
        unreadable=dict(outcome.unreadable),
        resources_skipped=outcome.resources_skipped,
        ms=round((time.perf_counter() - started) * 1000, 2),
    )
    return jsonify(outcome.response.to_json())
