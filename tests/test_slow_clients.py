"""Slow clients (slowloris) cost no thread: gunicorn as ``salivary-cds serve`` and the Docker
image start it (cds_service.web.buffered_worker), and the request framing it relies on."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from cds_service.web.buffered_worker import (
    _IncompleteError,
    _RefusedError,
    request_end,
)
from tests.live import LiveServer, start_gunicorn

HOOK_URL = "/cds-services/salivary-post-treatment-imaging-order-select"
EXAMPLE = (
    Path(__file__).resolve().parent.parent
    / "fhir_examples"
    / "parotid_mec_after_parotidectomy_and_imrt_local_mri_neck.json"
)

# --- the framing: when is a request whole? ----------------------------------------------------


def _head(*headers: str) -> bytes:
    return (
        "POST /x HTTP/1.1\r\nHost: a\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n"
    ).encode()


def test_a_request_with_a_length_is_whole_when_its_body_is() -> None:
    head = _head("Content-Length: 5")
    with pytest.raises(_IncompleteError):
        request_end(head[:-3], 100)
    with pytest.raises(_IncompleteError):
        request_end(head + b"abcd", 100)
    assert request_end(head + b"abcde", 100) == len(head) + 5
    assert request_end(head + b"abcdeGET /", 100) == len(head) + 5  # pipelined: its own end


def test_a_request_without_a_body_is_whole_with_its_head() -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"
    assert request_end(head, 100) == len(head)


def test_a_chunked_request_is_whole_after_its_last_chunk_and_trailers() -> None:
    head = _head("Transfer-Encoding: chunked")
    body = b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n"
    with pytest.raises(_IncompleteError):
        request_end(head + body, 100)
    with pytest.raises(_IncompleteError):
        request_end(head + b"3\r\nab", 100)
    assert request_end(head + body + b"\r\n", 100) == len(head + body) + 2
    trailed = head + body + b"X-Sum: 1\r\n\r\n"
    assert request_end(trailed, 100) == len(trailed)


def test_a_body_over_the_limit_is_refused_before_it_is_read() -> None:
    with pytest.raises(_RefusedError) as announced:
        request_end(_head("Content-Length: 101"), 100)
    assert announced.value.status == 413
    chunked = _head("Transfer-Encoding: chunked") + b"65\r\n"  # 0x65 = 101 bytes announced
    with pytest.raises(_RefusedError):
        request_end(chunked, 100)


def test_what_gunicorn_refuses_itself_is_handed_over_at_once() -> None:
    bad_length = _head("Content-Length: 12x")
    assert request_end(bad_length, 100) == len(bad_length)  # gunicorn answers 400
    huge_head = b"GET /" + b"a" * 500_000
    assert request_end(huge_head, 100) == len(huge_head)  # gunicorn answers 414


# --- gunicorn as deployed ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def few_threads(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One worker with 2 threads and a 2 s request deadline: 2 slow clients once took it all."""
    server = start_gunicorn(
        tmp_path_factory.mktemp("slow"),
        CDS_WORKERS="1",
        CDS_THREADS="2",
        CDS_REQUEST_READ_TIMEOUT="2",
        CDS_ENVIRONMENT="development",
    )
    yield server
    server.stop()


def _address(server: LiveServer) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def _slow_client(server: LiveServer, declared: int = 1000) -> socket.socket:
    """A client that sends its head and one byte of a body it says is ``declared`` long."""
    conn = socket.create_connection(_address(server), timeout=10)
    conn.sendall(
        f"POST {HOOK_URL} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
        f"Content-Length: {declared}\r\n\r\n{{".encode()
    )
    return conn


def test_slow_bodies_never_take_the_threads(few_threads: LiveServer) -> None:
    slow = [_slow_client(few_threads) for _ in range(12)]  # six times the threads
    try:
        for conn in slow:
            conn.sendall(b" ")  # still dripping
        assert requests.get(f"{few_threads.url}/healthz", timeout=10).status_code == 200
        body = json.loads(EXAMPLE.read_text())
        answer = requests.post(f"{few_threads.url}{HOOK_URL}", json=body, timeout=10)
        assert answer.status_code == 200 and answer.json()["cards"]
    finally:
        for conn in slow:
            conn.close()


def _read_answer(conn: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = conn.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return data
        if not chunk:
            return data
        data += chunk


def test_a_request_that_does_not_arrive_in_time_is_answered_408(few_threads: LiveServer) -> None:
    conn = _slow_client(few_threads)
    try:
        started = time.monotonic()
        answer = _read_answer(conn)  # the server answers and closes; the client sent nothing
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"] == "request-timeout"
        assert time.monotonic() - started < 9  # well before the client's own 10 s timeout
    finally:
        conn.close()


def test_a_body_announced_over_the_limit_is_413_without_being_sent(
    few_threads: LiveServer,
) -> None:
    conn = _slow_client(few_threads, declared=50 * 1024 * 1024)
    try:
        answer = _read_answer(conn)
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:100]
    finally:
        conn.close()


def test_expect_100_continue_is_answered_before_the_body(few_threads: LiveServer) -> None:
    body = EXAMPLE.read_bytes()
    conn = socket.create_connection(_address(few_threads), timeout=10)
    try:
        conn.sendall(
            f"POST {HOOK_URL} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
            f"Expect: 100-continue\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        assert conn.recv(64).startswith(b"HTTP/1.1 100 Continue")
        conn.sendall(body)
        answer = _read_answer(conn)
        assert b"HTTP/1.1 200 OK" in answer
    finally:
        conn.close()


def test_kept_alive_and_pipelined_requests_are_each_answered(few_threads: LiveServer) -> None:
    conn = socket.create_connection(_address(few_threads), timeout=10)
    try:
        one = b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"
        conn.sendall(one + one + b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        answer = _read_answer(conn)
        assert answer.count(b"HTTP/1.1 200 OK") == 3
    finally:
        conn.close()
