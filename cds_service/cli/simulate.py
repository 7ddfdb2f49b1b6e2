"""``salivary-cds simulate EXPORT_DIR``: what the service would have said over a bulk export.

Every imaging order authored in the window is sent through the same engine as order-select,
with the record as it stood when the order was placed; the aggregate report (HTML and CSV, no
patient data) goes to ``--out``, and with ``--per-order`` a CSV of every order and card for
chart review (PHI). ``--partition K/N`` runs the K-th of N disjoint sets of patients, so that a
batch scheduler can fan out a network's export; ``--merge`` adds the partitions' tallies up.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cds_service.cli.simulation.export import DEFAULT_MEMORY_LIMIT, BulkExport, Window
from cds_service.cli.simulation.page import PER_ORDER_FILE, OrdersCsv, RunFacts, write_report
from cds_service.cli.simulation.progress import Progress
from cds_service.cli.simulation.run import Simulator
from cds_service.cli.simulation.snapshot import PatientHistory
from cds_service.cli.simulation.tally import Tally
from cds_service.config import load_settings
from cds_service.contract.errors import InputFileError
from cds_service.engine import CdsEngine
from cds_service.fhir.fact_cache import FactCache
from cds_service.knowledge.loader import load_knowledge
from cds_service.knowledge.site import load_site

TALLY_FILE = "simulation.json"
#: Fact cache entries (resources and drafts read): a long record's worth, a few times over.
FACT_CACHE_ENTRIES = 10_000


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date or time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _partition(text: str) -> tuple[int, int]:
    part, _, of = text.partition("/")
    try:
        k, n = int(part), int(of)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--partition is K/N (e.g. 3/8), not {text!r}") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"--partition {text}: K must be between 1 and N")
    return k, n


def add_parser(commands: Any) -> None:
    """The ``simulate`` subcommand's arguments (``commands`` is argparse's subparsers)."""
    p = commands.add_parser(
        "simulate",
        help="what the service would have said over a bulk FHIR export (a report, no PHI)",
    )
    p.add_argument(
        "export",
        type=Path,
        nargs="?",
        metavar="EXPORT_DIR",
        help="the export folder (NDJSON, .gz or not)",
    )
    p.add_argument("--since", type=_instant, metavar="DATE", help="orders authored from (ISO)")
    p.add_argument("--until", type=_instant, metavar="DATE", help="orders authored before (ISO)")
    p.add_argument("--site", type=Path, metavar="DIR", help="site folder (default CDS_SITE_DIR)")
    p.add_argument(
        "--out", type=Path, default=Path("simulation"), metavar="DIR", help="report folder"
    )
    p.add_argument(
        "--per-order",
        action="store_true",
        help=f"also write {PER_ORDER_FILE}: every order and card, with patient ids (PHI)",
    )
    p.add_argument(
        "--partition",
        type=_partition,
        default=(1, 1),
        metavar="K/N",
        help="K/N: the K-th of N patient sets",
    )
    p.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        metavar="DIR",
        help=f"add up the {TALLY_FILE} of these partition folders into --out (no export read)",
    )
    p.add_argument("--memory-limit", default=DEFAULT_MEMORY_LIMIT, help="DuckDB's (e.g. 2GB)")
    p.add_argument("--threads", type=int, default=None, help="DuckDB's threads (default: all)")
    p.add_argument("--work-dir", type=Path, metavar="DIR", help="where DuckDB's file goes")


@dataclass(frozen=True)
class Result:
    tally: Tally
    written: list[Path]
    per_order: Path | None
    #: Seconds DuckDB took to read the export; seconds for everything.
    load_seconds: float = 0.0
    seconds: float = 0.0


def build_simulation_engine(site_dir: Path | None) -> CdsEngine:
    """The engine as the service builds it, with the given site folder, and a fact cache: a
    patient's resources are read again for each of their orders. Its keys include the patient,
    and patients come one after another, so a few patients' worth of entries is enough (and
    keeps the cache from growing with the export)."""
    settings = load_settings()
    knowledge = load_knowledge(settings.hooks_dir)
    site = load_site(site_dir or settings.site_dir, knowledge.imaging.study_keys())
    return CdsEngine(knowledge, site=site, fact_cache=FactCache(FACT_CACHE_ENTRIES, 3600.0))


def simulate(
    engine: CdsEngine,
    export: Path,
    out: Path,
    window: Window,
    per_order: bool = False,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
    threads: int | None = None,
    work_dir: Path | None = None,
    progress: Callable[[int], Progress] | None = None,
) -> Result:
    """Run the simulation and write its report; the per-order file only when asked."""
    started = time.monotonic()
    simulator = Simulator(engine)
    tally = Tally()
    out.mkdir(parents=True, exist_ok=True)
    since = int(window.since.timestamp() * 1_000_000) if window.since else None
    until = int(window.until.timestamp() * 1_000_000) if window.until else None
    orders_file = OrdersCsv(out / PER_ORDER_FILE) if per_order else None
    try:
        with BulkExport(export, memory_limit, threads, work_dir) as bulk:
            loaded = time.monotonic() - started
            total, _patients = bulk.order_count(window)
            tally.undated_orders = bulk.undated_orders(window)
            bar = progress(total) if progress else None
            for pid, rows in bulk.patients(window):
                history = PatientHistory(pid, rows)
                outcomes = list(simulator.orders(history, since, until))
                tally.add_patient(outcomes, history.undated_left_out)
                if orders_file is not None:
                    for o in outcomes:
                        orders_file.add(o)
                if bar is not None:
                    bar.advance(len(outcomes))
            if bar is not None:
                bar.finish()
    finally:
        if orders_file is not None:
            orders_file.close()
    facts = RunFacts(
        export=export.name,
        window=_window_text(window),
        partition=f"partition {window.part} of {window.of}" if window.of > 1 else "all",
        knowledge_version=engine.version,
        seconds=time.monotonic() - started,
    )
    written = _write(tally, facts, engine, out)
    per_order_path = orders_file.path if orders_file else None
    return Result(tally, written, per_order_path, loaded, facts.seconds)


def _window_text(window: Window) -> str:
    since = window.since.isoformat() if window.since else "the start"
    until = window.until.isoformat() if window.until else "the end of the export"
    return f"from {since} to before {until}"


def _write(tally: Tally, facts: RunFacts, engine: CdsEngine, out: Path) -> list[Path]:
    orders = {str(key): o.text for key, o in engine.knowledge.cards.orders.items()}
    written = write_report(tally, facts, orders, out)
    (out / TALLY_FILE).write_text(json.dumps(tally.to_json(), indent=1) + "\n", encoding="utf-8")
    return [*written, out / TALLY_FILE]


def merge(engine: CdsEngine, folders: list[Path], out: Path) -> list[Path]:
    """Add up the partitions' tallies (disjoint patients) and write one report."""
    total = Tally()
    for folder in folders:
        try:
            data = json.loads((folder / TALLY_FILE).read_text(encoding="utf-8"))
            total.merge(Tally.from_json(data))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputFileError(f"{folder / TALLY_FILE}: cannot read ({exc})") from exc
    facts = RunFacts("merged", f"{len(folders)} partitions", "all partitions", engine.version, 0.0)
    return _write(total, facts, engine, out)


