"""CDS Hooks 2.0 wire format as pydantic models.

Requests allow extra fields (the spec allows extensions); responses forbid them, and are
dumped with ``by_alias=True, exclude_none=True`` so no null ever leaves the service. The
OpenAPI document's request and response schemas are generated from these models
(cds_service/api/openapi.py); where a field holds free FHIR JSON that the engine reads itself,
the model declares the schema it publishes (``WithJsonSchema``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

#: Where the OpenAPI document keeps its schemas; the models' own references point there.
SCHEMA_REF = "#/components/schemas/{model}"

#: A prefetch value as published: the engine reads it itself (cds_service.fhir.gather).
_PREFETCH_VALUE_SCHEMA = {
    "type": ["object", "null"],
    "required": ["resourceType"],
    "description": (
        "A FHIR resource (a searchset Bundle for searches) or null. An OperationOutcome counts "
        "as missing data: it is fetched again, or answered with 412."
    ),
    "properties": {"resourceType": {"type": "string"}, "entry": {"type": "array", "items": {}}},
    "not": {
        "type": "object",
        "required": ["resourceType"],
        "properties": {"resourceType": {"type": "string", "enum": ["OperationOutcome"]}},
    },
}
PrefetchValue = Annotated[Any, WithJsonSchema(_PREFETCH_VALUE_SCHEMA)]
_DRAFT_ORDERS_SCHEMA = {
    "type": "object",
    "description": (
        "A FHIR Bundle of draft orders; entries that are not ServiceRequests are ignored."
    ),
    "properties": {
        "resourceType": {"type": "string", "enum": ["Bundle"]},
        "entry": {"type": "array", "items": {}},
    },
}


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: RFC 6750's b64token, the only form a Bearer token may take in a header. Anything else (a
#: newline, a non-latin-1 character) cannot be sent to the FHIR server: a 400 naming the field,
#: never a local failure counted against the server's health (or a 412 "internal-error").
_BEARER_TOKEN = r"^[A-Za-z0-9\-._~+/]+=*$"  # noqa: S105 - a pattern, not a secret


class FhirAuthorization(_Request):
    access_token: str = Field(min_length=1, max_length=8192, pattern=_BEARER_TOKEN)
    token_type: str = "Bearer"  # noqa: S105 - a token type name, not a secret
    expires_in: int | None = Field(default=None, ge=0, le=2_147_483_647)
    scope: str | None = None
    subject: str | None = None
    patient: str | None = None


class HookRequest(_Request):
    hook: str = Field(min_length=1)
    hookInstance: str = Field(min_length=1)
    #: A base URL; bounded (every distinct base is state in the breaker's memory).
    fhirServer: str | None = Field(default=None, max_length=2048, pattern=r"^https?://")
    fhirAuthorization: FhirAuthorization | None = None
    #: Validated by the hook's own context model (OrderSelectContext, OrderSignContext,
    #: PatientViewContext).
    context: dict[str, Any]
    prefetch: dict[str, PrefetchValue] | None = Field(
        default=None,
        description=(
            "Prefetched data by key (see discovery); null means no data of that kind. A key that "
            "is missing, or an OperationOutcome, is fetched from fhirServer when it is allowed; "
            "required data that cannot be had is a 412."
        ),
    )


class PatientContext(_Request):
    """What every hook's context holds: who is at the chart, for which patient."""

    userId: str = Field(min_length=1)
    patientId: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9\-.]+$")
    encounterId: str | None = None


class PatientViewContext(PatientContext):
    """patient-view context (CDS Hooks 2.0): the chart opened; no draft orders."""


class DraftOrdersContext(PatientContext):
    """What the order hooks' contexts share: who orders, for whom, and the draft orders."""

    draftOrders: Annotated[dict[str, Any], WithJsonSchema(_DRAFT_ORDERS_SCHEMA)]


class OrderSignContext(DraftOrdersContext):
    """order-sign context: the draft orders about to be signed."""


