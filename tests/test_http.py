"""HTTP contract: discovery, the hook endpoint, and a clear JSON error for every bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import structlog
from flask import Flask
from flask.testing import FlaskClient

from cds_service.config import Settings
from tests.conftest import (
    HOOK_URL,
    SERVICE_ID,
    SIGN_SERVICE_ID,
    USED_PREFETCH_KEYS,
    VIEW_SERVICE_ID,
    body_of,
    build_app,
    vignette,
)

POSITIVE = "parotid_mec_after_parotidectomy_and_imrt_local_mri_neck"


def test_discovery_lists_the_services_without_private_config(client: FlaskClient) -> None:
    response = client.get("/cds-services")
    assert response.status_code == 200
    services = {s["id"]: s for s in body_of(response)["services"]}
    assert set(services) == {SERVICE_ID, SIGN_SERVICE_ID, VIEW_SERVICE_ID}
    assert services[SERVICE_ID]["hook"] == "order-select"
    assert services[SIGN_SERVICE_ID]["hook"] == "order-sign"
    assert services[VIEW_SERVICE_ID]["hook"] == "patient-view"
    for service in services.values():
        assert service["title"] and service["description"]
        assert set(service["prefetch"]) == {"patient", *USED_PREFETCH_KEYS}
        assert service["prefetch"]["conditions"] == "Condition?patient={{context.patientId}}"
        assert "_config" not in service and "config" not in service


def test_hook_answers_cards(client: FlaskClient) -> None:
    response = client.post(HOOK_URL, json=vignette(POSITIVE))
    assert response.status_code == 200
    assert response.content_type == "application/json"
    assert len(body_of(response)["cards"]) == 1


def test_no_advice_is_an_empty_card_list(client: FlaskClient) -> None:
    response = client.post(HOOK_URL, json=vignette("warthin_tumour_after_parotidectomy"))
    assert response.status_code == 200
    assert response.json == {"cards": []}


def _error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.content_type == "application/json"
    body: dict[str, Any] = response.json
    assert body["error"] and body["message"]
    return body


def test_unknown_service_is_404(client: FlaskClient) -> None:
    _error(client.post("/cds-services/nope", json=vignette(POSITIVE)), 404)


def test_unknown_path_is_404_json(client: FlaskClient) -> None:
    _error(client.get("/nowhere"), 404)


def test_wrong_method_is_405_json(client: FlaskClient) -> None:
    _error(client.get(HOOK_URL), 405)
    _error(client.delete("/cds-services"), 405)


def test_malformed_json_is_400(client: FlaskClient) -> None:
    body = _error(
        client.post(HOOK_URL, data='{"hook": "order-select",', content_type="application/json"), 400
    )
    assert "JSON" in body["message"]


def test_wrong_content_type_is_415(client: FlaskClient) -> None:
    _error(
        client.post(HOOK_URL, data=json.dumps(vignette(POSITIVE)), content_type="text/plain"), 415
    )


def test_oversized_body_is_413(client: FlaskClient) -> None:
    big = vignette(POSITIVE)
    big["padding"] = "x" * 300_000
    body = _error(client.post(HOOK_URL, json=big), 413)
    assert body["limitBytes"] == 200_000  # the app fixture's max_body_bytes
    assert "200000 bytes" in body["message"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda b: b.pop("hookInstance"), "hookInstance"),
        (lambda b: b.pop("context"), "context"),
        (lambda b: b["context"].pop("patientId"), "context.patientId"),
        (lambda b: b["context"].pop("userId"), "context.userId"),
        (lambda b: b["context"].pop("selections"), "context.selections"),
        (lambda b: b["context"].pop("draftOrders"), "context.draftOrders"),
        (lambda b: b["context"].update(selections="ServiceRequest/x"), "context.selections"),
        (lambda b: b["context"].update(patientId="../../etc"), "context.patientId"),
        (
            lambda b: b["context"].update(draftOrders={"resourceType": "Patient"}),
            "context.draftOrders",
        ),
        (lambda b: b.update(hook="patient-view"), "hook"),
        (lambda b: b.update(fhirServer="file:///etc/passwd"), "fhirServer"),
        (lambda b: b["prefetch"].update(conditions="Condition?patient=1"), "prefetch.conditions"),
        (
            lambda b: b.update(fhirAuthorization={"token_type": "Bearer"}),
            "fhirAuthorization.access_token",
        ),
    ],
)
def test_invalid_requests_name_the_field(client: FlaskClient, change: Any, field: str) -> None:
    body = vignette(POSITIVE)
    change(body)
    assert _error(client.post(HOOK_URL, json=body), 400)["field"] == field


@pytest.mark.parametrize("body", [[], "text", 3, None])
def test_non_object_bodies_are_400(client: FlaskClient, body: Any) -> None:
    _error(client.post(HOOK_URL, data=json.dumps(body), content_type="application/json"), 400)


def test_missing_required_prefetch_is_412_naming_the_keys(client: FlaskClient) -> None:
    body = vignette(POSITIVE)
    del body["prefetch"]["conditions"]
    del body["prefetch"]["procedures"]
    error = _error(client.post(HOOK_URL, json=body), 412)
    assert error["missingPrefetch"] == ["conditions", "procedures"]
    assert error["prefetchTemplates"]["procedures"] == "Procedure?patient={{context.patientId}}"


def test_no_prefetch_at_all_is_412(client: FlaskClient) -> None:
    body = vignette(POSITIVE)
    del body["prefetch"]
    assert _error(client.post(HOOK_URL, json=body), 412)["missingPrefetch"] == [
        "conditions",
        "procedures",
    ]


def test_operation_outcome_prefetch_counts_as_missing(client: FlaskClient) -> None:
    body = vignette(POSITIVE)
    body["prefetch"]["procedures"] = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "timeout"}],
    }
    assert _error(client.post(HOOK_URL, json=body), 412)["missingPrefetch"] == ["procedures"]


def test_null_prefetch_means_no_data(client: FlaskClient) -> None:
    body = vignette(POSITIVE)
    body["prefetch"]["procedures"] = None
    response = client.post(HOOK_URL, json=body)
    assert response.status_code == 200
    assert response.json == {"cards": []}  # no treatment on record: not in scope


def test_optional_prefetch_may_be_missing(client: FlaskClient) -> None:
    body = vignette(POSITIVE)
    del body["prefetch"]["patient"]
    del body["prefetch"]["serviceRequests"]
    response = client.post(HOOK_URL, json=body)
    assert response.status_code == 200 and len(body_of(response)["cards"]) == 1


def test_extensions_and_unknown_fields_are_allowed(client: FlaskClient) -> None:
    body = vignette(POSITIVE)
    body["extension"] = {"com.example.ehr": {"sessionId": "42"}}
    body["context"]["com.example.flag"] = True
    assert client.post(HOOK_URL, json=body).status_code == 200


def test_full_selection_urls_are_understood(client: FlaskClient) -> None:
    body = vignette(POSITIVE)
    body["context"]["selections"] = ["https://ehr.example.org/fhir/ServiceRequest/mri-neck-1"]
    assert len(body_of(client.post(HOOK_URL, json=body))["cards"]) == 1


def test_draft_for_another_patient_is_ignored(client: FlaskClient) -> None:
    body = vignette(POSITIVE)
    body["context"]["draftOrders"]["entry"][0]["resource"]["subject"] = {
        "reference": "Patient/someone-else"
    }
    assert client.post(HOOK_URL, json=body).json == {"cards": []}


def test_one_log_line_per_call_without_patient_data(client: FlaskClient) -> None:
    body = vignette(POSITIVE)
    with structlog.testing.capture_logs() as logs:
        client.post(HOOK_URL, json=body)
    hook_logs = [entry for entry in logs if entry["event"] == "hook"]
    assert len(hook_logs) == 1
    entry = hook_logs[0]
    assert entry["service"] == SERVICE_ID
    assert entry["hookInstance"] == body["hookInstance"]
    assert entry["cards"] == 1 and entry["status"] == 200
    flat = json.dumps(logs)
    for private in ("pt-parotid-mec", "Mucoepidermoid", "1964-07-19", "dr-okafor"):
        assert private not in flat


def test_errors_are_logged_with_their_status(client: FlaskClient) -> None:
    body = vignette(POSITIVE)
    del body["prefetch"]
    with structlog.testing.capture_logs() as logs:
        client.post(HOOK_URL, json=body)
    assert [(e["outcome"], e["status"]) for e in logs if e["event"] == "hook"] == [
        ("prefetch-unavailable", 412)
    ]


def test_a_hook_instance_that_is_not_a_uuid_is_logged_only_as_a_hash(client: FlaskClient) -> None:
    body = vignette(POSITIVE)
    body["hookInstance"] = "MRN 12345678 Jane Doe"
    with structlog.testing.capture_logs() as logs:
        client.post(HOOK_URL, json=body)
    logged = next(e["hookInstance"] for e in logs if e["event"] == "hook")
    assert logged.startswith("hmac:")
    assert "12345678" not in json.dumps(logs)


@pytest.mark.parametrize(("path", "method"), [("/cds-services", "GET"), (HOOK_URL, "POST")])
def test_cors_preflight_is_answered(client: FlaskClient, path: str, method: str) -> None:
    response = client.options(
        path,
        headers={
            "Origin": "https://sandbox.cds-hooks.org",
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] in ("*", "https://sandbox.cds-hooks.org")
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert method in response.headers["Access-Control-Allow-Methods"]


def test_cors_headers_on_answers_and_errors(client: FlaskClient) -> None:
    origin = {"Origin": "https://sandbox.cds-hooks.org"}
    ok = client.post(HOOK_URL, json=vignette(POSITIVE), headers=origin)
    error = client.post("/cds-services/nope", json={}, headers=origin)
    assert ok.headers["Access-Control-Allow-Origin"]
    assert error.status_code == 404 and error.headers["Access-Control-Allow-Origin"]


def test_production_allows_only_configured_origins() -> None:
    closed = build_app(Settings(environment="production", require_auth=False)).test_client()
    response = closed.get("/cds-services", headers={"Origin": "https://sandbox.cds-hooks.org"})
    assert "Access-Control-Allow-Origin" not in response.headers
    listed = build_app(
        Settings(
            environment="production",
            require_auth=False,
            cors_origins="https://sandbox.cds-hooks.org",
        )
    ).test_client()
    allowed = listed.get("/cds-services", headers={"Origin": "https://sandbox.cds-hooks.org"})
    refused = listed.get("/cds-services", headers={"Origin": "https://evil.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://sandbox.cds-hooks.org"
    assert "Access-Control-Allow-Origin" not in refused.headers


SIGN_URL = f"/cds-services/{SIGN_SERVICE_ID}"


def test_order_sign_needs_no_selections_and_checks_every_draft(client: FlaskClient) -> None:
    body = vignette("order_sign_mri_neck_and_ct_neck")
    assert "selections" not in body["context"]
    response = client.post(SIGN_URL, json=body)
    assert response.status_code == 200
    card, history = body_of(response)["cards"]
    [update] = card["suggestions"][0]["actions"]
    assert update["type"] == "update" and update["resource"]["id"] == "mri-neck-sign"
    # The CT neck has no reason and no card shown at signing: the one history card asks for it.
    assert history["summary"].startswith("Add the clinical history")
    assert {a["resource"]["id"] for s in history["suggestions"] for a in s["actions"]} == {
        "ct-neck-sign"
    }
    assert "extension" not in update["resource"]  # order-sign rates nothing (its _config)
    assert "systemActions" not in body_of(response)


def test_order_sign_request_sent_to_order_select_is_refused(client: FlaskClient) -> None:
    body = vignette("order_sign_mri_neck_and_ct_neck")
    assert _error(client.post(HOOK_URL, json=body), 400)["field"] == "hook"
    body["hook"] = "order-select"
    assert _error(client.post(HOOK_URL, json=body), 400)["field"] == "context.selections"


def test_order_sign_missing_draft_orders_is_400(client: FlaskClient) -> None:
    body = vignette("order_sign_mri_neck_and_ct_neck")
    del body["context"]["draftOrders"]
    assert _error(client.post(SIGN_URL, json=body), 400)["field"] == "context.draftOrders"


def test_responses_are_written_once_by_orjson_and_read_like_flasks(app: Flask) -> None:
    """Keys in the order built, text as UTF-8, dates as Flask writes them; JSON past orjson's
    limits (deep nesting) still written, by Flask's own writer."""
    import datetime

    from flask import jsonify

    with app.app_context():
        body = jsonify({"b": 1, "a": "é", "at": datetime.datetime(2026, 1, 1)}).get_data()
        assert body == '{"b":1,"a":"é","at":"Thu, 01 Jan 2026 00:00:00 GMT"}'.encode()
        deep: Any = []
        for _ in range(300):
            deep = [deep]
        assert json.loads(jsonify(deep).get_data()) == deep


def test_the_hook_instance_hash_is_keyed_and_shared_by_every_app_on_the_database(
    tmp_path: Path,
) -> None:
    """A plain sha256 of an MRN-like hookInstance was reversed by trying candidates in 0.5 s:
    the hash is an HMAC under a random key kept in the database, the same for every worker."""
    import hashlib

    from cds_service.config import Settings
    from tests.conftest import build_app

    url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    hashes = []
    for _ in range(2):
        app = build_app(Settings(environment="development", database_url=url))
        body = vignette(POSITIVE)
        body["hookInstance"] = "MRN 12345678"
        with structlog.testing.capture_logs() as logs:
            app.test_client().post(HOOK_URL, json=body)
        hashes.append(next(e["hookInstance"] for e in logs if e["event"] == "hook"))
    assert hashes[0] == hashes[1]  # one key for every app on the database
    plain = hashlib.sha256(b"MRN 12345678").hexdigest()[:16]
    assert hashes[0] != "hmac:" + plain and plain not in hashes[0]
