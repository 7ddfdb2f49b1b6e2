"""When the EHR's FHIR server fails: real misbehaving servers on loopback (refused, blackhole,
slow drip, 503, 401, invalid JSON), each for a required and an optional key; the circuit
breaker; no fetch outlives its call's deadline."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask.testing import FlaskClient

from cds_service.config import Settings
from cds_service.fhir.allowlist import AllowList
from cds_service.fhir.circuit import CircuitBreakers
from cds_service.fhir.client import FetchLimits, FhirFetcher
from tests.conftest import HOOK_URL, body_of, build_app, vignette
from tests.faulty_servers import FaultyServer, blackhole, drip, fixed, wait_until
from tests.fhir_standin import FhirStandIn
from tests.live import free_port

POSITIVE = "parotid_mec_after_parotidectomy_and_imrt_local_mri_neck"
DEADLINE = 0.6
#: Functional bound only (the call does not wait for a server that never answers); the
#: tight targets (deadline + 250 ms, p99 under load) are measured by benchmarks/failures.py.
SLACK = 1.0
EMPTY_BUNDLE = b'{"resourceType": "Bundle", "type": "searchset", "entry": []}'
CAUTION = "**Could not be checked:** Implant records could not be read from the EHR"


def _client(**settings: Any) -> FlaskClient:
    values: dict[str, Any] = {
        "environment": "development",
        "fhir_deadline": DEADLINE,
        "fhir_read_timeout": DEADLINE,
        **settings,
    }
    return build_app(Settings(**values)).test_client()


def _asking(base: str, *keys: str) -> dict[str, Any]:
    body = vignette(POSITIVE)
    body["fhirServer"] = base
    body["fhirAuthorization"] = {"access_token": "ehr-token", "token_type": "Bearer"}
    for key in keys:
        body["prefetch"].pop(key)
    return body


def _timed_post(client: FlaskClient, body: dict[str, Any]) -> tuple[Any, float]:
    started = time.monotonic()
    response = client.post(HOOK_URL, json=body)
    return response, time.monotonic() - started


FAILURES: dict[str, tuple[Callable[[], Any], str]] = {
    "blackhole": (blackhole, "timeout"),
    "slow drip": (drip, "timeout"),
    "503": (lambda: fixed(503, b"{}", "Service Unavailable"), "http-503"),
    "401": (lambda: fixed(401, b"{}", "Unauthorized"), "unauthorized"),
    "invalid JSON": (lambda: fixed(200, b"{not json", "OK"), "not-json"),
}


@pytest.fixture(params=sorted(FAILURES))
def failing(request: pytest.FixtureRequest) -> Iterator[tuple[FaultyServer, str]]:
    handler, reason = FAILURES[request.param]
    server = FaultyServer(handler()).start()
    yield server, reason
    server.stop()


def test_a_required_key_that_fails_is_412_with_its_reason_in_time(
    failing: tuple[FaultyServer, str],
) -> None:
    server, reason = failing
    response, took = _timed_post(_client(), _asking(server.base, "conditions"))
    assert response.status_code == 412
    error = body_of(response)
    assert error["missingPrefetch"] == ["conditions"]
    assert error["reasons"] == {"conditions": reason}
    assert took <= DEADLINE + SLACK


def test_an_optional_key_that_fails_still_gets_the_card_saying_so(
    failing: tuple[FaultyServer, str],
) -> None:
    server, _ = failing
    response, took = _timed_post(_client(), _asking(server.base, "devices"))
    assert response.status_code == 200
    [card] = body_of(response)["cards"]
    assert CAUTION in card["detail"]
    assert took <= DEADLINE + SLACK


@pytest.mark.parametrize(("key", "status"), [("conditions", 412), ("devices", 200)])
def test_a_refused_connection(key: str, status: int) -> None:
    base = f"http://127.0.0.1:{free_port()}/fhir"
    response, took = _timed_post(_client(), _asking(base, key))
    assert response.status_code == status
    if status == 412:
        assert body_of(response)["reasons"] == {key: "unreachable"}
    assert took <= DEADLINE + SLACK


def test_a_complete_prefetch_never_touches_the_fhir_server() -> None:
    server = FaultyServer(blackhole()).start()
    try:
        response, took = _timed_post(_client(), _asking(server.base))
        assert response.status_code == 200 and len(body_of(response)["cards"]) == 1
        assert took < DEADLINE and server.accepted == 0
    finally:
        server.stop()


def test_a_dripping_body_is_cut_at_the_deadline_and_later_calls_are_not_starved() -> None:
    """The attack: a server dripping its body kept the fetch threads reading for ~40 s after
    each call had answered, so the next calls' fetches all failed with 'timeout'. Now each
    fetch stops reading at its call's deadline and closes the connection."""
    dripping = FaultyServer(drip(0.05)).start()
    healthy = FhirStandIn(
        [e["resource"] for e in vignette(POSITIVE)["prefetch"]["devices"]["entry"]]
    ).start()
    client = _client(fhir_slots=4)
    try:
        with ThreadPoolExecutor(6) as pool:
            slow = list(
                pool.map(lambda _: _timed_post(client, _asking(dripping.base, "devices")), range(6))
            )
        assert all(r.status_code == 200 and t <= DEADLINE + SLACK for r, t in slow)
        assert wait_until(lambda: dripping.open_connections == 0, 0.3)  # nothing reads on
        for _ in range(6):
            response, _ = _timed_post(client, _asking(healthy.base, "devices"))
            [card] = body_of(response)["cards"]
            assert CAUTION not in card["detail"]  # fetched: a free slot, a whole answer
    finally:
        dripping.stop()
        healthy.stop()