class OrderSelectContext(DraftOrdersContext):
    """order-select context: the draft orders, and which of them were just selected."""

    selections: list[str]


#: Text the feedback store keeps as it is: no NUL character (PostgreSQL text cannot hold one;
#: refusing it keeps both databases answering alike, a 400 naming the field).
_NO_NUL = r"^[^\x00]*$"


class ReceivedCoding(_Request):
    """A coding the client sends back (an override reason): bounded as the store keeps it."""

    system: str = Field(min_length=1, max_length=256, pattern=_NO_NUL)
    code: str = Field(min_length=1, max_length=128, pattern=_NO_NUL)
    display: str | None = Field(default=None, max_length=1024, pattern=_NO_NUL)


class OverrideReason(_Request):
    reason: ReceivedCoding | None = None
    userComment: str | None = Field(default=None, max_length=4000, pattern=_NO_NUL)


class AcceptedSuggestion(_Request):
    id: str = Field(min_length=1, max_length=64)


class AcceptedFeedback(_Request):
    """CDS Hooks 2.0 feedback: a card whose suggestions the clinician took."""

    card: str = Field(min_length=1, max_length=64, pattern=_NO_NUL)
    outcome: Literal["accepted"]
    acceptedSuggestions: list[AcceptedSuggestion] = Field(min_length=1)
    overrideReason: None = None
    outcomeTimestamp: datetime


class OverriddenFeedback(_Request):
    """CDS Hooks 2.0 feedback: a card the clinician dismissed, maybe with a reason."""

    card: str = Field(min_length=1, max_length=64, pattern=_NO_NUL)
    outcome: Literal["overridden"]
    acceptedSuggestions: list[AcceptedSuggestion] | None = Field(default=None, max_length=0)
    overrideReason: OverrideReason | None = None
    outcomeTimestamp: datetime


#: One feedback item: which fields it may carry depends on its outcome.
FeedbackItemIn = Annotated[AcceptedFeedback | OverriddenFeedback, Field(discriminator="outcome")]


class FeedbackRequest(_Request):
    feedback: list[FeedbackItemIn] = Field(min_length=1, max_length=1000)


class Coding(_Response):
    system: str
    code: str
    display: str | None = None


class Source(_Response):
    label: str = Field(min_length=1)
    url: str | None = None
    topic: Coding | None = None


class Action(_Response):
    type: Literal["create", "update", "delete"]
    description: str = Field(min_length=1)
    resource: dict[str, Any] | None = None
    resourceId: str | None = None

    @model_validator(mode="after")
    def _resource_or_id(self) -> Action:
        if self.type == "delete" and not self.resourceId:
            raise ValueError("a delete action names its resourceId")
        if self.type != "delete" and not self.resource:
            raise ValueError(f"a {self.type} action carries its resource")
        return self


class Suggestion(_Response):
    label: str = Field(min_length=1)
    uuid: str
    isRecommended: bool | None = None
    actions: list[Action] = Field(min_length=1)


class Link(_Response):
    label: str
    url: str
    type: Literal["absolute", "smart"]


class Card(_Response):
    uuid: str
    summary: str = Field(min_length=1, max_length=139)
    detail: str | None = None
    indicator: Literal["info", "warning", "critical"]
    source: Source
    suggestions: list[Suggestion] | None = Field(default=None, min_length=1)
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    overrideReasons: list[Coding] | None = Field(default=None, min_length=1)
    links: list[Link] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _selection_behavior_with_suggestions(self) -> Card:
        if self.suggestions and not self.selectionBehavior:
            raise ValueError("selectionBehavior is required when suggestions are present")
        if self.overrideReasons and any(not r.display for r in self.overrideReasons):
            raise ValueError("every override reason needs a display")
        return self


class CdsResponse(_Response):
    cards: list[Card]
    systemActions: list[Action] | None = Field(default=None, min_length=1)
    extension: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)
