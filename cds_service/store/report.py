"""Outcome report: how often each rule's card was shown, accepted and overridden, and why.

What is counted, so that the figures mean what a CDS team reads them as:
- **an ordering session, not a call**: a card re-issued for the same order and rule within
  ``session`` of the first (the client calls again when a reason is added, or at order-sign)
  counts once as shown; cards from before order keys were recorded count one each;
- **the latest outcome**: a session's outcome is its latest feedback (by outcome timestamp);
  one that was accepted and then dismissed is counted overridden, and also as *conflicting*;
- **per suggestion** (``--by suggestion``): how often each kind of suggestion was offered and
  taken ("replace:mri-protocol", "history", "defer"...);
- **silent rules**: cards a rule in silent mode decided count as *would have shown*.
Reads the feedback store; prints a table, a CSV a CDS team can chart, or JSON.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select

from cds_service.contract.text_out import csv_cell, terminal_safe
from cds_service.store.storage import Database, feedback_items, issued_cards

UNKNOWN_CARD = "(unknown card)"
NO_REASON = "(no reason given)"
Grouping = Literal["rule", "card", "version", "suggestion", "day"]
DEFAULT_SESSION = timedelta(minutes=30)


@dataclass
class ReportRow:
    key: str
    rule_id: str
    shown: int = 0
    #: Cards a rule in silent mode decided: recorded, not returned to the clinician.
    would_have_shown: int = 0
    accepted: int = 0
    overridden: int = 0
    #: Sessions whose feedback said both accepted and overridden (the latest one is counted).
    conflicting: int = 0
    top_override_reasons: list[tuple[str, int]] = field(default_factory=list)

    @property
    def acceptance_rate(self) -> float | None:
        """Accepted among the sessions shown (None when none were shown)."""
        return round(self.accepted / self.shown, 3) if self.shown else None


@dataclass(frozen=True)
class _Card:
    uuid: str
    rule: str
    shown: bool
    order_key: str
    issued_at: datetime
    version: str
    suggestions: dict[str, str]  # uuid -> kind


@dataclass(frozen=True)
class _Feedback:
    card_uuid: str
    outcome: str
    accepted: tuple[str, ...]
    reason: str
    at: datetime
    order: int  # insertion order: breaks ties between equal timestamps


@dataclass
class _Session:
    cards: list[_Card]
    feedback: list[_Feedback]

    @property
    def first(self) -> _Card:
        return self.cards[0]

    def latest(self) -> _Feedback | None:
        return max(self.feedback, key=lambda f: (f.at, f.order)) if self.feedback else None

    def conflicting(self) -> bool:
        return len({f.outcome for f in self.feedback}) > 1


def _aware(value: datetime) -> datetime:
    """SQLite returns naive datetimes for what was stored in UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _load(
    database: Database, since: datetime | None, until: datetime | None
) -> tuple[list[_Card], list[_Feedback], list[_Feedback]]:
    c, f = issued_cards.c, feedback_items.c
    card_query = select(
        c.card_uuid,
        c.rule_id,
        c.mode,
        c.order_key,
        c.issued_at,
        c.knowledge_version,
        c.suggestion_uuids,
        c.suggestion_kinds,
    )
    # The feedback columns read, for cards known and unknown alike.
    outcome_columns = (
        f.card_uuid,
        f.outcome,
        f.accepted_suggestions,
        f.override_display,
        f.override_code,
        f.outcome_timestamp,
        f.id,
    )
    unknown_query = select(*outcome_columns).where(f.card_uuid.not_in(select(c.card_uuid)))
    if since is not None:
        card_query = card_query.where(c.issued_at >= since)
        unknown_query = unknown_query.where(f.outcome_timestamp >= since)
    if until is not None:
        card_query = card_query.where(c.issued_at < until)
        unknown_query = unknown_query.where(f.outcome_timestamp < until)
    known_query = (
        select(*outcome_columns)
        .select_from(feedback_items.join(issued_cards, c.card_uuid == f.card_uuid))
        .where(c.card_uuid.in_(card_query.with_only_columns(c.card_uuid).scalar_subquery()))
    )
    with database.sql.connect() as connection:
        cards = [
            _Card(
                uuid,
                rule,
                mode != "silent",
                key,
                _aware(at),
                version,
                dict(zip(json.loads(uuids), _kinds(kinds, len(json.loads(uuids))), strict=True)),
            )
            for uuid, rule, mode, key, at, version, uuids, kinds in connection.execute(card_query)
        ]
        known = [_feedback(row) for row in connection.execute(known_query)]
        unknown = [_feedback(row) for row in connection.execute(unknown_query)]
    return cards, known, unknown


def _kinds(stored: str, count: int) -> list[str]:
    kinds = json.loads(stored)
    return kinds if len(kinds) == count else ["(not recorded)"] * count


def _feedback(row: Any) -> _Feedback:
    uuid, outcome, accepted, display, code, at, order = row
    return _Feedback(
        uuid, outcome, tuple(json.loads(accepted)), display or code or NO_REASON, _aware(at), order
    )


