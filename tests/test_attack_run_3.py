"""The third attack run (issue 26), each finding reproduced against the fix: the allow-list
bypassed with ``..;`` and double encoding, cookies and environment credentials shared between
callers, a breaker any one caller could open, an incomplete searchset read as "none found"."""

from __future__ import annotations

import copy
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from cds_service.config import Settings
from cds_service.fhir.allowlist import AllowList
from cds_service.fhir.circuit import CircuitBreakers
from cds_service.fhir.client import FetchLimits, FhirFetcher
from tests.conftest import HOOK_URL, body_of, build_app, vignette
from tests.faulty_servers import FaultyServer

POSITIVE = "parotid_mec_after_parotidectomy_and_imrt_local_mri_neck"
PATIENT = "pt-parotid-mec"
EMPTY_BUNDLE = b'{"resourceType": "Bundle", "type": "searchset", "entry": []}'
IMPLANTS_UNREAD = "**Could not be checked:** Implant records could not be read from the EHR"
ALLERGIES_UNREAD = "Allergy records could not be read from the EHR"


def _client(**settings: Any) -> FlaskClient:
    return build_app(Settings(environment="development", **settings)).test_client()


def _asking(
    base: str,
    *keys: str,
    token: str = "ehr-token",  # noqa: S107 - a test value
) -> dict[str, Any]:
    body = vignette(POSITIVE)
    body["fhirServer"] = base
    body["fhirAuthorization"] = {"access_token": token, "token_type": "Bearer"}
    for key in keys:
        body["prefetch"].pop(key)
    return body


# --- 4. the allow-list: "..;" and double encoding ----------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/fhir/..;/admin",
        "http://127.0.0.1:8080/fhir/..;jsessionid=x/admin",
        "http://127.0.0.1:8080/fhir/%252e%252e/admin",
        "http://127.0.0.1:8080/fhir/%25252e%25252e/admin",
        "http://127.0.0.1:8080/fhir/%2e%2e%3b/admin",
        "http://127.0.0.1:8080/fhir/Condition;x",
        "http://127.0.0.1:8080/fhir/%00/admin",
        "http://127.0.0.1:8080/fhir/a%20b",
    ],
)
def test_path_parameters_and_double_encoding_are_refused(url: str) -> None:
    allow = AllowList(("http://127.0.0.1:8080/fhir",))
    assert allow.allows("http://127.0.0.1:8080/fhir/Condition?patient=p;x", query=True)
    assert not allow.allows(url)
    assert not allow.allows(url, query=True)


class _Recorder:
    """A FHIR server that sets a cookie on every answer and records each request's
    Cookie and Authorization headers (a real socket server on loopback)."""

    def __init__(self, body: bytes = EMPTY_BUNDLE) -> None:
        self.requests: list[dict[str, str]] = []
        self.body = body
        self.server = FaultyServer(self._handle)

    def _handle(self, connection: socket.socket, _stop: threading.Event) -> None:
        connection.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = connection.recv(4096)
            if not chunk:
                return
            data += chunk
        lines = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
        }
        self.requests.append({"path": lines[0].split(" ")[1], **headers})
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n"
            b"Set-Cookie: SESSION=caller-a-session; Path=/\r\n"
            + f"Content-Length: {len(self.body)}\r\nConnection: close\r\n\r\n".encode()
            + self.body
        )


def test_a_cookie_set_for_one_caller_is_never_sent_for_another() -> None:
    recorder = _Recorder()
    recorder.server.start()
    try:
        client = _client()
        first = _asking(recorder.server.base, "devices", token="caller-a-token")  # noqa: S106
        assert client.post(HOOK_URL, json=first).status_code == 200
        second = _asking(recorder.server.base, "devices")
        second.pop("fhirAuthorization")
        assert client.post(HOOK_URL, json=second).status_code == 200
        assert len(recorder.requests) == 2
        assert recorder.requests[0]["authorization"] == "Bearer caller-a-token"
        assert "cookie" not in recorder.requests[1]
        assert "authorization" not in recorder.requests[1]
    finally:
        recorder.server.stop()