def _stop(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def run(args: argparse.Namespace) -> int:
    """The command: progress on stderr when it is a terminal, a summary on stdout."""
    engine = build_simulation_engine(args.site)
    if args.merge:
        written = merge(engine, args.merge, args.out)
        print(f"{len(args.merge)} partitions merged; report written to {written[-2].parent}")
        return 0
    if args.export is None:
        raise InputFileError("simulate needs the export folder (or --merge)")
    part, of = args.partition
    window = Window(args.since, args.until, part, of)
    if args.per_order:
        print(
            f"PHI: {args.out / PER_ORDER_FILE} will hold patient and order ids for chart review; "
            "keep it where patient data may be kept.",
            file=sys.stderr,
        )
    tty = sys.stderr.isatty()
    # A batch scheduler stops a job with SIGTERM: exit through the finally blocks, so that the
    # DuckDB folder (patient data) is deleted.
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        result = simulate(
            engine,
            args.export,
            args.out,
            window,
            args.per_order,
            args.memory_limit,
            args.threads,
            args.work_dir,
            lambda total: Progress(total, sys.stderr, tty),
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
    t = result.tally
    print(
        f"{t.service_requests} orders in the window, {t.imaging} imaging, {t.in_scope} in scope, "
        f"{sum(t.cards.values())} cards; report (no patient data) in {args.out}/simulation.html"
    )
    if result.per_order is not None:
        print(f"PHI: per-order cards in {result.per_order}")
    return 0
