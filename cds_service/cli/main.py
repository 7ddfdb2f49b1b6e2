"""``salivary-cds``: run the service, or replay vignettes and FHIR Bundles through it."""

from __future__ import annotations

import argparse
import errno
import json
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cds_service.cards.page import SANDBOX_CARD_WIDTH, CardPage, CardSet
from cds_service.cli import simulate
from cds_service.cli.onboarding import (
    OrderableChecker,
    draft_conceptmap,
    format_checks,
    read_export,
)
from cds_service.cli.replay import (
    ReplayError,
    format_response,
    load_json,
    request_from_bundle,
    run_local,
    run_remote,
)
from cds_service.cli.vignettes import (
    VignetteBook,
    default_examples_dir,
    drift,
    golden_response,
    packaged_examples_dir,
    write_examples,
)
from cds_service.config import load_settings, unknown_variables
from cds_service.contract.errors import (
    ConfigurationError,
    DatabaseUnavailableError,
    InputFileError,
    ServiceError,
)
from cds_service.engine import CdsEngine
from cds_service.knowledge.loader import load_knowledge
from cds_service.knowledge.safety_table import SafetyTable
from cds_service.knowledge.safety_table_doc import render_markdown, replace_section
from cds_service.store.report import build_report, format_report
from cds_service.store.report_page import write_page
from cds_service.store.storage import Database
from cds_service.web import startup
from cds_service.web.app import build_engine, initialise
from cds_service.web.logs import configure_logging


def _instant(text: str) -> datetime:
    """An ISO date or date-time; naive ones are read as UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date or time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="salivary-cds", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the service with gunicorn")
    serve.add_argument(
        "--bind", default=None, help="host:port (default CDS_BIND or 127.0.0.1:8080)"
    )
    serve.add_argument("--workers", type=int, default=None, help="worker processes (default 2)")

    commands.add_parser("init-db", help="create the database tables (gunicorn does at start-up)")

    replay = commands.add_parser("replay", help="replay a hook request or a FHIR Bundle")
    replay.add_argument("file", type=Path, help="a hook request (fhir_examples/*.json) or a Bundle")
    replay.add_argument(
        "--service",
        default=None,
        help="service id (default: the one for the request's hook; a Bundle: order-select)",
    )
    replay.add_argument(
        "--url", default=None, help="base URL of a running service; default in-process"
    )
    replay.add_argument("--order-text", default=None, help="Bundle replay: the draft order's name")
    replay.add_argument(
        "--order-cpt", default=None, help="Bundle replay: the draft order's CPT code"
    )
    replay.add_argument(
        "--draft", type=Path, default=None, help="Bundle replay: a ServiceRequest file"
    )
    replay.add_argument("--json", action="store_true", help="print the raw JSON response")

    examples = commands.add_parser(
        "vignettes",
        help="write fhir_examples/ (requests, goldens) from fhir_examples/vignettes.json",
    )
    examples.add_argument("--examples", type=Path, default=None, help="default: fhir_examples/")
    examples.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file differs"
    )

    page = commands.add_parser(
        "cards", help="render every vignette's cards as a client shows them, in one HTML page"
    )
    page.add_argument("--html", type=Path, required=True, help="the page to write")
    page.add_argument("--examples", type=Path, default=None, help="default: fhir_examples/")
    page.add_argument(
        "--card-width",
        type=int,
        default=None,
        help=f"lay the cards out this many CSS px wide, as the CDS Hooks sandbox does "
        f"(its PAMA screen at 1280 px: {SANDBOX_CARD_WIDTH}); default: a wide page",
    )

    onboarding = commands.add_parser(
        "orderables",
        help="onboarding check: how the service reads each of a site's imaging orderables",
    )
    onboarding.add_argument(
        "file", type=Path, help="the site's export: CSV with code, name[, system]"
    )
    onboarding.add_argument(
        "--system", default=None, help="the orderables' code system when the CSV has none"
    )
    onboarding.add_argument(
        "--conceptmap", type=Path, default=None, help="write a draft orderables.json here"
    )

    table = commands.add_parser(
        "safety-table",
        help="print the contrast/kidney/implant decision table as markdown (the README's)",
    )
    table.add_argument(
        "--readme", type=Path, default=None, help="rewrite that file's generated section instead"
    )

    report = commands.add_parser("report", help="cards shown, accepted and overridden")
    report.add_argument(
        "--by", choices=["rule", "card", "version", "suggestion", "day"], default="rule"
    )
    report.add_argument(
        "--since", type=_instant, default=None, help="cards issued from (ISO date or time, UTC)"
    )
    report.add_argument(
        "--until", type=_instant, default=None, help="cards issued before (ISO date or time)"
    )
    report.add_argument(
        "--session-minutes",
        type=int,
        default=30,
        help="a card re-issued for the same order within this many minutes counts once",
    )
    report.add_argument("--format", choices=["table", "csv", "json"], default="table")
    report.add_argument("--database-url", default=None, help="default: DATABASE_URL, else SQLite")
    report.add_argument("--top", type=int, default=3, help="override reasons shown per row")
    report.add_argument(
        "--html", type=Path, default=None, help="also write an HTML page with plots here"
    )
    simulate.add_parser(commands)
    return parser


def _check_bind_free(bind: str) -> None:
    """A taken port is one line naming what to change, not gunicorn's five retries."""
    if bind.startswith("unix:"):
        return
    host, _, port = bind.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        try:
            probe.bind((host, int(port)))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return  # gunicorn says what else is wrong with the address
            raise ConfigurationError(
                f"{bind} is already in use: pass --bind 127.0.0.1:PORT to salivary-cds serve, "
                "or set CDS_BIND, with a free port"
            ) from None