def test_the_environment_never_supplies_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A .netrc entry for the FHIR host once replaced the caller's (absent) token."""
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login service password service-secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # would break every fetch if used
    recorder = _Recorder()
    recorder.server.start()
    try:
        body = _asking(recorder.server.base, "devices")
        body.pop("fhirAuthorization")
        response = _client().post(HOOK_URL, json=body)
        assert response.status_code == 200
        assert IMPLANTS_UNREAD not in body_of(response)["cards"][0]["detail"]
        assert len(recorder.requests) == 1
        assert "authorization" not in recorder.requests[0]
    finally:
        recorder.server.stop()


# --- 6 and 16. the breaker counts only the server's own failures ------------------------------


@pytest.mark.parametrize("token", ["a\nb", "tökén", "a b", "x" * 8193])
def test_a_token_that_cannot_be_sent_is_a_400_naming_it(token: str) -> None:
    recorder = _Recorder()
    recorder.server.start()
    try:
        client = _client(fhir_breaker_failures=1)
        for _ in range(3):
            body = _asking(recorder.server.base, "devices", token=token)
            response = client.post(HOOK_URL, json=body)
            assert response.status_code == 400
            assert body_of(response)["field"] == "fhirAuthorization.access_token"
        assert recorder.requests == []
        healthy = client.post(HOOK_URL, json=_asking(recorder.server.base, "devices"))
        assert len(recorder.requests) == 1  # the breaker did not open
        assert IMPLANTS_UNREAD not in body_of(healthy)["cards"][0]["detail"]
    finally:
        recorder.server.stop()


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_patient_failing_again_and_again_never_opens_the_circuit() -> None:
    breakers = CircuitBreakers(failures=3, window=30, cool_off=30, clock=_Clock())
    base = "https://ehr.example.org/fhir"
    for _ in range(20):
        breakers.record(base, healthy=False, who="slow-patient")
    assert breakers.allow(base)
    breakers.record(base, healthy=False, who="p2")
    breakers.record(base, healthy=False, who="p3")
    assert not breakers.allow(base)  # three patients failing: the server is unwell


def test_the_circuit_is_keyed_by_the_normalised_base_and_bounded() -> None:
    breakers = CircuitBreakers(failures=1, window=30, cool_off=30, clock=_Clock(), capacity=8)
    breakers.record("HTTPS://EHR.example.org:443/fhir", healthy=False, who="p")
    assert not breakers.allow("https://ehr.example.org/fhir/")
    assert not breakers.allow("https://ehr.example.org/fhir//")
    for n in range(100):
        breakers.record(f"https://ehr.example.org/fhir/{'/' * n}x{n}", healthy=False, who="q")
    assert breakers.tracked() <= 8


def test_a_request_that_cannot_be_sent_does_not_count_against_the_server() -> None:
    recorder = _Recorder()
    recorder.server.start()
    breakers = CircuitBreakers(failures=1, window=30, cool_off=30)
    fetcher = FhirFetcher(AllowList(("loopback",)), FetchLimits(deadline=2), breakers)
    try:
        bad = fetcher.fetch(
            recorder.server.base, {"devices": "Device?patient=p"}, {"patientId": "p"}, "a\r\nb"
        )
        assert bad.failures == {"devices": "request-invalid"}
        assert breakers.allow(recorder.server.base)
        good = fetcher.fetch(
            recorder.server.base, {"devices": "Device?patient=p"}, {"patientId": "p"}, "t"
        )
        assert good.failures == {} and len(recorder.requests) == 1
    finally:
        recorder.server.stop()


def test_a_long_fhir_server_url_is_a_400() -> None:
    body = vignette(POSITIVE)
    body["fhirServer"] = "http://127.0.0.1:9/fhir" + "/" * 4096
    response = _client().post(HOOK_URL, json=body)
    assert response.status_code == 400
    assert body_of(response)["field"] == "fhirServer"


