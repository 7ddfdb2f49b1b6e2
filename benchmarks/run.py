"""One command for all figures: ``.venv/bin/python -m benchmarks.run`` (about two minutes).

Measures, on this machine:
1. in-process latency (p50/p95/p99) of order-select through the Flask test client, for a typical
   (~50 resources), a large (~2,000) and a negative request;
2. CPU time per in-process call of the cold and session workloads (benchmarks.workload), service
   and bare endpoint, in interleaved batches;
3. throughput and latency over loopback with gunicorn (2 workers), driven by wrk, for both
   workloads, the service and a bare Flask endpoint that parses the same bodies running side by
   side, in alternating rounds: the ratios;
4. the fallback path: 3 missing prefetch keys fetched from a loopback FHIR server;
5. memory (RSS) of the gunicorn workers after warm-up and after the load.
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

from benchmarks.workload import (
    PATIENT_MARK,
    make_request,
    mix_calls,
    non_imaging_calls,
    personalised,
    resource_count,
    session_calls,
)
from cds_service.config import Settings
from cds_service.web.app import create_app, initialise
from cds_service.web.logs import configure_logging

ROOT = Path(__file__).resolve().parent.parent
SERVICE = "salivary-post-treatment-imaging-order-select"
HOOK = f"/cds-services/{SERVICE}"
TARGETS = {
    "inprocess_typical_p50_ms": 2.0,
    "inprocess_large_p50_ms": 15.0,
    "loopback_typical_rps": 1000.0,
    "session_ratio_to_bare": 0.6,
    "cold_ratio_to_bare": 0.45,
    "p99_over_p50": 3.0,
    "fallback_p50_ms": 30.0,
    "non_imaging_ratio_to_bare": 0.85,
    "mix_ratio_to_bare": 0.6,
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


def in_process_workloads(data_dir: Path, batches: int, calls: int) -> dict[str, Any]:
    """CPU time per call (process time, ms) of the cold and session workloads, through the
    service and the bare endpoint in-process, in interleaved batches: medians over batches.

    Steadier than the loopback figures on a shared machine (time stolen by other guests is not
    counted), so each speed lever's effect can be read here; the loopback ratio is the target.
    """
    from benchmarks.bare_app import create_bare_app

    clients = {
        "service": _production_like_app(data_dir).test_client(),
        "bare": create_bare_app().test_client(),
    }
    prepared = {
        name: [
            (first, route, json.dumps(request)) for first, route, request in workload_calls(name)
        ]
        for name in ("cold", "session")
    }
    samples: dict[str, dict[str, list[float]]] = {w: {t: [] for t in clients} for w in prepared}
    patient = 0
    for batch in range(batches + 1):  # the first batch warms up
        for workload, sequence in prepared.items():
            for target, client in clients.items():
                bodies = []
                for index in range(calls):
                    first, route, body = sequence[index % len(sequence)]
                    patient += first
                    bodies.append((route, body.replace(PATIENT_MARK, f"b{batch}n{patient}")))
                started = time.process_time()
                for route, body in bodies:
                    response = client.post(route, data=body, content_type="application/json")
                    assert response.status_code == 200, response.get_data(as_text=True)[:300]
                if batch:
                    samples[workload][target].append((time.process_time() - started) * 1000 / calls)
    results: dict[str, Any] = {"batches": batches, "calls_per_batch": calls}
    for workload, by_target in samples.items():
        figures = {target: round(statistics.median(ms), 3) for target, ms in by_target.items()}
        results[workload] = {
            "cpu_ms_per_call": figures,
            "ratio_to_bare": round(figures["bare"] / figures["service"], 3),
        }
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
            [gunicorn, "-c", "python:cds_service.web.gunicorn_conf", app_spec],
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


def _worker_memory_kib(master: int) -> list[dict[str, int]]:
    """Resident and peak resident memory (VmRSS, VmHWM) of each worker of a gunicorn master."""
    workers = []
    for child in Path("/proc").iterdir():
        if not child.name.isdigit():
            continue
        try:
            status = (child / "status").read_text()
        except OSError:
            continue
        if re.search(rf"^PPid:\s+{master}$", status, re.M):
            rss = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
            peak = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
            if rss and peak:
                workers.append({"rss": int(rss.group(1)), "peak": int(peak.group(1))})
    return workers


#: wrk's request generator: each call of the workload file in turn, each patient new. A line of
#: the file is "<1 if the call starts a patient's session>\t<path>\t<body>"; the body's
#: PATIENT_MARK becomes "<run>t<thread>p<patient number>", unique in the whole benchmark.
WRK_SCRIPT = """
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local calls = {}
local run
function init(args)
  run = args[1]
  for line in io.lines(args[2]) do
    local first, path, body = line:match("^(%d)\\t([^\\t]+)\\t(.*)$")
    table.insert(calls, {first == "1", path, body})
  end
