"""Feedback under load and through a crash, against the real gunicorn command line on loopback,
on SQLite and PostgreSQL: every acknowledged item is stored exactly once."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from sqlalchemy import select

from cds_service.store.storage import Database, feedback_items
from tests.conftest import SERVICE_ID, empty_postgres, vignette
from tests.live import LiveServer, start_gunicorn

CLIENTS = 16
ITEMS_PER_CLIENT = 125  # 16 x 125 = 2,000


def _item(card: str) -> dict[str, Any]:
    return {
        "card": card,
        "outcome": "overridden",
        "overrideReason": {
            "reason": {
                "code": "limited-question-intended",
                "system": "urn:salivary-imaging-cds:override-reason",
            }
        },
        "outcomeTimestamp": "2026-11-24T20:40:00Z",
    }


def _stored_cards(database_url: str) -> list[str]:
    database = Database(database_url)
    try:
        with database.sql.connect() as connection:
            return list(connection.execute(select(feedback_items.c.card_uuid)).scalars())
    finally:
        database.dispose()


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    live = start_gunicorn(tmp_path / "logs", DATABASE_URL=database_url, CDS_THREADS="8")
    yield live
    live.stop()


def _post_all(url: str, cards: list[str]) -> list[int]:
    statuses = []
    with requests.Session() as session:
        for card in cards:
            response = session.post(url, json={"feedback": [_item(card)]}, timeout=30)
            statuses.append(response.status_code)
    return statuses


def test_two_thousand_items_from_sixteen_clients_are_stored_once(
    server: LiveServer, database_url: str
) -> None:
    url = f"{server.url}/cds-services/{SERVICE_ID}/feedback"
    batches = [[str(uuid.uuid4()) for _ in range(ITEMS_PER_CLIENT)] for _ in range(CLIENTS)]
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(lambda cards: _post_all(url, cards), batches))
    assert all(status == 200 for statuses in results for status in statuses)
    # the same items again, concurrently: acknowledged, not stored twice
    with ThreadPoolExecutor(CLIENTS) as pool:
        again = list(pool.map(lambda cards: _post_all(url, cards[:10]), batches))
    assert all(status == 200 for statuses in again for status in statuses)
    stored = _stored_cards(database_url)
    expected = {card for cards in batches for card in cards}
    assert len(stored) == CLIENTS * ITEMS_PER_CLIENT == len(expected)
    assert set(stored) == expected


def test_every_acknowledged_item_survives_sigkill(database_url: str, tmp_path: Path) -> None:
    server = start_gunicorn(tmp_path / "logs", DATABASE_URL=database_url, CDS_THREADS="8")
    url = f"{server.url}/cds-services/{SERVICE_ID}/feedback"
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                card = str(uuid.uuid4())
                try:
                    response = session.post(url, json={"feedback": [_item(card)]}, timeout=5)
                except requests.RequestException:
                    return  # the server is gone: this item was never acknowledged
                if response.status_code == 200:
                    with lock:
                        acknowledged.append(card)

    threads = [threading.Thread(target=client) for _ in range(8)]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 20
        while len(acknowledged) < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.kill()  # mid-load, no warning
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        server.stop()
    assert len(acknowledged) >= 200
    restarted = start_gunicorn(tmp_path / "logs-after", DATABASE_URL=database_url)
    try:
        assert (
            requests.get(f"{restarted.url}/readyz", timeout=5).json()["checks"]["database"] == "ok"
        )
        stored = set(_stored_cards(database_url))
        missing = [card for card in acknowledged if card not in stored]
        assert missing == []
        after = requests.post(
            f"{restarted.url}/cds-services/{SERVICE_ID}/feedback",
            json={"feedback": [_item("after-restart")]},
            timeout=10,
        )
        assert after.status_code == 200
    finally:
        restarted.stop()


def test_two_instances_on_one_postgresql_share_replay_and_feedback_memory(
    tmp_path: Path,
) -> None:
    """Two service processes (two gunicorn masters, as behind a load balancer) sharing one
    PostgreSQL: a JWT used at one is refused at the other, and a feedback item sent to both is
    stored once."""
    url = empty_postgres()
    key = ec.generate_private_key(ec.SECP384R1())
    jwks = tmp_path / "jwks.json"
    jwk = dict(json.loads(ECAlgorithm.to_jwk(key.public_key())), kid="k")
    jwks.write_text(json.dumps({"keys": [jwk]}))
    base = "https://cds.example.org"
    env = {
        "DATABASE_URL": url,
        "CDS_REQUIRE_AUTH": "true",
        "CDS_TRUSTED_ISSUERS": json.dumps(
            [{"iss": "https://ehr", "jwks_file": str(jwks), "allowed_fhir_servers": []}]
        ),
        "CDS_PUBLIC_BASE_URL": base,
    }
    first = start_gunicorn(tmp_path / "a", **env)
    second = start_gunicorn(tmp_path / "b", **env)

    def bearer(path: str) -> dict[str, str]:
        now = int(time.time())
        claims = {"iss": "https://ehr", "aud": base + path, "iat": now, "exp": now + 300}
        claims["jti"] = str(uuid.uuid4())
        token = jwt.encode(claims, key, algorithm="ES384", headers={"kid": "k"})
        return {"Authorization": f"Bearer {token}"}

    try:
        hook = "/cds-services/salivary-post-treatment-imaging-order-select"
        body = vignette("parotid_mec_after_parotidectomy_and_imrt_local_mri_neck")
        headers = bearer(hook)
        shown = requests.post(first.url + hook, json=body, headers=headers, timeout=10)
        assert shown.status_code == 200
        replayed = requests.post(second.url + hook, json=body, headers=headers, timeout=10)
        assert replayed.status_code == 401
        assert replayed.json()["message"] == "The token was already used (jti)"
        item = _item(shown.json()["cards"][0]["uuid"])
        answers = [
            requests.post(
                server.url + hook + "/feedback",
                json={"feedback": [item]},
                headers=bearer(hook + "/feedback"),
                timeout=10,
            ).json()
            for server in (first, second)
        ]
        assert sorted(a["stored"] for a in answers) == [0, 1]
        assert _stored_cards(url) == [item["card"]]
    finally:
        first.stop()
        second.stop()
