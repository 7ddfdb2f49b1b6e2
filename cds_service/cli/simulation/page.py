"""The simulation's aggregate report as files: an HTML page with inline SVG plots, and CSV.

No file written here holds a patient or order id (the per-order file is written by ``orders_csv``
and only on request). The CSV tables have one header line and plain numbers, ready to chart.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cds_service.cli.simulation.run import OrderOutcome
from cds_service.cli.simulation.tally import MIN_PATIENTS_PER_NAME, TOP_NAMES, NameCount, Tally
from cds_service.store import charts

#: The per-order file's name says what it holds.
PER_ORDER_FILE = "PHI-per-order-cards.csv"


@dataclass(frozen=True)
class RunFacts:
    """What the run was (shown at the top of the page; no patient data)."""

    export: str
    window: str
    partition: str
    knowledge_version: str
    seconds: float


def suggestion_label(kind: str, orders: Mapping[str, str]) -> str:
    """ "replace:mri-protocol" -> "→ MRI orbits face neck without and with IV contrast"."""
    action, _, key = kind.partition(":")
    if action == "replace":
        return f"→ {orders.get(key, key)}"
    if action == "add":
        return f"+ {orders.get(key, key)}"
    return {"history": "+ clinical history", "defer": "→ a later date"}.get(kind, kind)


def _csv(header: list[str], rows: Iterable[Iterable[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def _rate(value: float | None) -> object:
    return "" if value is None else value


def rule_rows(t: Tally) -> list[list[object]]:
    return [
        [
            rule,
            t.cards[rule],
            _rate(t.per_100(t.cards[rule])),
            _rate(t.per_100(t.cards[rule], t.in_scope)),
            t.silent[rule],
        ]
        for rule in t.rules()
    ]


def month_rows(t: Tally) -> list[list[object]]:
    rules = t.rules()
    return [
        [
            month,
            t.months_imaging[month],
            t.months_in_scope[month],
            *(_rate(t.month_rate(month, r)) for r in rules),
        ]
        for month in t.months()
    ]


def change_rows(t: Tally, orders: Mapping[str, str]) -> list[list[object]]:
    shown, rest = t.listed(t.changes)
    rows: list[list[object]] = [
        [name, rule, suggestion_label(kind, orders), count.orders, count.patients]
        for (name, rule, kind), count in shown
    ]
    if rest.orders:
        rows.append([_rest_label(), "", "", rest.orders, rest.patients])
    return rows


def name_rows(t: Tally, table: Mapping[str, NameCount]) -> list[list[object]]:
    shown, rest = t.listed(table)
    rows: list[list[object]] = [[k[0], c.orders, c.patients] for k, c in shown]
    if rest.orders:
        rows.append([_rest_label(), rest.orders, rest.patients])
    return rows


def _rest_label() -> str:
    return (
        f"(other names: seen for fewer than {MIN_PATIENTS_PER_NAME} patients "
        f"or beyond the top {TOP_NAMES})"
    )


RULE_HEADER = ["rule", "cards", "per 100 imaging orders", "per 100 orders in scope", "silent"]
CHANGE_HEADER = ["orderable name", "rule", "suggestion", "orders", "patients"]
NAME_HEADER = ["orderable name", "orders", "patients"]


def write_report(t: Tally, facts: RunFacts, orders: Mapping[str, str], out: Path) -> list[Path]:
    """Write the HTML page and the CSV tables into ``out``; return the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    rules = t.rules()
    files = {
        "simulation-by-rule.csv": _csv(RULE_HEADER, rule_rows(t)),
        "simulation-by-month.csv": _csv(
            ["month", "imaging orders", "in scope", *(f"{r} per 100" for r in rules)],
            month_rows(t),
        ),
        "simulation-changes.csv": _csv(CHANGE_HEADER, change_rows(t, orders)),
        "simulation-not-imaging-names.csv": _csv(NAME_HEADER, name_rows(t, t.not_imaging)),
        "simulation-region-unread-names.csv": _csv(NAME_HEADER, name_rows(t, t.region_unread)),
        "simulation.html": html_page(t, facts, orders),
    }
    written = []
    for name, text in files.items():
        path = out / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def html_page(t: Tally, facts: RunFacts, orders: Mapping[str, str]) -> str:
    rules = t.rules()
    summary = charts.table(
        ["", ""],
        [
            ["Export", facts.export],
            ["Orders authored", facts.window],
            ["Patients", facts.partition],
            ["Knowledge version", facts.knowledge_version],
            ["Patients with an order in the window", t.patients],
            ["ServiceRequests in the window", t.service_requests],
            ["ServiceRequests without a readable authoredOn (not simulated)", t.undated_orders],
            ["Imaging orders", t.imaging],
            ["Imaging orders in scope (treated major salivary gland cancer)", t.in_scope],
            ["Imaging orders with a card", t.with_card],
            ["Cards per 100 imaging orders", _rate(t.per_100(sum(t.cards.values())))],
            [
                "Imaging orders the engine refused",
                ", ".join(f"{k}: {v}" for k, v in sorted(t.errors.items())) or "none",
            ],
            [
                "Undated resources left out",
                ", ".join(f"{k}: {v}" for k, v in sorted(t.undated_left_out.items())) or "none",
            ],
            ["Run time (s)", round(facts.seconds, 1)],
        ],
    )
    by_rule = charts.bar_chart(
        [(r, t.per_100(t.cards[r]) or 0.0) for r in rules if t.cards[r]],
        "Cards per 100 imaging orders, by rule",
    ) + charts.table(RULE_HEADER, rule_rows(t))
    months = t.months()
    monthly = charts.line_chart(
        months,
        {r: [t.month_rate(m, r) for m in months] for r in rules if t.cards[r]},
        "Cards per 100 imaging orders, by month and rule",
    ) + charts.line_chart(
        months,
        {"imaging orders": [float(t.months_imaging[m]) for m in months]},
        "Imaging orders per month",
    )
    changes = change_rows(t, orders)
    change_plot = charts.bar_chart(
        [(f"{row[0]} {row[2]}", float(str(row[3]))) for row in changes if row[1]][:20],
        "What the suggestions would change: orders, by orderable name and suggestion",
    )
    sections = [
        ("The run", summary),
        ("Cards by rule", by_rule),
        ("Over time", monthly),
        ("What the suggestions would change", change_plot + charts.table(CHANGE_HEADER, changes)),
        (
            "Orderable names not read as imaging",
            '<p class="note">ServiceRequests the order reader did not read as imaging (most are '
            "not: laboratory, referrals). An imaging orderable here is one the service cannot "
            "see: map it in the site folder.</p>"
            + charts.table(NAME_HEADER, name_rows(t, t.not_imaging)),
        ),
        (
            "Imaging orders whose body region could not be read",
            charts.table(NAME_HEADER, name_rows(t, t.region_unread)),
        ),
    ]
    return charts.page(
        "What the service would have said: simulation over a bulk FHIR export",
        sections,
        "No patient data: counts only. Orderable names are listed only when orders of at least "
        f"{MIN_PATIENTS_PER_NAME} patients carry them.",
    )


ORDER_HEADER = [
    "patient_id",
    "order_id",
    "authored",
    "orderable_name",
    "imaging",
    "in_scope",
    "rule",
    "shown",
    "indicator",
    "summary",
    "suggestions",
    "error",
]


class OrdersCsv:
    """The per-order file for chart review: patient and order ids, one row per card (or per
    order without one). It holds PHI: its name says so."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle = path.open("w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._handle, lineterminator="\n")
        self._writer.writerow(ORDER_HEADER)

    def add(self, o: OrderOutcome) -> None:
        head = [o.patient_id, o.order_id, o.authored, o.name, int(o.imaging), int(o.in_scope)]
        if not o.cards:
            self._writer.writerow([*head, "", "", "", "", "", o.error])
            return
        for c in o.cards:
            self._writer.writerow(
                [
                    *head,
                    c.rule,
                    int(c.shown),
                    c.indicator,
                    c.summary,
                    " ".join(c.suggestion_kinds),
                    o.error,
                ]
            )

    def close(self) -> None:
        self._handle.close()