end
local n, patient = 0, 0
local headers = {["Content-Type"] = "application/json"}
function request()
  local call = calls[(n % #calls) + 1]
  n = n + 1
  if call[1] then patient = patient + 1 end
  local body = (call[3]:gsub("@P@", run .. "t" .. tid .. "p" .. patient))
  return wrk.format("POST", call[2], headers, body)
end
"""


def workload_calls(name: str) -> list[tuple[bool, str, dict[str, Any]]]:
    """The calls of one workload, as (starts a patient, path, request with PATIENT_MARK).

    cold: every call the typical order-select request of a new patient (new ids, new contents);
    session: ordering sessions of 2, 3, 4 and 5 order-select calls then an order-sign, for the
    same patient with the same prefetched resources (4.5 calls a patient on average)."""
    if name == "cold":
        return [(True, HOOK, personalised(make_request("typical"), PATIENT_MARK))]
    if name == "non-imaging":  # medication and lab calls, no prefetch: each a new patient
        return [
            (True, f"/cds-services/{service}", personalised(request, PATIENT_MARK))
            for service, request in non_imaging_calls()
        ]
    if name == "mix":  # 85% of those, 15% the typical imaging call with its prefetch
        return [
            (True, f"/cds-services/{service}", personalised(request, PATIENT_MARK))
            for _, service, request in mix_calls()
        ]
    calls = []
    for selects in (2, 3, 4, 5):
        for index, (service, request) in enumerate(session_calls(selects)):
            calls.append(
                (index == 0, f"/cds-services/{service}", personalised(request, PATIENT_MARK))
            )
    return calls


def _write_workload(name: str, folder: Path) -> Path:
    path = folder / f"{name}.calls"
    lines = []
    for first, route, request in workload_calls(name):
        body = json.dumps(request, separators=(",", ":"))
        assert "\t" not in body, "a tab would break the line format"
        assert "\n" not in body, "a newline would break the line format"
        lines.append(f"{int(first)}\t{route}\t{body}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _check_workload(url: str, name: str, service: bool) -> None:
    """Every call of the workload answers 200 (and the service's first imaging call a card;
    every non-imaging call none) before any figure is taken: a workload of 4xx answers would
    measure nothing."""
    imaging = (
        [False] * len(non_imaging_calls())
        if name == "non-imaging"
        else [i for i, _, _ in mix_calls()]
        if name == "mix"
        else [True] * len(workload_calls(name))
    )
    for index, (_, route, request) in enumerate(workload_calls(name)):
        body = json.dumps(request).replace(PATIENT_MARK, f"check{index}")
        response = requests.post(
            url + route, data=body, headers={"Content-Type": "application/json"}, timeout=10
        )
        assert response.status_code == 200, (name, route, response.text[:300])
        if service and not imaging[index]:
            assert response.json() == {"cards": []}, f"{name}: call {index} is not empty"
        if service and imaging[index] and True not in imaging[:index]:
            assert response.json()["cards"], f"{name}: the first imaging call gave no card"


def _wrk(url: str, calls: Path, run: str, seconds: int, connections: int) -> dict[str, float]:
    script = calls.with_suffix(".lua")
    script.write_text(WRK_SCRIPT)
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            url,
            "--",
            run,
            str(calls),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    failed = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)

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
        "errors": (int(non2xx.group(1)) if non2xx else 0)
        + (sum(int(n) for n in failed.groups()) if failed else 0),
    }


def _median(runs: list[dict[str, float]], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 2)


def loopback(
    data_dir: Path,
    seconds: int,
    connections: int,
    rounds: int,
    names: tuple[str, ...] = ("cold", "session"),
) -> dict[str, Any]:
    """The workloads ``names`` against the service and the bare endpoint, both running at once,
    in alternating rounds (service, bare, service, bare...) so that the machine's drift touches
    both alike; the figures are the medians over the rounds."""
    if shutil.which("wrk") is None:
        return {"skipped": "wrk is not installed (apt-get install wrk)"}
    workloads = {name: _write_workload(name, data_dir) for name in names}
    servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    try:
        for name, spec in (
            ("service", "cds_service.web.app:create_app()"),
            ("bare", "benchmarks.bare_app:create_bare_app()"),
        ):
            servers[name] = start_gunicorn(spec, data_dir, data_dir / f"{name}.log")
        for target, (_, url) in servers.items():
            for workload in workloads:
                _check_workload(url, workload, service=target == "service")
            _wrk(url, workloads[names[0]], f"warm{target}", 3, connections)
        after_warm_up = {t: _worker_memory_kib(p.pid) for t, (p, _) in servers.items()}
        runs: dict[str, dict[str, list[dict[str, float]]]] = {
            w: {t: [] for t in servers} for w in workloads
        }
        for round_ in range(rounds):
            for workload, calls in workloads.items():
                for target, (_, url) in servers.items():
                    run = f"{workload[0]}{round_}{target[0]}"
                    runs[workload][target].append(_wrk(url, calls, run, seconds, connections))
        results: dict[str, Any] = {"rounds": rounds, "seconds": seconds, "connections": connections}
        for workload, by_target in runs.items():
            figures: dict[str, Any] = {}
            for target, measured in by_target.items():
                figures[target] = {
                    "rps": _median(measured, "rps"),
                    "p50_ms": _median(measured, "p50_ms"),
                    "p99_ms": _median(measured, "p99_ms"),
                    "errors": sum(int(r["errors"]) for r in measured),
                    "rounds": measured,
                }
            figures["ratio_to_bare"] = round(figures["service"]["rps"] / figures["bare"]["rps"], 3)
            figures["ratio_by_round"] = [
                round(s["rps"] / b["rps"], 3)
                for s, b in zip(by_target["service"], by_target["bare"], strict=True)
            ]
            results[workload] = figures
        for target, (process, _) in servers.items():
            before, after = after_warm_up[target], _worker_memory_kib(process.pid)
            results[f"{target}_workers_mib"] = {
                "rss_after_warm_up": [round(w["rss"] / 1024, 1) for w in before],
                "rss_at_end": [round(w["rss"] / 1024, 1) for w in after],
                "peak": [round(w["peak"] / 1024, 1) for w in after],
            }
        return results
    finally:
        for process, _ in servers.values():
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--skip-loopback", action="store_true")
    parser.add_argument(
        "--mix",
        action="store_true",
        help="only the hospital mix (non-imaging calls, and 85%% of them with 15%% imaging) "
        "against the bare endpoint; stored under 'mix' in results.json",
    )
    args = parser.parse_args()
    if args.mix:
        with tempfile.TemporaryDirectory(prefix="cds-bench-") as tmp:
            mixed = loopback(
                Path(tmp), args.seconds, args.connections, args.rounds, ("non-imaging", "mix")
            )
        report_mix(mixed)
        stored = ROOT / "benchmarks" / "results.json"
        previous = json.loads(stored.read_text()) if stored.exists() else {}
        stored.write_text(json.dumps({**previous, "mix": mixed}, indent=2) + "\n")
        return
    with tempfile.TemporaryDirectory(prefix="cds-bench-") as tmp:
        data_dir = Path(tmp)
        results: dict[str, Any] = {
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
            "in_process_ms": in_process(data_dir, args.iterations),
            "in_process_workloads": in_process_workloads(data_dir, args.batches, 90),
            "fallback_ms": fallback(data_dir, max(200, args.iterations // 5)),
        }
        if not args.skip_loopback:
            results["loopback"] = loopback(data_dir, args.seconds, args.connections, args.rounds)
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
    workloads = results["in_process_workloads"]
    print("\nin-process CPU per call, ms (medians of batches)")
    for workload in ("cold", "session"):
        figures = workloads[workload]
        cpu = figures["cpu_ms_per_call"]
        print(
            f"{workload:<8} service {cpu['service']:.3f}  bare {cpu['bare']:.3f}  "
            f"ratio {figures['ratio_to_bare']:.3f}"
        )
    fb = results["fallback_ms"]
    print("\nfallback (3 keys from a loopback FHIR server), ms: ", end="")
    print(f"p50 {fb['p50']:.2f}  p95 {fb['p95']:.2f}  p99 {fb['p99']:.2f}")
    loop = results.get("loopback")
    if loop and "skipped" not in loop:
        print(
            f"\nloopback, gunicorn 2 workers, wrk {loop['connections']} connections, "
            f"medians of {loop['rounds']} rounds of {loop['seconds']} s"
        )
        for workload in ("cold", "session"):
            for name in ("service", "bare"):
                f = loop[workload][name]
                print(
                    f"{workload:<8}{name:<8} {f['rps']:>8.0f} req/s  p50 {f['p50_ms']:.2f} ms  "
                    f"p99 {f['p99_ms']:.2f} ms  errors {f['errors']}"
                )
            ratios = ", ".join(f"{r:.2f}" for r in loop[workload]["ratio_by_round"])
            print(
                f"{workload:<8}ratio service/bare: {loop[workload]['ratio_to_bare']:.2f} ({ratios})"
            )
        for name in ("service", "bare"):
            print(f"{name} workers, MiB: {loop[f'{name}_workers_mib']}")
    elif loop:
        print(f"\nloopback: {loop['skipped']}")
    print("\ntargets:", ", ".join(f"{k} {v}" for k, v in TARGETS.items()))


def report_mix(loop: dict[str, Any]) -> None:
    if "skipped" in loop:
        print(f"mix: {loop['skipped']}")
        return
    print(
        f"hospital mix, gunicorn 2 workers, wrk {loop['connections']} connections, "
        f"medians of {loop['rounds']} rounds of {loop['seconds']} s"
    )
    for workload in ("non-imaging", "mix"):
        for name in ("service", "bare"):
            f = loop[workload][name]
            print(
                f"{workload:<12}{name:<8} {f['rps']:>8.0f} req/s  p50 {f['p50_ms']:.2f} ms  "
                f"p99 {f['p99_ms']:.2f} ms  errors {f['errors']}"
            )
        ratios = ", ".join(f"{r:.2f}" for r in loop[workload]["ratio_by_round"])
        print(f"{workload:<12}ratio service/bare: {loop[workload]['ratio_to_bare']:.2f} ({ratios})")
    print(
        f"targets: non-imaging {TARGETS['non_imaging_ratio_to_bare']}, "
        f"mix {TARGETS['mix_ratio_to_bare']}"
    )


if __name__ == "__main__":
    main()
