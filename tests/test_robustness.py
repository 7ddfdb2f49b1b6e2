"""Whatever a client sends, the answer is a valid CDS Hooks response or a 4xx JSON error:
never a 500. Property-based (hypothesis) and schema-based (schemathesis) checks."""

from __future__ import annotations

import copy
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import checks
from schemathesis.config import SchemathesisConfig

from cds_service.config import Settings
from cds_service.contract.wire import CdsResponse
from cds_service.web.runtime import runtime
from tests.conftest import (
    SERVICE_ID,
    SIGN_SERVICE_ID,
    build_app,
    expected_outcomes,
    json_paths,
    vignette,
)

# Built at import for schemathesis, so with its own throwaway database folder.
APP = build_app(
    Settings(
        environment="development",
        max_body_bytes=300_000,
        data_dir=Path(tempfile.mkdtemp(prefix="cds-robustness-")),
    )
)
NAMES = sorted(expected_outcomes())
BASES = {name: vignette(name) for name in NAMES}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)

# Paths whose values real clients get wrong; replaced by arbitrary JSON.
MUTABLE_PATHS: list[tuple[str, ...]] = [
    ("hook",),
    ("hookInstance",),
    ("fhirServer",),
    ("fhirAuthorization",),
    ("context",),
    ("context", "userId"),
    ("context", "patientId"),
    ("context", "encounterId"),
    ("context", "selections"),
    ("context", "draftOrders"),
    ("context", "draftOrders", "entry"),
    ("prefetch",),
    ("prefetch", "conditions"),
    ("prefetch", "procedures"),
    ("prefetch", "devices"),
    ("prefetch", "imagingStudies"),
]


