"""The OpenAPI 3 document of the service's endpoints: one path per CDS service, so that each
request schema names its own hook (and order-select its required selections)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from cds_service.knowledge import ServiceDefinition
from cds_service.runtime import runtime

blueprint = Blueprint("openapi", __name__)
_TEMPLATE: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parent.parent / "openapi.json").read_text(encoding="utf-8")
)
_GENERIC_PATH = "/cds-services/{service_id}"
_FEEDBACK_PATH = "/cds-services/{service_id}/feedback"


def openapi_document(services: list[ServiceDefinition]) -> dict[str, Any]:
    document = copy.deepcopy(_TEMPLATE)
    generic = document["paths"].pop(_GENERIC_PATH)
    feedback = document["paths"].pop(_FEEDBACK_PATH)
    schemas = document["components"]["schemas"]
    for service in services:
        name = "".join(part.capitalize() for part in service.id.replace(".", "-").split("-"))
        request = copy.deepcopy(schemas["HookRequest"])
        request["properties"]["hook"] = {"type": "string", "enum": [service.hook]}
        if service.hook == "order-select":
            request["properties"]["context"]["required"].append("selections")
        schemas[f"{name}Request"] = request
        operation = copy.deepcopy(generic["post"])
        operation["summary"] = service.title
        operation["operationId"] = f"call{name}"
        del operation["parameters"]
        schema_ref = {"$ref": f"#/components/schemas/{name}Request"}
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
