"""The EHR's FHIR server is a blackhole: does the service stay fast for everyone else?

``.venv/bin/python -m benchmarks.failures`` (about 40 s, bounded): gunicorn with the default
settings (2 workers, 32 threads each) on loopback, and a loopback server that accepts
connections and never answers. For ``--seconds`` per scenario, 50 concurrent clients:
- 25 send calls whose optional ``devices`` key must be fetched from the blackhole;
- 20 send calls whose prefetch is complete (they never need the FHIR server);
- 5 ask for discovery.
Two scenarios: with the circuit breaker as configured (it opens after 5 failures), and with it
effectively off (the no-stall mechanism alone). Targets (issue 10): complete-prefetch p99
≤ 200 ms and discovery ≤ 100 ms; each blackholed call within its deadline + 250 ms; no 5xx.
Writes benchmarks/failures.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import requests

from benchmarks.run import percentiles, start_gunicorn
from tests.faulty_servers import FaultyServer, blackhole

ROOT = Path(__file__).resolve().parent.parent
HOOK = "/cds-services/salivary-post-treatment-imaging-order-select"
VIGNETTE = ROOT / "fhir_examples" / "parotid_mec_after_parotidectomy_and_imrt_local_mri_neck.json"
DEADLINE = 2.0  # the default CDS_FHIR_DEADLINE


def scenario(url: str, hole: str, seconds: float) -> dict[str, Any]:
    complete = json.loads(VIGNETTE.read_text())
    fetching = json.loads(VIGNETTE.read_text())
    fetching["fhirServer"] = hole
    del fetching["prefetch"]["devices"]
    samples: dict[str, list[float]] = defaultdict(list)
    statuses: dict[int, int] = defaultdict(int)
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(kind: str) -> None:
        with requests.Session() as session:
            while time.monotonic() < stop_at:
                started = time.monotonic()
                if kind == "discovery":
                    response = session.get(f"{url}/cds-services", timeout=30)
                else:
                    body = complete if kind == "complete" else fetching
                    response = session.post(f"{url}{HOOK}", json=body, timeout=30)
                took = (time.monotonic() - started) * 1000
                with lock:
                    samples[kind].append(took)
                    statuses[response.status_code] += 1

    kinds = ["blackholed"] * 25 + ["complete"] * 20 + ["discovery"] * 5
    threads = [threading.Thread(target=client, args=(k,)) for k in kinds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result: dict[str, Any] = {
        kind: {"calls": len(values), **{k: round(v, 1) for k, v in percentiles(values).items()}}
        | {"max": round(max(values), 1)}
        for kind, values in samples.items()
    }
    result["statuses"] = dict(statuses)
    result["server_errors"] = sum(n for status, n in statuses.items() if status >= 500)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    hole = FaultyServer(blackhole()).start()
    results: dict[str, Any] = {}
    work = Path(tempfile.mkdtemp(prefix="cds-failures-"))
    try:
        for name, breaker_failures in (("breaker on", "5"), ("breaker off", "1000")):
            label = name.replace(" ", "-")
            process, url = start_gunicorn(
                "cds_service.web.app:create_app()",
                work / label,
                work / f"{label}.log",
                CDS_LOG_LEVEL="WARNING",
                CDS_FHIR_BREAKER_FAILURES=breaker_failures,
            )
            try:
                results[name] = scenario(url, hole.base, args.seconds)
            finally:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=15)
    finally:
        hole.stop()
    results["targets"] = {
        "complete_p99_ms": 200,
        "discovery_max_ms": 100,
        "blackholed_max_ms": DEADLINE * 1000 + 250,
        "server_errors": 0,
    }
    (ROOT / "benchmarks" / "failures.json").write_text(json.dumps(results, indent=2) + "\n")
    for name in ("breaker on", "breaker off"):
        r = results[name]
        print(
            f"{name:11}  complete p50/p99 {r['complete']['p50']}/{r['complete']['p99']} ms"
            f"  discovery p99/max {r['discovery']['p99']}/{r['discovery']['max']} ms"
            f"  blackholed p50/max {r['blackholed']['p50']}/{r['blackholed']['max']} ms"
            f"  5xx {r['server_errors']}  ({r['statuses']})"
        )


if __name__ == "__main__":
    main()
