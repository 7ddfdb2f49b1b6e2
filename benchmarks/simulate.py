"""Simulation throughput and memory over generated bulk exports of growing size.

``.venv/bin/python -m benchmarks.simulate [--sizes 1000 10000 100000]`` writes, for each size,
an export of that many patients (benchmarks/bulk_export.py: one in ten with a treated parotid
cancer and its timeline, the rest with routine imaging and laboratory orders; NDJSON, four
files per type) and runs the simulation on it in a fresh process, which reports its peak
memory (maximum resident set size: Python, the engine and DuckDB together) and CPU time (the
host is shared: wall-clock rates move with the neighbours' load). Prints a table and
writes benchmarks/simulate-results.json. Figures are in README "Speed".
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "simulate-results.json"

_CHILD = """
import json, resource, sys, time
from pathlib import Path
from cds_service.cli.simulate import build_simulation_engine, simulate
from cds_service.cli.simulation.export import Window
engine = build_simulation_engine(None)
started = time.monotonic()
result = simulate(engine, Path(sys.argv[1]), Path(sys.argv[2]), Window(),
                  memory_limit=sys.argv[3])
t = result.tally
print(json.dumps({
    "seconds": time.monotonic() - started,
    "load_seconds": result.load_seconds,
    "service_requests": t.service_requests,
    "imaging": t.imaging,
    "in_scope": t.in_scope,
    "cards": sum(t.cards.values()),
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "cpu_seconds": sum(resource.getrusage(resource.RUSAGE_SELF)[:2]),
}))
"""


def measure(patients: int, work: Path, memory_limit: str) -> dict[str, Any]:
    from benchmarks.bulk_export import ExportWriter
    from cds_service.knowledge.loader import load_knowledge

    export = work / f"export-{patients}"
    started = time.monotonic()
    counts = ExportWriter(load_knowledge(None)).write(export, patients, files_per_type=4)
    written = time.monotonic() - started
    size = sum(p.stat().st_size for p in export.iterdir())
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(export), str(work / f"out-{patients}"), memory_limit],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    figures: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    run = figures["seconds"] - figures["load_seconds"]
    figures.update(
        patients=patients,
        resources=sum(counts.values()),
        export_mb=round(size / 2**20, 1),
        write_seconds=round(written, 1),
        orders_per_second=round(figures["service_requests"] / figures["seconds"], 1),
        orders_per_cpu_second=round(figures["service_requests"] / figures["cpu_seconds"], 1),
        imaging_per_second_engine=round(figures["imaging"] / run, 1) if run > 0 else None,
    )
    shutil.rmtree(export)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--memory-limit", default="1GB", help="DuckDB's memory limit")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the JSON written")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="simulate-bench-") as tmp:
        for size in args.sizes:
            rows.append(measure(size, Path(tmp), args.memory_limit))
            r = rows[-1]
            print(
                f"{r['patients']:>8,} patients {r['resources']:>10,} resources "
                f"{r['export_mb']:>8,.1f} MB | {r['service_requests']:>8,} orders "
                f"{r['imaging']:>8,} imaging | load {r['load_seconds']:6.1f} s, "
                f"total {r['seconds']:7.1f} s, {r['orders_per_second']:7,.0f} orders/s, "
                f"{r['orders_per_cpu_second']:7,.0f} per CPU s | "
                f"peak RSS {r['peak_rss_mb']:6,.0f} MB",
                flush=True,
            )
    parent_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    args.results.write_text(
        json.dumps(
            {"memory_limit": args.memory_limit, "runs": rows, "writer_peak_rss_mb": parent_rss},
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
