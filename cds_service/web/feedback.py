"""POST /cds-services/{id}/feedback (CDS Hooks 2.0 "Feedback")."""

from __future__ import annotations

import time
from datetime import UTC

import structlog
from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from sqlalchemy.exc import SQLAlchemyError

from cds_service.contract.errors import InvalidRequestError, StorageUnavailableError
from cds_service.contract.wire import FeedbackItemIn, FeedbackRequest
from cds_service.fhir.json_limits import MAX_DEPTH, too_deep
from cds_service.store.storage import FeedbackItem, canonical_json
from cds_service.web.runtime import runtime
from cds_service.web.services import client_key, json_body

blueprint = Blueprint("feedback", __name__)
log = structlog.get_logger("cds_service.feedback")


def _field(err: ErrorDetails) -> str:
    """The field an error names, as the client wrote it: without the union's outcome tag that
    pydantic adds to a feedback item's path, and naming ``outcome`` when that tag is wrong."""
    loc = list(err["loc"])
    if len(loc) >= 3 and loc[0] == "feedback" and loc[2] in ("accepted", "overridden"):
        del loc[2]
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc.append("outcome")
    return ".".join(str(p) for p in loc)


def _item(received: FeedbackItemIn) -> FeedbackItem:
    reason = received.overrideReason
    timestamp = received.outcomeTimestamp
    if timestamp.tzinfo is None:
        timestamp = timestamp.replace(tzinfo=UTC)  # a naive instant is read as UTC
    return FeedbackItem(
        card_uuid=received.card,
        outcome=received.outcome,
        accepted_suggestions=tuple(s.id for s in received.acceptedSuggestions or []),
        override_system=reason.reason.system if reason and reason.reason else None,
        override_code=reason.reason.code if reason and reason.reason else None,
        override_display=reason.reason.display if reason and reason.reason else None,
        user_comment=reason.userComment if reason else None,
        outcome_timestamp=timestamp,
        raw=canonical_json(received.model_dump(mode="json", exclude_none=True)),
    )


@blueprint.post("/cds-services/<service_id>/feedback")
def feedback(service_id: str) -> ResponseReturnValue:
    started = time.perf_counter()
    running = runtime()
    running.engine.service(service_id)  # 404 for an unknown service
    body = json_body()
    deep = too_deep(body)
    if deep is not None:
        raise InvalidRequestError(f"The request nests deeper than {MAX_DEPTH} levels", field=deep)
    try:
        request = FeedbackRequest.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = _field(err) or "body"
        raise InvalidRequestError(f"{where}: {err['msg']}", field=where) from None
    running.card_log.flush()  # cards shown a moment ago are known before their feedback is stored
    try:
        result = running.feedback.store(
            service_id, [_item(i) for i in request.feedback], client_key()
        )
    except SQLAlchemyError as exc:
        log.error("feedback-not-stored", service=service_id, error_type=type(exc).__name__)
        raise StorageUnavailableError("Feedback could not be stored; send it again") from None
    log.info(
        "feedback",
        service=service_id,
        items=len(request.feedback),
        stored=result.stored,
        duplicates=result.duplicates,
        unknown_cards=result.unknown_cards,
        ms=round((time.perf_counter() - started) * 1000, 2),
    )
    return jsonify(
        {
            "stored": result.stored,
            "duplicates": result.duplicates,
            "unknownCards": result.unknown_cards,
        }
    )
