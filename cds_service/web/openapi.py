"""The OpenAPI 3.1 document of the service's endpoints.

Request and response schemas are generated from the pydantic wire models (contract.wire), so
the document cannot drift from what the service validates; ``openapi.json`` holds only what no
model describes (paths, the error body, discovery, readiness, a prefetch value). Each CDS service
gets its own path, so that each request schema names its own hook and context model.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any, Literal

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from pydantic import BaseModel

from cds_service.contract.wire import (
    SCHEMA_REF,
    CdsResponse,
    FeedbackRequest,
    HookRequest,
    OrderSelectContext,
    OrderSignContext,
    PatientViewContext,
)
from cds_service.knowledge.loader import ServiceDefinition
from cds_service.web.runtime import runtime

blueprint = Blueprint("openapi", __name__)
_TEMPLATE: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parent / "openapi.json").read_text(encoding="utf-8")
)
_GENERIC_PATH = "/cds-services/{service_id}"
_FEEDBACK_PATH = "/cds-services/{service_id}/feedback"
_CONTEXTS: dict[str, type[BaseModel]] = {
    "order-select": OrderSelectContext,
    "order-sign": OrderSignContext,
    "patient-view": PatientViewContext,
}
_MODELS: tuple[tuple[type[BaseModel], Literal["validation", "serialization"]], ...] = (
    (HookRequest, "validation"),
    (OrderSelectContext, "validation"),
    (OrderSignContext, "validation"),
    (PatientViewContext, "validation"),
    (FeedbackRequest, "validation"),
    (CdsResponse, "serialization"),
)


@cache
def model_schemas() -> dict[str, Any]:
    """Every wire model's JSON schema, and the schemas they refer to, by name."""
    schemas: dict[str, Any] = {}
    for model, mode in _MODELS:
        schema = model.model_json_schema(ref_template=SCHEMA_REF, mode=mode)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return schemas


def _name(service: ServiceDefinition) -> str:
    return "".join(part.capitalize() for part in service.id.replace(".", "-").split("-"))


def openapi_document(services: list[ServiceDefinition]) -> dict[str, Any]:
    document = copy.deepcopy(_TEMPLATE)
    generic = document["paths"].pop(_GENERIC_PATH)
    feedback = document["paths"].pop(_FEEDBACK_PATH)
    schemas = document["components"]["schemas"]
    schemas.update(copy.deepcopy(model_schemas()))
    for service in services:
        name = _name(service)
        request = copy.deepcopy(schemas["HookRequest"])
        request["properties"]["hook"] = {"type": "string", "enum": [service.hook]}
        context = _CONTEXTS[service.hook].__name__
        request["properties"]["context"] = {"$ref": SCHEMA_REF.format(model=context)}
        schemas[f"{name}Request"] = request
        operation = copy.deepcopy(generic["post"])
        operation["summary"] = service.title
        operation["operationId"] = f"call{name}"
        del operation["parameters"]
        schema_ref = {"$ref": SCHEMA_REF.format(model=f"{name}Request")}
        operation["requestBody"]["content"]["application/json"]["schema"] = schema_ref
        document["paths"][f"/cds-services/{service.id}"] = {"post": operation}
        feedback_operation = copy.deepcopy(feedback["post"])
        feedback_operation["operationId"] = f"feedback{name}"
        document["paths"][f"/cds-services/{service.id}/feedback"] = {"post": feedback_operation}
    return document


@blueprint.get("/openapi.json")
def openapi() -> ResponseReturnValue:
    services = runtime().engine.knowledge.services
    return jsonify(openapi_document(list(services.values())))
