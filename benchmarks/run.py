"""One command for all figures: ``.venv/bin/python -m benchmarks.run`` (about two minutes).

Measures, on this machine:
1. in-process latency (p50/p95/p99) of order-select through the Flask test client, for a typical
   (~50 resources), a large (~2,000) and a negative request;
2. throughput and latency over loopback with gunicorn (2 workers), driven by wrk, for the service
   and, in the same run and settings, a bare Flask endpoint that parses the same body: the ratio;
3. the fallback path: 3 missing prefetch keys fetched from a loopback FHIR server;
4. peak memory (RSS) of a gunicorn worker after the load.
Prints a table and writes benchmarks/results.json. Targets are in README "Speed".
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from benchmarks.workload import make_request, resource_count
from cds_service.app import create_app, initialise
from cds_service.config import Settings
from cds_service.logs import configure_logging

ROOT = Path(__file__).resolve().parent.parent
SERVICE = "salivary-post-treatment-imaging-order-select"
HOOK = f"/cds-services/{SERVICE}"
TARGETS = {
    "inprocess_typical_p50_ms": 2.0,
    "inprocess_large_p50_ms": 15.0,
    "loopback_typical_rps": 1000.0,
    "ratio_to_bare": 0.6,
    "fallback_p50_ms": 30.0,
}


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "p50": pick(0.50),
        "p95": pick(0.95),
        "p99": pick(0.99),
        "mean": statistics.fmean(ordered),
    }


def time_calls(call: Callable[[], Any], iterations: int, warmup: int = 20) -> dict[str, float]:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(iterations):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return percentiles(samples)


def _production_like_app(data_dir: Path) -> Any:
    """The app as a gunicorn worker has it: built, then start-up objects frozen (gc.freeze)."""
    settings = Settings(data_dir=data_dir, log_level="WARNING")
    configure_logging(settings.log_level)  # as the entry points do: JSON lines, warnings only
    initialise(settings)
    app = create_app(settings)
    gc.collect()
    gc.freeze()
    return app


def in_process(data_dir: Path, iterations: int) -> dict[str, Any]:
    app = _production_like_app(data_dir)
    client = app.test_client()
    results = {}
    for kind in ("typical", "large", "negative"):
        body = json.dumps(make_request(kind))
        count = resource_count(make_request(kind))

        def call(body: str = body) -> None:
            response = client.post(HOOK, data=body, content_type="application/json")
            assert response.status_code == 200, response.get_data(as_text=True)[:300]

        n = iterations if kind != "large" else max(50, iterations // 5)
        results[kind] = {"resources": count, **time_calls(call, n)}
    return results


def fallback(data_dir: Path, iterations: int) -> dict[str, float]:
    sys.path.insert(0, str(ROOT))
    from tests.fhir_standin import FhirStandIn

    request = make_request("typical")
    resources = [
        e["resource"]
        for key in ("conditions", "procedures", "devices")
        for e in request["prefetch"][key]["entry"]
    ]
    server = FhirStandIn(resources).start()
    try:
        for key in ("conditions", "procedures", "devices"):
            del request["prefetch"][key]
        request["fhirServer"] = server.base
        request["fhirAuthorization"] = {"access_token": "bench", "token_type": "Bearer"}
        body = json.dumps(request)
        client = _production_like_app(data_dir).test_client()

        def call() -> None:
            response = client.post(HOOK, data=body, content_type="application/json")
            assert response.status_code == 200, response.get_data(as_text=True)[:300]

        return time_calls(call, iterations)
    finally:
        server.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_gunicorn(
    app_spec: str, data_dir: Path, log: Path, **settings: str
) -> tuple[subprocess.Popen[bytes], str]:
    """gunicorn with the service's configuration on a free loopback port (2 workers), and its
    URL once it answers; ``settings`` are further environment variables."""
    port = _free_port()
    env = dict(
        os.environ,
        CDS_BIND=f"127.0.0.1:{port}",
        CDS_WORKERS="2",
        CDS_DATA_DIR=str(data_dir),
        **settings,
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    with log.open("wb") as out:
        process = subprocess.Popen(
            [gunicorn, "-c", "python:cds_service.gunicorn_conf", app_spec],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"{url}/healthz" if "cds_service" in app_spec else url, timeout=1)
            return process, url
        except requests.ConnectionError:
            time.sleep(0.2)
    raise RuntimeError(f"{app_spec} did not start: {log.read_text()[-1000:]}")


def _worker_peak_rss_kib(master: int) -> int:
    peaks = []
    for child in Path("/proc").iterdir():
        if not child.name.isdigit():
            continue
        try:
            status = (child / "status").read_text()
        except OSError:
            continue
        if re.search(rf"^PPid:\s+{master}$", status, re.M):
            match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
            if match:
                peaks.append(int(match.group(1)))
    return max(peaks) if peaks else 0


def _wrk(url: str, body_file: Path, seconds: int, connections: int) -> dict[str, float]:
    script = body_file.with_suffix(".lua")
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'local f = io.open("{body_file}", "rb")\nwrk.body = f:read("*all")\nf:close()\n'
    )
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            url + HOOK,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)

    def latency(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)", out, re.M)
        if not match:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return {
        "rps": rps,
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "errors": int(non2xx.group(1)) if non2xx else 0,
    }


def loopback(data_dir: Path, seconds: int, connections: int) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        return {"skipped": "wrk is not installed (apt-get install wrk)"}
    body_file = data_dir / "typical.json"
    body_file.write_text(json.dumps(make_request("typical")))
    results: dict[str, Any] = {}
    for name, spec in (
        ("service", "cds_service.app:create_app()"),
        ("bare", "benchmarks.bare_app:create_bare_app()"),
    ):
        process, url = start_gunicorn(spec, data_dir, data_dir / f"{name}.log")
        try:
            _wrk(url, body_file, 2, connections)  # warm-up
            results[name] = _wrk(url, body_file, seconds, connections)
            results[name]["worker_peak_rss_mib"] = round(
                _worker_peak_rss_kib(process.pid) / 1024, 1
            )
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
    results["ratio_to_bare"] = round(results["service"]["rps"] / results["bare"]["rps"], 3)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--skip-loopback", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cds-bench-") as tmp:
        data_dir = Path(tmp)
        results: dict[str, Any] = {
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
            "in_process_ms": in_process(data_dir, args.iterations),
            "fallback_ms": fallback(data_dir, max(200, args.iterations // 5)),
        }
        if not args.skip_loopback:
            results["loopback"] = loopback(data_dir, args.seconds, args.connections)
    report(results)
    (ROOT / "benchmarks" / "results.json").write_text(json.dumps(results, indent=2) + "\n")


def report(results: dict[str, Any]) -> None:
    print(f"machine: {results['machine']}")
    print("\nin-process (Flask test client), ms")
    print(f"{'request':<10}{'resources':>10}{'p50':>9}{'p95':>9}{'p99':>9}")
    for kind, figures in results["in_process_ms"].items():
        print(
            f"{kind:<10}{figures['resources']:>10}{figures['p50']:>9.2f}{figures['p95']:>9.2f}{figures['p99']:>9.2f}"
        )
    fb = results["fallback_ms"]
    print("\nfallback (3 keys from a loopback FHIR server), ms: ", end="")
    print(f"p50 {fb['p50']:.2f}  p95 {fb['p95']:.2f}  p99 {fb['p99']:.2f}")
    loop = results.get("loopback")
    if loop and "skipped" not in loop:
        print("\nloopback, gunicorn 2 workers, wrk, typical request")
        for name in ("service", "bare"):
            f = loop[name]
            print(
                f"{name:<8} {f['rps']:>8.0f} req/s  p50 {f['p50_ms']:.2f} ms  "
                f"p99 {f['p99_ms']:.2f} ms  errors {f['errors']}  "
                f"worker peak RSS {f['worker_peak_rss_mib']} MiB"
            )
        print(f"ratio service/bare: {loop['ratio_to_bare']:.2f}")
    elif loop:
        print(f"\nloopback: {loop['skipped']}")
    print("\ntargets:", ", ".join(f"{k} {v}" for k, v in TARGETS.items()))


if __name__ == "__main__":
    main()