def test_fifty_calls_against_a_blackhole_each_answer_within_the_deadline() -> None:
    server = FaultyServer(blackhole()).start()
    client = _client()
    try:
        with ThreadPoolExecutor(50) as pool:
            answers = list(
                pool.map(lambda _: _timed_post(client, _asking(server.base, "devices")), range(50))
            )
        assert all(r.status_code == 200 for r, _ in answers)
        assert max(t for _, t in answers) <= DEADLINE + SLACK
    finally:
        server.stop()


# --- the circuit breaker ---------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_skips_probes_and_closes() -> None:
    clock = Clock()
    breakers = CircuitBreakers(failures=3, window=30, cool_off=30, clock=clock)
    base = "https://ehr.example.org/fhir"
    for _ in range(2):
        assert breakers.allow(base)
        breakers.record(base, healthy=False)
    assert breakers.allow(base) and breakers.open_count() == 0
    breakers.record(base, healthy=False)  # the third failure within 30 s: open
    assert not breakers.allow(base) and breakers.open_count() == 1
    assert breakers.allow("https://other.example.org/fhir")  # per base URL
    clock.now += 31
    assert breakers.allow(base)  # one probe
    assert not breakers.allow(base)  # and only one
    breakers.record(base, healthy=False)  # the probe failed: open again
    assert not breakers.allow(base)
    clock.now += 31
    assert breakers.allow(base)
    breakers.record(base, healthy=True)  # the probe succeeded: closed
    assert breakers.allow(base) and breakers.allow(base) and breakers.open_count() == 0


def test_failures_outside_the_window_do_not_open_it() -> None:
    clock = Clock()
    breakers = CircuitBreakers(failures=2, window=10, cool_off=30, clock=clock)
    breakers.record("b", healthy=False)
    clock.now += 11
    breakers.record("b", healthy=False)
    assert breakers.allow("b")


def test_an_open_circuit_answers_at_once_then_a_probe_closes_it() -> None:
    server = FaultyServer(fixed(503, b"{}", "Service Unavailable")).start()
    client = _client(fhir_breaker_failures=2, fhir_breaker_cool_off=0.5)
    try:
        for patient in ("pt-a", "pt-b"):  # a failure counts once per patient
            failing = _asking(server.base, "conditions")
            failing["context"]["patientId"] = patient
            for entry in failing["context"]["draftOrders"]["entry"]:  # the drafts are theirs
                entry["resource"]["subject"] = {"reference": f"Patient/{patient}"}
            response, _ = _timed_post(client, failing)
            assert body_of(response)["reasons"] == {"conditions": "http-503"}
        accepted = server.accepted
        response, took = _timed_post(client, _asking(server.base, "conditions"))
        assert body_of(response)["reasons"] == {"conditions": "circuit-open"}
        assert server.accepted == accepted and took < DEADLINE
        degraded, _ = _timed_post(client, _asking(server.base, "devices"))
        assert CAUTION in body_of(degraded)["cards"][0]["detail"]
        metrics = client.get("/metrics").get_data(as_text=True)
        assert 'cds_fhir_fetches_skipped_total{reason="circuit-open"} 2.0' in metrics
        assert "cds_fhir_circuits_open 1.0" in metrics
        time.sleep(0.55)
        server.handler = fixed(200, EMPTY_BUNDLE, "OK")  # the server is back
        probe, _ = _timed_post(client, _asking(server.base, "devices"))  # the probe
        assert server.accepted == accepted + 1
        assert CAUTION not in body_of(probe)["cards"][0]["detail"]
        after, _ = _timed_post(client, _asking(server.base, "devices"))
        assert server.accepted == accepted + 2  # closed: called again
        assert "cds_fhir_circuits_open 0.0" in client.get("/metrics").get_data(as_text=True)
        assert body_of(after)["cards"]
    finally:
        server.stop()


def test_readiness_does_not_depend_on_the_ehrs_server() -> None:
    server = FaultyServer(fixed(503, b"{}", "Service Unavailable")).start()
    client = _client(fhir_breaker_failures=1)
    try:
        client.post(HOOK_URL, json=_asking(server.base, "devices"))
        assert client.get("/readyz").status_code == 200
    finally:
        server.stop()


def test_a_probe_that_fetches_nothing_does_not_leave_the_circuit_stuck() -> None:
    """A probe granted after the cool-off whose call then contacts nothing (no fetch slot free,
    or no template to render) must hand the probe back: it once left the circuit 'probing'
    for good, so the server was never called again."""
    clock = Clock()
    breakers = CircuitBreakers(failures=1, window=30, cool_off=30, clock=clock)
    fetcher = FhirFetcher(AllowList(("loopback",)), FetchLimits(deadline=0.5), breakers, slots=1)
    base = "http://127.0.0.1:9/fhir"
    breakers.record(base, healthy=False)  # open
    clock.now += 31
    assert fetcher._slots.acquire(blocking=False)  # the only slot is busy
    try:
        result = fetcher.fetch(base, {"devices": "Device?patient=p"}, {"patientId": "p"}, None)
    finally:
        fetcher._slots.release()
    assert result.failures == {"devices": "fhir-busy"}
    assert breakers.allow(base)  # the probe is still to be had