def _sessions(cards: Iterable[_Card], window: timedelta | None) -> list[_Session]:
    """Cards of one order and rule within ``window`` of the first are one session; without a
    window (``--by card``) or an order key, every card is its own."""
    sessions: list[_Session] = []
    open_for: dict[tuple[str, str, bool], _Session] = {}
    for card in sorted(cards, key=lambda k: k.issued_at):
        key = (card.order_key, card.rule, card.shown)
        current = open_for.get(key)
        if (
            window is not None
            and card.order_key
            and current is not None
            and card.issued_at - current.first.issued_at <= window
        ):
            current.cards.append(card)
            continue
        session = _Session([card], [])
        sessions.append(session)
        open_for[key] = session
    return sessions


def _group(session: _Session, by: Grouping) -> str:
    first = session.first
    if by == "card":
        return first.uuid
    if by == "version":
        return first.version
    if by == "day":
        return first.issued_at.date().isoformat()
    return first.rule


def build_report(
    database: Database,
    by: Grouping = "rule",
    top: int = 3,
    since: datetime | None = None,
    until: datetime | None = None,
    session: timedelta = DEFAULT_SESSION,
) -> list[ReportRow]:
    """Rows per ``by`` (and rule), over the cards issued in [since, until)."""
    cards, known, unknown = _load(database, since, until)
    sessions = _sessions(cards, None if by == "card" else session)
    of_card = {card.uuid: s for s in sessions for card in s.cards}
    for item in known:
        of_card[item.card_uuid].feedback.append(item)
    rows: dict[tuple[str, str], ReportRow] = {}
    reasons: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for s in sessions:
        if by == "suggestion":
            _count_suggestions(s, rows)
            continue
        key = (_group(s, by), s.first.rule)
        row = rows.setdefault(key, ReportRow(*key))
        _count(row, s, reasons[key])
    by_card: dict[str, list[_Feedback]] = defaultdict(list)
    for item in unknown:
        by_card[item.card_uuid].append(item)
    for uuid, items in by_card.items():
        key = (uuid if by == "card" else UNKNOWN_CARD, UNKNOWN_CARD)
        row = rows.setdefault(key, ReportRow(*key))
        _count(row, _Session([], items), reasons[key], shown=False)
    for group, row in rows.items():
        row.top_override_reasons = reasons[group].most_common(top)
    return sorted(
        rows.values(), key=lambda r: (r.rule_id, r.key) if by == "rule" else (r.key, r.rule_id)
    )


def _count(row: ReportRow, s: _Session, reasons: Counter[str], shown: bool = True) -> None:
    if shown and not s.first.shown:
        row.would_have_shown += 1
        return
    if shown:
        row.shown += 1
    latest = s.latest()
    if latest is None:
        return
    row.conflicting += s.conflicting()
    if latest.outcome == "accepted":
        row.accepted += 1
    else:
        row.overridden += 1
        reasons[latest.reason] += 1


def _count_suggestions(s: _Session, rows: dict[tuple[str, str], ReportRow]) -> None:
    """Per kind of suggestion offered in the session: offered (shown) and taken (accepted)."""
    if not s.first.shown:
        return
    offered = {kind for card in s.cards for kind in card.suggestions.values()}
    latest = s.latest()
    taken: set[str] = set()
    if latest is not None and latest.outcome == "accepted":
        kinds = {uuid: kind for card in s.cards for uuid, kind in card.suggestions.items()}
        taken = {kinds[u] for u in latest.accepted if u in kinds}
    for kind in offered:
        row = rows.setdefault((kind, s.first.rule), ReportRow(kind, s.first.rule))
        row.shown += 1
        row.accepted += kind in taken
        if latest is not None and latest.outcome != "accepted":
            row.overridden += 1
        row.conflicting += s.conflicting()


def _as_dict(row: ReportRow) -> dict[str, object]:
    data = asdict(row)
    data["acceptance_rate"] = row.acceptance_rate
    data["top_override_reasons"] = [
        {"reason": reason, "count": count} for reason, count in row.top_override_reasons
    ]
    return data


def _reasons_text(row: ReportRow) -> str:
    return "; ".join(f"{reason} ({count})" for reason, count in row.top_override_reasons)


HEADER = [
    "rule",
    "shown",
    "would have shown",
    "accepted",
    "overridden",
    "conflicting",
    "acceptance",
    "top override reasons",
]


def _cells(row: ReportRow, rate: str) -> list[str]:
    return [
        row.rule_id,
        str(row.shown),
        str(row.would_have_shown),
        str(row.accepted),
        str(row.overridden),
        str(row.conflicting),
        rate,
        _reasons_text(row),
    ]


def format_report(
    rows: Sequence[ReportRow], fmt: Literal["table", "csv", "json"], by: Grouping
) -> str:
    if fmt == "json":
        return json.dumps([_as_dict(r) for r in rows], indent=2)
    if fmt == "csv":  # numbers as numbers (acceptance 0.25), one header line: ready to chart
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([by, *HEADER])
        for r in rows:
            rate = "" if r.acceptance_rate is None else str(r.acceptance_rate)
            writer.writerow([csv_cell(c) for c in (r.key, *_cells(r, rate))])
        return out.getvalue()
    if not rows:
        return "No cards shown and no feedback received yet."
    header = HEADER if by == "rule" else [by, *HEADER]
    lines = []
    for r in rows:
        rate = "" if r.acceptance_rate is None else f"{r.acceptance_rate:.1%}"
        cells = _cells(r, rate)
        lines.append(cells if by == "rule" else [r.key, *cells])
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    render = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
        for row in [header, *lines]
    ]
    render.insert(1, "  ".join("-" * w for w in widths))
    return terminal_safe("\n".join(render))
