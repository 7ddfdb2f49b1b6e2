"""CDS Hooks 2.0 wire format as pydantic models.

Requests allow extra fields (the spec allows extensions); responses forbid them, and are
dumped with ``by_alias=True, exclude_none=True`` so no null ever leaves the service.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FhirAuthorization(_Request):
    access_token: str = Field(min_length=1)
    token_type: str = "Bearer"  # noqa: S105 - a token type name, not a secret
    expires_in: int | None = Field(default=None, ge=0, le=2_147_483_647)
    scope: str | None = None
    subject: str | None = None
    patient: str | None = None


class HookRequest(_Request):
    hook: str = Field(min_length=1)
    hookInstance: str = Field(min_length=1)
    fhirServer: str | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None

    @field_validator("fhirServer")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value


class OrderSignContext(_Request):
    """order-sign context: the draft orders about to be signed."""

    userId: str = Field(min_length=1)
    patientId: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9\-.]+$")
    encounterId: str | None = None
    draftOrders: dict[str, Any]


class OrderSelectContext(OrderSignContext):
    """order-select context: as order-sign, plus the newly selected orders."""

    selections: list[str]


class ReceivedCoding(_Request):
    system: str = Field(min_length=1)
    code: str = Field(min_length=1)
    display: str | None = None


class OverrideReason(_Request):
    reason: ReceivedCoding | None = None
    userComment: str | None = Field(default=None, max_length=4000)


class AcceptedSuggestion(_Request):
    id: str = Field(min_length=1, max_length=64)


class FeedbackItemIn(_Request):
    """One item of CDS Hooks 2.0 feedback."""

    card: str = Field(min_length=1, max_length=64)
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[AcceptedSuggestion] | None = None
    overrideReason: OverrideReason | None = None
    outcomeTimestamp: datetime

    @model_validator(mode="after")
    def _outcome_fields(self) -> FeedbackItemIn:
        if self.outcome == "accepted" and not self.acceptedSuggestions:
            raise ValueError("acceptedSuggestions is required when the outcome is accepted")
        if self.outcome == "overridden" and self.acceptedSuggestions:
            raise ValueError("acceptedSuggestions goes only with the outcome accepted")
        if self.outcome == "accepted" and self.overrideReason is not None:
            raise ValueError("overrideReason goes only with the outcome overridden")
        return self


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
