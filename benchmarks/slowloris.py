"""Healthy calls' latency while slow clients drip request bodies (slowloris), run on demand.

    .venv/bin/python -m benchmarks.slowloris   # about 70 s; writes benchmarks/slowloris.json

gunicorn starts as ``salivary-cds serve`` and the Docker image start it (the default settings:
2 workers x 32 threads), once with the service's worker (cds_service.web.buffered_worker) and
once with gunicorn's stock gthread worker for comparison. Meanwhile ``ATTACKERS`` connections
each send a hook call's head and then drip its body one byte every ``DRIP`` seconds, opening a
new connection whenever one is closed; one client calls ``/healthz`` and another a vignette,
one call after the other, each with a 10 s timeout. Reported: calls answered, timed out, and
their latency percentiles.
"""

from __future__ import annotations

import json
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

from tests.live import LiveServer, start_gunicorn

ATTACKERS = 70
DRIP = 10.0
DURATION = 25.0
HOOK = "/cds-services/salivary-post-treatment-imaging-order-select"
EXAMPLE = (
    Path(__file__).resolve().parent.parent
    / "fhir_examples"
    / ("parotid_mec_after_parotidectomy_and_imrt_local_mri_neck.json")
)
RESULTS = Path(__file__).with_name("slowloris.json")


def _attacker(address: tuple[str, int], stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            with socket.create_connection(address, timeout=5) as conn:
                conn.sendall(
                    f"POST {HOOK} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                    "Content-Length: 100000\r\n\r\n{".encode()
                )
                while not stop.wait(DRIP):
                    conn.sendall(b" ")
        except OSError:
            time.sleep(0.05)  # closed by the server (408): open another


def _healthy(url: str, body: Any, stop: threading.Event, out: dict[str, list[float]]) -> None:
    with requests.Session() as session:
        while not stop.is_set():
            started = time.monotonic()
            try:
                if body is None:
                    ok = session.get(url, timeout=10).status_code == 200
                else:
                    ok = session.post(url, json=body, timeout=10).status_code == 200
            except requests.RequestException:
                ok = False
            took = time.monotonic() - started
            out["ok" if ok else "failed"].append(took)
            time.sleep(0.1)


def _summary(samples: dict[str, list[float]]) -> dict[str, Any]:
    ok = sorted(samples["ok"])
    if not ok:
        return {"answered": 0, "failed": len(samples["failed"])}
    return {
        "answered": len(ok),
        "failed_or_timed_out": len(samples["failed"]),
        "p50_ms": round(statistics.median(ok) * 1000, 1),
        "p95_ms": round(ok[int(0.95 * (len(ok) - 1))] * 1000, 1),
        "max_ms": round(ok[-1] * 1000, 1),
    }


def run(worker: str | None) -> dict[str, Any]:
    env = {"CDS_ENVIRONMENT": "development"}
    if worker:
        env["GUNICORN_CMD_ARGS"] = f"--worker-class {worker}"
    server: LiveServer = start_gunicorn(Path(tempfile.mkdtemp(prefix="slowloris-")), **env)
    host, port = server.url.removeprefix("http://").split(":")
    stop = threading.Event()
    health: dict[str, list[float]] = {"ok": [], "failed": []}
    hook: dict[str, list[float]] = {"ok": [], "failed": []}
    body = json.loads(EXAMPLE.read_text())
    threads = [
        threading.Thread(target=_attacker, args=((host, int(port)), stop), daemon=True)
        for _ in range(ATTACKERS)
    ]
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)  # every attacker connected
        healthy = [
            threading.Thread(target=_healthy, args=(f"{server.url}/healthz", None, stop, health)),
            threading.Thread(target=_healthy, args=(f"{server.url}{HOOK}", body, stop, hook)),
        ]
        for t in healthy:
            t.start()
        time.sleep(DURATION)
        stop.set()
        for t in healthy:
            t.join()
    finally:
        stop.set()
        server.stop()
    return {"healthz": _summary(health), "hook_call": _summary(hook)}


def main() -> None:
    results = {
        "setup": (
            f"{ATTACKERS} connections dripping a body 1 byte / {DRIP:g} s for {DURATION:g} s; "
            "gunicorn with the default settings (2 workers x 32 threads); one client on "
            "/healthz, one on a vignette's hook call, sequential, 10 s timeout each"
        ),
        "service_worker": run(None),
        "stock_gthread": run("gthread"),
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