def _serve(args: argparse.Namespace) -> int:
    if args.bind:
        os.environ["CDS_BIND"] = args.bind
    if args.workers:
        os.environ["CDS_WORKERS"] = str(args.workers)
    _check_bind_free(load_settings().bind)
    # gunicorn as a module of this interpreter: found wherever the package is installed.
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "python:cds_service.web.gunicorn_conf",
        "cds_service.web.app:create_app()",
    ]
    os.execv(argv[0], argv)  # noqa: S606 - replaces this process with the service
    return 0  # pragma: no cover - execv does not return


def _replay_service(services: Mapping[str, str], data: object, chosen: str | None) -> str:
    """``--service``, else the service of the request's hook, else (a Bundle) order-select."""
    if chosen:
        return chosen
    hook = data.get("hook") if isinstance(data, dict) else None
    if isinstance(hook, str) and hook:
        if hook not in services:
            raise ReplayError(
                f"no service answers hook {hook!r} (hooks: {', '.join(sorted(services))}); "
                "pass --service"
            )
        return services[hook]
    return services["order-select"]


def _replay(args: argparse.Namespace) -> int:
    if not args.file.exists():
        raise ReplayError(
            f"{args.file}: no such file (the example requests are installed in "
            f"{default_examples_dir()})"
        )
    data = load_json(args.file)
    engine = build_engine(load_settings())
    by_hook: dict[str, str] = {s.hook: s.id for s in engine.knowledge.services.values()}
    service_id = _replay_service(by_hook, data, args.service)
    service = engine.service(service_id)
    if isinstance(data, dict) and data.get("resourceType") == "Bundle":
        draft = load_json(args.draft) if args.draft else None
        request = request_from_bundle(service, data, draft, args.order_text, args.order_cpt)
    elif isinstance(data, dict) and "hook" in data:
        request = data
    else:
        raise ReplayError(f"{args.file}: neither a hook request nor a FHIR Bundle")
    if args.url:
        status, body = run_remote(args.url, service_id, request)
    else:
        status, body = run_local(engine, service_id, request)
    print(json.dumps(body, indent=2) if args.json else format_response(status, body))
    return 0 if status == 200 else 1


