"""The simulation's counts, with no patient data: what a CDS committee decides from.

Counted per imaging order (a ServiceRequest the order reader reads as imaging, authored in the
window): whether the patient was in scope at that instant, each card a rule decided (shown, or
decided in silent mode at the site), and what each card's suggestions would have changed, by
the orderable's name ("MRI NECK W WO CONTRAST → MRI orbits face neck without and with IV
contrast: 37"). Orderable names are the catalogue's; a name typed for fewer than
``MIN_PATIENTS_PER_NAME`` patients is counted but not listed (a free-text order name could say
something about one patient). Partitions hold disjoint patients, so their tallies add up
(``merge``), patient counts included.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cds_service.cli.simulation.run import OrderOutcome

#: A name is listed only when orders of at least this many patients carry it.
MIN_PATIENTS_PER_NAME = 2
#: Names listed per table at most (the most frequent first).
TOP_NAMES = 50
#: Distinct names counted per table; further names are counted together under OVERFLOW_NAME.
MAX_NAMES = 20_000
OVERFLOW_NAME = "(names beyond the first 20,000)"


def _key(*parts: str) -> str:
    return "\x1f".join(parts)


def _split(key: str) -> list[str]:
    return key.split("\x1f")


@dataclass
class NameCount:
    """Orders and distinct patients of one orderable name (or name and suggestion)."""

    orders: int = 0
    patients: int = 0


@dataclass
class Tally:
    service_requests: int = 0
    imaging: int = 0
    in_scope: int = 0
    with_card: int = 0
    patients: int = 0
    #: ServiceRequests of these patients without a readable ``authoredOn``: not simulated.
    undated_orders: int = 0
    cards: Counter[str] = field(default_factory=Counter)
    silent: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    months_imaging: Counter[str] = field(default_factory=Counter)
    months_in_scope: Counter[str] = field(default_factory=Counter)
    #: "month␟rule" -> cards shown.
    months_cards: Counter[str] = field(default_factory=Counter)
    #: "name␟rule␟suggestion kind" -> orders and patients.
    changes: dict[str, NameCount] = field(default_factory=dict)
    #: ServiceRequest names not read as imaging; imaging orders whose region could not be read.
    not_imaging: dict[str, NameCount] = field(default_factory=dict)
    region_unread: dict[str, NameCount] = field(default_factory=dict)
    #: Resources left out of every snapshot for want of a date, by type.
    undated_left_out: Counter[str] = field(default_factory=Counter)
    #: The patient number that last counted for each name: patients come one after another, so
    #: distinct patients per name are counted without keeping any patient (memory stays bounded).
    _last: dict[str, int] = field(default_factory=dict, repr=False)

    def add_patient(self, outcomes: Iterable[OrderOutcome], undated: Mapping[str, int]) -> None:
        """Count one patient's orders; each patient's orders are added in one call."""
        self.patients += 1
        self.undated_left_out.update(undated)
        for o in outcomes:
            self._add(o)

    def _add(self, o: OrderOutcome) -> None:
        self.service_requests += 1
        if not o.imaging:
            self._name(self.not_imaging, "n", o.name)
            return
        self.imaging += 1
        self.months_imaging[o.month] += 1
        if o.region_unread:
            self._name(self.region_unread, "r", o.name)
        if o.error:
            self.errors[o.error] += 1
            return
        if o.in_scope:
            self.in_scope += 1
            self.months_in_scope[o.month] += 1
        shown = [c for c in o.cards if c.shown]
        self.with_card += bool(shown)
        for c in o.cards:
            if not c.shown:
                self.silent[c.rule] += 1
                continue
            self.cards[c.rule] += 1
            self.months_cards[_key(o.month, c.rule)] += 1
            for kind in dict.fromkeys(c.suggestion_kinds) or ("(no suggestion)",):
                self._name(self.changes, "c", _key(o.name, c.rule, kind))

    def _name(self, table: dict[str, NameCount], tag: str, key: str) -> None:
        if key not in table and len(table) >= MAX_NAMES:
            key = OVERFLOW_NAME  # a free-text name per order must not grow memory without end
        count = table.setdefault(key, NameCount())
        count.orders += 1
        last = _key(tag, key)
        if self._last.get(last) != self.patients:
            self._last[last] = self.patients
            count.patients += 1

    # --- what the report shows ---------------------------------------------------------------

    def per_100(self, count: int, of: int | None = None) -> float | None:
        base = self.imaging if of is None else of
        return round(100 * count / base, 2) if base else None

    def rules(self) -> list[str]:
        return sorted(set(self.cards) | set(self.silent))

    def months(self) -> list[str]:
        return sorted(self.months_imaging)

    def month_rate(self, month: str, rule: str) -> float | None:
        return self.per_100(self.months_cards[_key(month, rule)], self.months_imaging[month])

    def listed(
        self, table: Mapping[str, NameCount]
    ) -> tuple[list[tuple[list[str], NameCount]], NameCount]:
        """The rows seen for enough patients (most orders first, at most TOP_NAMES), and the sum
        of the rest (names seen for too few patients, or beyond the top)."""
        rows = sorted(table.items(), key=lambda kv: (-kv[1].orders, kv[0]))
        shown = [(_split(k), v) for k, v in rows if v.patients >= MIN_PATIENTS_PER_NAME][:TOP_NAMES]
        kept = {_key(*k) for k, _ in shown}
        rest = NameCount()
        for k, v in rows:
            if k not in kept:
                rest.orders += v.orders
                rest.patients += v.patients
        return shown, rest

    # --- partitions --------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        def names(table: Mapping[str, NameCount]) -> dict[str, list[int]]:
            return {k: [v.orders, v.patients] for k, v in sorted(table.items())}

        return {
            "service_requests": self.service_requests,
            "imaging": self.imaging,
            "in_scope": self.in_scope,
            "with_card": self.with_card,
            "patients": self.patients,
            "undated_orders": self.undated_orders,
            "cards": dict(sorted(self.cards.items())),
            "silent": dict(sorted(self.silent.items())),
            "errors": dict(sorted(self.errors.items())),
            "months_imaging": dict(sorted(self.months_imaging.items())),
            "months_in_scope": dict(sorted(self.months_in_scope.items())),
            "months_cards": dict(sorted(self.months_cards.items())),
            "changes": names(self.changes),
            "not_imaging": names(self.not_imaging),
            "region_unread": names(self.region_unread),
            "undated_left_out": dict(sorted(self.undated_left_out.items())),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Tally:
        def names(raw: Mapping[str, list[int]]) -> dict[str, NameCount]:
            return {k: NameCount(int(v[0]), int(v[1])) for k, v in raw.items()}

        return cls(
            service_requests=int(data["service_requests"]),
            imaging=int(data["imaging"]),
            in_scope=int(data["in_scope"]),
            with_card=int(data["with_card"]),
            patients=int(data["patients"]),
            undated_orders=int(data.get("undated_orders", 0)),
            cards=Counter(data["cards"]),
            silent=Counter(data["silent"]),
            errors=Counter(data["errors"]),
            months_imaging=Counter(data["months_imaging"]),
            months_in_scope=Counter(data["months_in_scope"]),
            months_cards=Counter(data["months_cards"]),
            changes=names(data["changes"]),
            not_imaging=names(data["not_imaging"]),
            region_unread=names(data["region_unread"]),
            undated_left_out=Counter(data["undated_left_out"]),
        )

    def merge(self, other: Tally) -> None:
        """Add another partition's tally (disjoint patients: patient counts add up)."""
        for name in (
            "service_requests",
            "imaging",
            "in_scope",
            "with_card",
            "patients",
            "undated_orders",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for counter in (
            "cards",
            "silent",
            "errors",
            "months_imaging",
            "months_in_scope",
            "months_cards",
            "undated_left_out",
        ):
            getattr(self, counter).update(getattr(other, counter))
        for table in ("changes", "not_imaging", "region_unread"):
            mine: dict[str, NameCount] = getattr(self, table)
            for k, v in getattr(other, table).items():
                count = mine.setdefault(k, NameCount())
                count.orders += v.orders
                count.patients += v.patients
