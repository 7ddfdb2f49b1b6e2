"""Outcome report: per rule (or per card, or per knowledge version and rule), how often cards
were shown, accepted, overridden, and why they were overridden; and, for rules in silent mode,
how often a card would have been shown. Reads the feedback store; prints a table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Literal

from sqlalchemy import ColumnElement, func, select

from cds_service.storage import Database, feedback_items, issued_cards

UNKNOWN_CARD = "(unknown card)"
NO_REASON = "(no reason given)"
Grouping = Literal["rule", "card", "version"]


@dataclass
class ReportRow:
    key: str
    rule_id: str
    shown: int = 0
    #: Cards a rule in silent mode decided: recorded, not returned to the clinician.
    would_have_shown: int = 0
    accepted: int = 0
    overridden: int = 0
    top_override_reasons: list[tuple[str, int]] = field(default_factory=list)

    @property
    def acceptance_rate(self) -> float | None:
        """Accepted among the cards shown (None when none were shown)."""
        return round(self.accepted / self.shown, 3) if self.shown else None


def _group_key(by: Grouping) -> ColumnElement[str]:
    if by == "card":
        return issued_cards.c.card_uuid
    if by == "version":
        return issued_cards.c.knowledge_version
    return issued_cards.c.rule_id


def build_report(database: Database, by: Grouping = "rule", top: int = 3) -> list[ReportRow]:
    card_key = _group_key(by)
    rows: dict[tuple[str, str], ReportRow] = {}
    reasons: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    with database.sql.connect() as connection:
        for key, rule, mode, count in connection.execute(
            select(card_key, issued_cards.c.rule_id, issued_cards.c.mode, func.count()).group_by(
                card_key, issued_cards.c.rule_id, issued_cards.c.mode
            )
        ):
            row = rows.setdefault((key, rule), ReportRow(key, rule))
            if mode == "silent":
                row.would_have_shown += count
            else:
                row.shown += count
        joined = feedback_items.outerjoin(
            issued_cards, issued_cards.c.card_uuid == feedback_items.c.card_uuid
        )
        rule_of = func.coalesce(issued_cards.c.rule_id, UNKNOWN_CARD)
        feedback_key = (
            feedback_items.c.card_uuid
            if by == "card"
            else rule_of
            if by == "rule"
            else func.coalesce(issued_cards.c.knowledge_version, UNKNOWN_CARD)
        )
        reason = func.coalesce(
            feedback_items.c.override_display, feedback_items.c.override_code, NO_REASON
        )
        for key, rule, outcome, why, count in connection.execute(
            select(feedback_key, rule_of, feedback_items.c.outcome, reason, func.count())
            .select_from(joined)
            .group_by(feedback_key, rule_of, feedback_items.c.outcome, reason)
        ):
            row = rows.setdefault((key, rule), ReportRow(key, rule))
            if outcome == "accepted":
                row.accepted += count
            else:
                row.overridden += count
                reasons[key, rule][why] += count
    for group, row in rows.items():
        row.top_override_reasons = reasons[group].most_common(top)
    return sorted(
        rows.values(), key=lambda r: (r.key, r.rule_id) if by == "version" else (r.rule_id, r.key)
    )


def _as_dict(row: ReportRow) -> dict[str, object]:
    data = asdict(row)
    data["acceptance_rate"] = row.acceptance_rate
    data["top_override_reasons"] = [
        {"reason": reason, "count": count} for reason, count in row.top_override_reasons
    ]
    return data


def _reasons_text(row: ReportRow) -> str:
    return "; ".join(f"{reason} ({count})" for reason, count in row.top_override_reasons)


def _rate_text(row: ReportRow) -> str:
    return "" if row.acceptance_rate is None else f"{row.acceptance_rate:.1%}"


def format_report(rows: list[ReportRow], fmt: Literal["table", "csv", "json"], by: Grouping) -> str:
    if fmt == "json":
        return json.dumps([_as_dict(r) for r in rows], indent=2)
    header = [
        by,
        "rule",
        "shown",
        "would have shown",
        "accepted",
        "overridden",
        "acceptance",
        "top override reasons",
    ]
    lines = [
        [
            r.key,
            r.rule_id,
            str(r.shown),
            str(r.would_have_shown),
            str(r.accepted),
            str(r.overridden),
            _rate_text(r),
            _reasons_text(r),
        ]
        for r in rows
    ]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(lines)
        return out.getvalue()
    if not lines:
        return "No cards shown and no feedback received yet."
    if by == "rule":  # the key is the rule itself
        header, lines = header[1:], [line[1:] for line in lines]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    render = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
        for row in [header, *lines]
    ]
    render.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(render)