def _vignettes(args: argparse.Namespace) -> int:
    root = args.examples or default_examples_dir()
    engine = CdsEngine(load_knowledge(load_settings().hooks_dir))
    book = VignetteBook.load(engine.knowledge, root)
    if not args.check and root == packaged_examples_dir():
        raise InputFileError(
            f"the installed examples ({root}) are not written over: pass --examples with a "
            "checkout's fhir_examples/, or --check to compare"
        )
    if args.check:
        stale = drift(book, engine, root)
        for path in stale:
            print(f"differs: {path}")
        print(f"{len(book.vignettes)} vignettes, {len(stale)} files differ")
        return 1 if stale else 0
    changed = write_examples(book, engine, root)
    print(f"{len(book.vignettes)} vignettes written to {root}; {len(changed)} files changed")
    return 0


def _cards(args: argparse.Namespace) -> int:
    root = args.examples or default_examples_dir()
    engine = build_engine(load_settings())
    book = VignetteBook.load(engine.knowledge, root)
    sets = []
    for name, vignette in book.vignettes.items():
        response = golden_response(engine, vignette, book.today)["response"]
        sets.append(CardSet(name, vignette.description, response.get("cards", [])))
    page = CardPage(args.card_width).render(
        sets, "Salivary imaging CDS: the cards of every vignette"
    )
    try:
        args.html.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise InputFileError(f"{args.html}: cannot write ({exc})") from exc
    shown = sum(len(s.cards) for s in sets)
    print(f"{shown} cards of {len(sets)} vignettes written to {args.html}")
    return 0


def _orderables(args: argparse.Namespace) -> int:
    knowledge = load_knowledge(load_settings().hooks_dir)
    checker = OrderableChecker(knowledge.imaging)
    checks = [checker.check(o) for o in read_export(args.file, args.system)]
    print(format_checks(checks))
    if args.conceptmap:
        draft = json.dumps(draft_conceptmap(checks), indent=2, ensure_ascii=False) + "\n"
        try:
            args.conceptmap.write_text(draft, encoding="utf-8")
        except OSError as exc:
            raise InputFileError(f"{args.conceptmap}: cannot write ({exc})") from exc
        print(f"draft ConceptMap written to {args.conceptmap}: review it before use")
    return 0


def _safety_table(args: argparse.Namespace) -> int:
    knowledge = load_knowledge(load_settings().hooks_dir)
    section = render_markdown(SafetyTable(knowledge.table))
    if args.readme is None:
        print(section, end="")
        return 0
    try:
        document = args.readme.read_text(encoding="utf-8")
        args.readme.write_text(replace_section(document, section), encoding="utf-8")
    except (OSError, ValueError) as exc:
        raise InputFileError(f"{args.readme}: cannot update the safety table ({exc})") from exc
    print(f"safety table written to {args.readme}")
    return 0


def _init_db(_args: argparse.Namespace) -> int:
    initialise(load_settings())
    print("database ready")
    return 0


def _report(args: argparse.Namespace) -> int:
    settings = load_settings()
    source = "--database-url" if args.database_url else settings.database_source()
    try:
        database = Database(args.database_url or settings.database())
        database.create_schema()
    except DatabaseUnavailableError as exc:
        raise DatabaseUnavailableError(f"{exc} (check {source})") from exc
    try:
        rows = build_report(
            database,
            args.by,
            args.top,
            args.since,
            args.until,
            timedelta(minutes=args.session_minutes),
        )
        if args.html:
            write_page(
                database, args.html, args.since, args.until, timedelta(minutes=args.session_minutes)
            )
    finally:
        database.dispose()
    print(format_report(rows, args.format, args.by))
    if args.html:
        print(f"report page written to {args.html}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    commands = {
        "serve": _serve,
        "init-db": _init_db,
        "replay": _replay,
        "vignettes": _vignettes,
        "cards": _cards,
        "report": _report,
        "orderables": _orderables,
        "simulate": simulate.run,
        "safety-table": _safety_table,
    }
    try:
        if args.command != "serve":  # gunicorn's configuration sets up the service's logging
            configure_logging(load_settings().log_level)
            for warning in unknown_variables():
                startup.warn(warning)
        return commands[args.command](args)
    except ServiceError as exc:
        startup.report(exc)
        return startup.EXIT_CONFIGURATION
    except BrokenPipeError:  # the reader went away (`salivary-cds report | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