# --- 11. an incomplete searchset is "could not be read", never "none found" --------------------

_PACEMAKER_ON_PAGE_2: dict[str, Any] = {
    "resourceType": "Bundle",
    "type": "searchset",
    "total": 1,
    "link": [
        {"relation": "self", "url": "https://ehr.example.org/fhir/Device?patient=" + PATIENT},
        {"relation": "next", "url": "https://ehr.example.org/fhir?_getpages=abc&_offset=0"},
    ],
    "entry": [],
}
_ERROR_OUTCOME: dict[str, Any] = {
    "resourceType": "Bundle",
    "type": "searchset",
    "entry": [
        {
            "resource": {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "timeout"}],
            },
            "search": {"mode": "outcome"},
        }
    ],
}
_INFORMATION_OUTCOME = copy.deepcopy(_ERROR_OUTCOME)
_INFORMATION_OUTCOME["entry"][0]["resource"]["issue"][0]["severity"] = "information"


@pytest.mark.parametrize("bundle", [_PACEMAKER_ON_PAGE_2, _ERROR_OUTCOME])
def test_an_incomplete_devices_prefetch_is_unread_not_none(bundle: dict[str, Any]) -> None:
    body = vignette(POSITIVE)
    body["prefetch"]["devices"] = copy.deepcopy(bundle)
    response = _client().post(HOOK_URL, json=body)
    assert response.status_code == 200
    detail = body_of(response)["cards"][0]["detail"]
    assert IMPLANTS_UNREAD in detail


def test_an_informational_outcome_does_not_make_a_searchset_incomplete() -> None:
    body = vignette(POSITIVE)
    body["prefetch"]["devices"] = copy.deepcopy(_INFORMATION_OUTCOME)
    detail = body_of(_client().post(HOOK_URL, json=body))["cards"][0]["detail"]
    assert IMPLANTS_UNREAD not in detail


@pytest.mark.parametrize("bundle", [_PACEMAKER_ON_PAGE_2, _ERROR_OUTCOME])
def test_an_incomplete_allergy_prefetch_is_unread_not_none(bundle: dict[str, Any]) -> None:
    body = vignette(POSITIVE)
    body["prefetch"]["allergies"] = copy.deepcopy(bundle)
    detail = body_of(_client().post(HOOK_URL, json=body))["cards"][0]["detail"]
    assert ALLERGIES_UNREAD in detail


def test_an_incomplete_required_prefetch_is_a_412_saying_why() -> None:
    body = vignette(POSITIVE)
    # A next page only: its own query (no self link naming another one, which reads as
    # "not the template's answer" before it is read as incomplete).
    body["prefetch"]["conditions"]["link"] = [
        link for link in _PACEMAKER_ON_PAGE_2["link"] if link["relation"] == "next"
    ]
    response = _client().post(HOOK_URL, json=body)
    assert response.status_code == 412
    assert body_of(response)["reasons"] == {"conditions": "unfollowed-next-link"}


def test_an_incomplete_prefetch_is_fetched_whole_from_the_server_when_it_may_be() -> None:
    recorder = _Recorder()
    recorder.server.start()
    try:
        body = _asking(recorder.server.base)
        body["prefetch"]["devices"] = copy.deepcopy(_PACEMAKER_ON_PAGE_2)
        response = _client().post(HOOK_URL, json=body)
        assert [r["path"].split("?")[0] for r in recorder.requests] == ["/fhir/Device"]
        assert IMPLANTS_UNREAD not in body_of(response)["cards"][0]["detail"]
    finally:
        recorder.server.stop()


def test_an_error_outcome_in_a_fetched_bundle_is_unread_not_none() -> None:
    import orjson

    recorder = _Recorder(orjson.dumps(_ERROR_OUTCOME))
    recorder.server.start()
    try:
        response = _client().post(HOOK_URL, json=_asking(recorder.server.base, "devices"))
        assert IMPLANTS_UNREAD in body_of(response)["cards"][0]["detail"]
    finally:
        recorder.server.stop()