def _set(body: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node: Any = body
    for key in path[:-1]:
        if not isinstance(node, dict) or not isinstance(node.get(key), dict):
            return
        node = node[key]
    if isinstance(node, dict):
        node[path[-1]] = value


@st.composite
def mutated_requests(draw: st.DrawFn) -> dict[str, Any]:
    body = copy.deepcopy(BASES[draw(st.sampled_from(NAMES))])
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        _set(body, draw(st.sampled_from(MUTABLE_PATHS)), draw(json_values))
    if draw(st.booleans()):  # odd but valid: drop optional parts
        for key in draw(st.lists(st.sampled_from(["fhirServer", "prefetch"]), max_size=2)):
            body.pop(key, None)
    # some resources inside the record or the drafts get arbitrary fields
    prefetch = body.get("prefetch")
    resource_lists = [
        [e["resource"] for e in v["entry"] if isinstance(e, dict) and "resource" in e]
        for v in (prefetch.values() if isinstance(prefetch, dict) else [])
        if isinstance(v, dict) and isinstance(v.get("entry"), list)
    ]
    flat: list[dict[str, Any]] = [r for rs in resource_lists for r in rs if isinstance(r, dict)]
    mutate_a_resource: bool = draw(st.booleans())
    if flat and mutate_a_resource:
        target = draw(st.sampled_from(flat))
        field = draw(st.sampled_from(["code", "status", "subject", "onsetDateTime", "id", "x"]))
        target[field] = draw(json_values)
    return body


def _replace(body: Any, path: tuple[Any, ...], value: Any) -> None:
    node = body
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _other_type_than(old: Any) -> Callable[[Any], bool]:
    kind = _json_type(old)
    return lambda value: _json_type(value) != kind


VIGNETTE_PATHS = {name: json_paths(body) for name, body in BASES.items()}


@st.composite
def type_mutated_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A vignette with up to three fields anywhere in it (resources, codings, extensions,
    Bundle links, the draft orders) replaced by a value of another JSON type."""
    name = draw(st.sampled_from(NAMES))
    body = copy.deepcopy(BASES[name])
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(VIGNETTE_PATHS[name]))
        try:
            old = body
            for key in path:
                if not isinstance(old, (dict, list)):
                    raise TypeError  # e.g. a string: indexable, but not a JSON container
                old = old[key]
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation replaced a parent
        new = draw(json_values.filter(_other_type_than(old)))
        _replace(body, path, new)
    return body


def _check(response: Any) -> None:
    assert response.status_code != 500
    assert response.content_type.startswith("application/json"), response.data[:200]
    body = response.get_json()
    if response.status_code == 200:
        CdsResponse.model_validate(body)
    else:
        assert 400 <= response.status_code < 500
        assert isinstance(body["error"], str) and isinstance(body["message"], str)


# 700 mutated requests here and 400 raw bodies below: over the 1,000 the issue asks for.
@settings(
    max_examples=700,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(body=mutated_requests(), service=st.sampled_from([SERVICE_ID, SIGN_SERVICE_ID, "nope"]))
def test_mutated_requests_never_break_the_service(body: dict[str, Any], service: str) -> None:
    _check(APP.test_client().post(f"/cds-services/{service}", json=body))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=type_mutated_requests())
def test_a_field_of_the_wrong_type_anywhere_never_breaks_the_service(body: dict[str, Any]) -> None:
    service = SIGN_SERVICE_ID if body.get("hook") == "order-sign" else SERVICE_ID
    _check(APP.test_client().post(f"/cds-services/{service}", json=body))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=st.one_of(
        json_values.map(json.dumps), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))
    ),
    content_type=st.sampled_from(
        [
            "application/json",
            "application/fhir+json",
            "text/plain",
            "application/x-www-form-urlencoded",
            "",
        ]
    ),
    method=st.sampled_from(["POST", "GET", "PUT", "DELETE", "PATCH"]),
)
def test_arbitrary_bodies_and_methods_get_json_errors(
    raw: str, content_type: str, method: str
) -> None:
    response = APP.test_client().open(
        f"/cds-services/{SERVICE_ID}", method=method, data=raw, content_type=content_type
    )
    _check(response)


# --- schemathesis against the served OpenAPI document ----------------------------------------

# A schema-valid hook request may still be answered 412: prefetch is optional on the wire (the
# service fetches what is missing), and CDS Hooks answers 412 when required data cannot be had.
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {"expected-statuses": ["2xx", "401", "403", "404", "412"]}
        }
    }
)
schema = schemathesis.openapi.from_wsgi("/openapi.json", APP, config=CONFIG)


# Every check but negative_data_rejection: the service deliberately tolerates some schema
# violations real clients send (e.g. odd entries in draftOrders, which it ignores).
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.positive_data_acceptance,
    checks.unsupported_method,
]


@schema.parametrize()
@settings(
    max_examples=100, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
def test_openapi_endpoints_have_no_server_errors(case: Any) -> None:
    response = case.call()
    assert response.status_code < 500
    case.validate_response(response, checks=CHECKS)


def test_openapi_document_has_a_path_per_service(app: Flask) -> None:
    document = app.test_client().get("/openapi.json").get_json()
    assert f"/cds-services/{SERVICE_ID}" in document["paths"]
    assert f"/cds-services/{SIGN_SERVICE_ID}" in document["paths"]
    assert "/cds-services/{service_id}" not in document["paths"]


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_endpoints(app: Flask, path: str) -> None:
    response = app.test_client().get(path)
    assert response.status_code == 200
    assert response.get_json()["status"] in ("ok", "ready")


def test_readiness_fails_when_a_probe_fails(app: Flask) -> None:
    runtime(app).readiness["database"] = lambda: False
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"] == {"knowledge": "ok", "database": "failing"}


def test_metrics_count_requests_by_service_and_status(app: Flask) -> None:
    client = app.test_client()
    client.post(f"/cds-services/{SERVICE_ID}", json=vignette(NAMES[0]))
    client.post("/cds-services/unknown-service", json={})
    text = client.get("/metrics").get_data(as_text=True)
    assert f'cds_requests_total{{endpoint="hook",service="{SERVICE_ID}",status="200"}} 1.0' in text
    assert 'cds_requests_total{endpoint="hook",service="-",status="404"} 1.0' in text
    assert "cds_request_duration_seconds_bucket" in text
    assert "pt-" not in text  # no patient ids in labels


def test_openapi_schemas_are_the_wire_models(app: Flask) -> None:
    """Generated, so they cannot contradict what the service validates: prefetch is optional
    (the service fetches what is missing), feedback items differ by outcome."""
    document = app.test_client().get("/openapi.json").get_json()
    schemas = document["components"]["schemas"]
    request = schemas["SalivaryPostTreatmentImagingOrderSelectRequest"]
    assert request["required"] == ["hook", "hookInstance", "context"]
    assert request["properties"]["context"] == {"$ref": "#/components/schemas/OrderSelectContext"}
    assert "selections" in schemas["OrderSelectContext"]["required"]
    assert "selections" not in schemas["OrderSignContext"]["properties"]
    assert (
        schemas["Card"]
        == CdsResponse.model_json_schema(
            ref_template="#/components/schemas/{model}", mode="serialization"
        )["$defs"]["Card"]
    )
    assert schemas["AcceptedFeedback"]["properties"]["outcome"]["const"] == "accepted"
