"""The JWKS cache when the issuer's JWKS endpoint misbehaves: fetched at most once per refresh
interval whether it works or fails, never under a lock that known keys wait on, and the last
good keys keep serving."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from cds_service.contract.errors import UnauthorizedError
from cds_service.web.security import JwksCache, TrustedIssuer
from tests.faulty_servers import FaultyServer, Handler, fixed


def _jwks(kid: str) -> bytes:
    public = ec.generate_private_key(ec.SECP384R1()).public_key()
    return json.dumps({"keys": [dict(json.loads(ECAlgorithm.to_jwk(public)), kid=kid)]}).encode()


def slow(delay: float, body: bytes) -> Handler:
    answer = fixed(200, body, "OK")

    def handle(connection: socket.socket, stop: threading.Event) -> None:
        if not stop.wait(delay):
            answer(connection, stop)

    return handle


@pytest.fixture
def endpoint() -> Iterator[FaultyServer]:
    server = FaultyServer(fixed(200, _jwks("k1"), "OK")).start()
    yield server
    server.stop()


def _issuer(server: FaultyServer) -> TrustedIssuer:
    url = server.base.removesuffix("/fhir") + "/jwks.json"
    return TrustedIssuer("https://ehr.example.org", url, None, (url,))


def test_a_failing_jwks_is_not_fetched_again_for_every_unknown_kid(
    endpoint: FaultyServer,
) -> None:
    """The attack: a JWKS URL answering 503 was fetched for every token with an unknown kid
    (50 fetches in 0.35 s): the refresh limit applied only after a success."""
    endpoint.handler = fixed(503, b"{}", "Service Unavailable")
    cache = JwksCache(timeout=1.0, min_refresh=30.0)
    issuer = _issuer(endpoint)
    for index in range(50):
        with pytest.raises(UnauthorizedError):
            cache.key(issuer, f"unknown-{index}")
    assert endpoint.accepted == 1


def test_known_keys_do_not_wait_for_a_slow_refresh(endpoint: FaultyServer) -> None:
    """The attack: a JWKS taking 1.9 s was fetched under a lock every worker thread waited on
    (valid calls took 5.4 s instead of 10 ms)."""
    cache = JwksCache(timeout=3.0, min_refresh=0.0)
    issuer = _issuer(endpoint)
    known = cache.key(issuer, "k1")
    endpoint.handler = slow(1.5, _jwks("k2"))
    with ThreadPoolExecutor(6) as pool:
        refresh = pool.submit(lambda: cache.key(issuer, "k2"))  # starts the slow fetch
        time.sleep(0.1)

        def timed_known(_: int) -> float:
            started = time.monotonic()
            assert cache.key(issuer, "k1") is known
            return time.monotonic() - started

        waits = list(pool.map(timed_known, range(5)))
        assert max(waits) < 0.5  # not the 1.5 s of the refresh
        assert refresh.result().jwk is not None  # and the refresh brought the new key


def test_the_last_good_keys_serve_when_a_refresh_fails(endpoint: FaultyServer) -> None:
    cache = JwksCache(timeout=1.0, min_refresh=0.0)
    issuer = _issuer(endpoint)
    known = cache.key(issuer, "k1")
    endpoint.handler = fixed(503, b"{}", "Service Unavailable")
    with pytest.raises(UnauthorizedError, match="not in the issuer's JWKS"):
        cache.key(issuer, "rotated")
    assert cache.key(issuer, "k1") is known