# --- 3. amplification by text ------------------------------------------------------------------


def test_record_text_is_never_copied_unbounded_into_the_response() -> None:
    """A 4 MB Condition.code.text and 50 drafts once gave a 1.43 GB response."""
    body = vignette(POSITIVE)
    condition = body["prefetch"]["conditions"]["entry"][-1]["resource"]
    condition["code"]["text"] = "Mucoepidermoid carcinoma " + "x" * 4_000_000
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    drafts = []
    for n in range(50):
        copied = copy.deepcopy(draft)
        copied["id"] = f"draft-{n}"
        drafts.append({"resource": copied})
    body["context"]["draftOrders"]["entry"] = drafts
    body["context"]["selections"] = [f"ServiceRequest/draft-{n}" for n in range(50)]
    client = _client(max_body_bytes=6_000_000)
    response = client.post(HOOK_URL, json=body)
    assert response.status_code == 200
    assert len(body_of(response)["cards"]) == 50
    assert len(response.get_data()) < 3_000_000  # ~50 cards of their usual size, no 4 MB copy
    assert b"xxxxxxxxxxxxxxxx" not in response.get_data()


def test_a_draft_too_large_to_be_an_order_is_not_judged() -> None:
    body = vignette(POSITIVE)
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    draft["note"] = [{"text": "n" * 1000} for _ in range(100)]  # 100 KB of notes
    response = _client().post(HOOK_URL, json=body)
    assert response.status_code == 200
    assert body_of(response)["cards"] == []


# --- 10 and 14. feedback times are bounded on input --------------------------------------------


@pytest.mark.parametrize(
    ("when", "stored"),
    [
        ("0001-01-01T00:00:00+01:00", "2000-01-01T00:00:00"),
        ("9999-12-31T23:59:00-05:00", None),  # no later than its arrival
        ("2099-01-01T00:00:00Z", None),
        ("2026-11-24T10:00:00+02:00", "2026-11-24T08:00:00"),
    ],
)
def test_an_implausible_feedback_time_is_stored_bounded(when: str, stored: str | None) -> None:
    from datetime import UTC, datetime

    from cds_service.store.storage import bounded_time

    received = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    bounded = bounded_time(datetime.fromisoformat(when), received)
    assert bounded.tzinfo is not None
    expected = datetime.fromisoformat(stored).replace(tzinfo=UTC) if stored else received
    assert bounded == expected


# --- 13. CSV formulas and terminal escapes ------------------------------------------------------


def test_the_report_writes_no_formula_and_prints_no_escape_sequence() -> None:
    from cds_service.store.report import ReportRow, format_report

    rows = [
        ReportRow(key='=HYPERLINK("http://evil.example.org","x")', rule_id="r", shown=2),
        ReportRow(key="\x1b[2J\x1b]0;owned\x07card", rule_id="r", shown=1),
        ReportRow(key="-1+1", rule_id="r", top_override_reasons=[("@SUM(A1)", 3)]),
    ]
    csv_text = format_report(rows, "csv", "card")
    for line in csv_text.splitlines()[1:]:
        assert not line.startswith(("=", "+", "-", "@")), line
    assert "'=HYPERLINK" in csv_text and "'-1+1" in csv_text
    assert "\x1b" not in csv_text and "\x07" not in csv_text
    table = format_report(rows, "table", "card")
    assert "\x1b" not in table and "\\x1b[2J" in table


def test_orderables_output_prints_no_escape_sequence(tmp_path: Path) -> None:
    from cds_service.cli.main import main

    export = tmp_path / "export.csv"
    export.write_text('code,name\nIMG1,"MRI NECK \x1b[31mW WO\x1b[0m CONTRAST"\n')
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["orderables", str(export)]) == 0
    assert "\x1b" not in out.getvalue() and "\\x1b[31m" in out.getvalue()
