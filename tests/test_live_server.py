"""The production command line (gunicorn, as in the Dockerfile) on loopback, called over HTTP."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, select

from cds_service.cli.main import main
from cds_service.store.storage import issued_cards
from tests.conftest import EXAMPLES, HOOK_URL, ROOT
from tests.live import GUNICORN_ARGV, LiveServer, free_port, start_gunicorn


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_gunicorn(tmp_path_factory.mktemp("gunicorn"))
    yield server
    server.stop()


@pytest.fixture
def live_url(live: LiveServer) -> str:
    return live.url


def test_dockerfile_runs_the_same_command_line() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "CMD " + json.dumps(["gunicorn", *GUNICORN_ARGV]) in dockerfile


def test_discovery_over_http(live_url: str) -> None:
    response = requests.get(f"{live_url}/cds-services", timeout=5)
    assert response.status_code == 200
    assert response.json()["services"][0]["hook"] == "order-select"


def test_vignette_over_http(live_url: str) -> None:
    body = json.loads(
        (EXAMPLES / "parotid_mec_after_parotidectomy_and_imrt_local_mri_neck.json").read_text()
    )
    response = requests.post(f"{live_url}{HOOK_URL}", json=body, timeout=5)
    assert response.status_code == 200
    assert response.json()["cards"][0]["indicator"] == "warning"


def test_bad_json_over_http_is_400_not_500(live_url: str) -> None:
    response = requests.post(
        f"{live_url}{HOOK_URL}", data="{", headers={"Content-Type": "application/json"}, timeout=5
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid-request"


def test_replay_against_the_running_service(
    live_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    vignette = EXAMPLES / "submandibular_acc_after_excision_mri_neck_without_contrast.json"
    assert main(["replay", str(vignette), "--url", live_url]) == 0
    assert "WARNING" in capsys.readouterr().out


def test_replay_names_an_unreachable_service(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert (
        main(["replay", str(EXAMPLES / "warthin_tumour_after_parotidectomy.json"), "--url", url])
        == 2
    )
    assert "cannot reach" in capsys.readouterr().err


def _raw_request(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are (no client library tidies them) and read the whole answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /cds-services?" + b"x" * 5000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
        (b"GET /cds-services HTTP/1.1\r\nHost: a\r\nX-Big: " + b"x" * 9000 + b"\r\n\r\n", 431),
        (b"GET /cds-services HTTP/1.1\r\nHost: a\r\n" + b"X-A: 1\r\n" * 60 + b"\r\n", 431),
        (b"NOT A REQUEST\r\n\r\n", 400),
    ],
)
def test_errors_gunicorn_answers_itself_are_json(
    live_url: str, request_bytes: bytes, status: int
) -> None:
    code, headers, body = _raw_request(live_url, request_bytes)
    assert code == status
    assert headers["content-type"] == "application/json"
    assert set(json.loads(body)) == {"error", "message"}


def test_a_chunked_body_over_the_limit_is_413(live_url: str) -> None:
    chunk = b"x" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(100)) + b"0\r\n\r\n"
    code, _, answer = _raw_request(
        live_url,
        f"POST {HOOK_URL} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode()
        + body,
    )
    assert code == 413, answer[:300]
    refused = json.loads(answer)
    assert refused["error"] == "request-entity-too-large"
    assert refused["limitBytes"] > 0 and f"{refused['limitBytes']} bytes" in refused["message"]


def test_two_workers_under_load_write_whole_log_lines(live: LiveServer) -> None:
    """Under gunicorn the workers' JSON lines once interleaved (481 of ~10.5k lines held two
    records): each record is now one write of one whole line."""
    body = json.loads(
        (EXAMPLES / "parotid_mec_after_parotidectomy_and_imrt_local_mri_neck.json").read_text()
    )

    def burst(_: int) -> int:
        with requests.Session() as session:
            return sum(
                session.post(f"{live.url}{HOOK_URL}", json=body, timeout=10).status_code == 200
                for _ in range(40)
            )

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(burst, range(8))) == 320
    records = [line for line in live.log_path.read_text().splitlines() if line.startswith("{")]
    assert len(records) >= 320
    for line in records:
        record = json.loads(line)  # one whole record a line, never two run together
        assert isinstance(record, dict) and "event" in record


def test_sigterm_loses_no_log_line_and_no_shown_card(tmp_path: Path) -> None:
    """Log lines and shown cards are written off the request path, from queues that wait up to
    200 ms (lines) and 50 ms (cards) to fill a batch. A SIGTERM right after the last answer
    must still leave every line in the log and every shown card in the database: each worker
    flushes both on its way out (gunicorn's worker_exit, and at exit). With neither flush the
    shown cards went missing here; the lines, whose batch closes within 200 ms of the last
    call, were written anyway on this machine (tests/test_line_queue.py tests their flush)."""
    server = start_gunicorn(tmp_path / "gunicorn")
    body = json.loads(
        (EXAMPLES / "parotid_mec_after_parotidectomy_and_imrt_local_mri_neck.json").read_text()
    )
    try:

        def burst(n: int) -> int:
            with requests.Session() as session:
                cards = 0
                for i in range(15):
                    call = {**body, "hookInstance": str(uuid.UUID(int=n * 1000 + i))}
                    answer = session.post(f"{server.url}{HOOK_URL}", json=call, timeout=10)
                    assert answer.status_code == 200
                    cards += len(answer.json()["cards"])
                return cards

        with ThreadPoolExecutor(6) as pool:
            shown = sum(pool.map(burst, range(6)))
    finally:
        server.stop()  # SIGTERM at once
    assert server.process.returncode == 0
    hook_lines = [
        json.loads(line)
        for line in server.log_path.read_text().splitlines()
        if line.startswith("{") and '"event":"hook"' in line
    ]
    assert len(hook_lines) == 90, "every call's line is in the log"
    assert shown > 0
    database = create_engine(f"sqlite:///{tmp_path / 'gunicorn' / 'data' / 'cds_service.sqlite3'}")
    with database.connect() as connection:
        rows = list(connection.execute(select(issued_cards)))
    database.dispose()
    assert len([r for r in rows if r.mode == "shown"]) == shown, "every shown card is recorded"
