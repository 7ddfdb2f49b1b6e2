"""The outcome report as an HTML page with plots (``salivary-cds report --html``).

The same counting as the table (``store.report``: ordering sessions, the latest feedback), drawn
as the simulation report is (``store.charts``: inline SVG, no script): acceptance and override
rates per rule over time, and each rule's override reasons. Time buckets follow the span of the
data: days up to a month, weeks (from Monday) up to half a year, months beyond; a session
counts in the bucket of its first card.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from pathlib import Path

from cds_service.contract.errors import InputFileError
from cds_service.store import charts
from cds_service.store.report import (
    DEFAULT_SESSION,
    HEADER,
    ReportRow,
    build_report,
)
from cds_service.store.storage import Database

#: Override reasons drawn per rule.
TOP_REASONS = 10


def bucket_of(days: Sequence[date]) -> str:
    """'day', 'week' or 'month', from the span of the data."""
    if not days:
        return "day"
    span = (max(days) - min(days)).days
    return "day" if span <= 31 else "week" if span <= 183 else "month"


def _bucket(day: date, size: str) -> str:
    if size == "month":
        return day.strftime("%Y-%m")
    if size == "week":
        return (day - timedelta(days=day.weekday())).isoformat()
    return day.isoformat()


def rates_over_time(
    day_rows: Sequence[ReportRow],
) -> tuple[str, list[str], dict[str, dict[str, tuple[int, int, int]]]]:
    """(bucket size, buckets, rule -> bucket -> (shown, accepted, overridden))."""
    days = [date.fromisoformat(r.key) for r in day_rows if r.key[:1].isdigit()]
    size = bucket_of(days)
    counts: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0]))
    for r in day_rows:
        if not r.key[:1].isdigit():
            continue  # feedback on cards this service never issued
        c = counts[r.rule_id][_bucket(date.fromisoformat(r.key), size)]
        c[0] += r.shown
        c[1] += r.accepted
        c[2] += r.overridden
    buckets = sorted({b for per_rule in counts.values() for b in per_rule})
    return (
        size,
        buckets,
        {
            rule: {b: (v[0], v[1], v[2]) for b, v in per_rule.items()}
            for rule, per_rule in sorted(counts.items())
        },
    )


def render(rule_rows: Sequence[ReportRow], day_rows: Sequence[ReportRow], window: str) -> str:
    size, buckets, counts = rates_over_time(day_rows)

    def rate(rule: str, bucket: str, which: int) -> float | None:
        shown, *outcomes = counts[rule].get(bucket, (0, 0, 0))
        return round(100 * outcomes[which] / shown, 1) if shown else None

    table = charts.table(
        HEADER,
        [
            [
                r.rule_id,
                r.shown,
                r.would_have_shown,
                r.accepted,
                r.overridden,
                r.conflicting,
                "" if r.acceptance_rate is None else f"{r.acceptance_rate:.1%}",
                "; ".join(f"{reason} ({n})" for reason, n in r.top_override_reasons[:3]),
            ]
            for r in rule_rows
        ],
    )
    sections = [
        ("By rule", table),
        (
            f"Acceptance over time (by {size})",
            charts.line_chart(
                buckets,
                {rule: [rate(rule, b, 0) for b in buckets] for rule in counts},
                f"Accepted, % of the sessions shown, by {size} and rule",
                unit="%",
                y_max=100.0,
            ),
        ),
        (
            f"Override over time (by {size})",
            charts.line_chart(
                buckets,
                {rule: [rate(rule, b, 1) for b in buckets] for rule in counts},
                f"Overridden, % of the sessions shown, by {size} and rule",
                unit="%",
                y_max=100.0,
            ),
        ),
    ]
    for r in rule_rows:
        if r.top_override_reasons:
            sections.append(
                (
                    f"Override reasons: {r.rule_id}",
                    charts.bar_chart(
                        [(reason, float(n)) for reason, n in r.top_override_reasons],
                        f"Overridden sessions by reason ({r.rule_id})",
                    ),
                )
            )
    return charts.page(
        "Outcome report: cards shown, accepted and overridden",
        sections,
        f"Cards issued {window}. A card re-issued for the same order and rule within one "
        "ordering session counts once; its latest feedback decides. No patient data.",
    )


def write_page(
    database: Database,
    path: Path,
    since: datetime | None = None,
    until: datetime | None = None,
    session: timedelta = DEFAULT_SESSION,
) -> None:
    """Build both groupings from the store and write the page."""
    rule_rows = build_report(database, "rule", TOP_REASONS, since, until, session)
    day_rows = build_report(database, "day", 0, since, until, session)
    start = f"from {since.isoformat()}" if since else "from the start"
    end = f"before {until.isoformat()}" if until else "to now"
    try:
        path.write_text(render(rule_rows, day_rows, f"{start} {end}"), encoding="utf-8")
    except OSError as exc:
        raise InputFileError(f"{path}: cannot write ({exc})") from exc
