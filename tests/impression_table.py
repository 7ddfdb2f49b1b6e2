"""The shared impression table (tests/data/impressions.json) and how a reader is scored on it:
one place, so that the hand-written reader and medspaCy (benchmarks/medspacy_reader.py) are
scored on exactly the same rows by exactly the same rule."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TABLE = Path(__file__).parent / "data" / "impressions.json"


@dataclass(frozen=True)
class Row:
    group: str
    text: str
    branch: str | None
    category: str | None
    proven: bool
    recommends_mri: bool


@dataclass(frozen=True)
class Said:
    """What a reader made of one impression (None branch: it says nothing)."""

    branch: str | None
    category: str | None = None
    proven: bool = False
    recommends_mri: bool = False


def rows() -> list[Row]:
    doc: dict[str, Any] = json.loads(TABLE.read_text(encoding="utf-8"))
    return [
        Row(
            r["group"],
            r["text"],
            r["branch"],
            r["category"],
            bool(r.get("proven", False)),
            bool(r.get("recommendsMri", False)),
        )
        for r in doc["impressions"]
    ]


def right(row: Row, said: Said) -> bool:
    """Right when branch, category, proven and the MRI recommendation all match."""
    return (
        said.branch == row.branch
        and said.category == row.category
        and said.proven == row.proven
        and said.recommends_mri == row.recommends_mri
    )


def score(read: Callable[[str], Said]) -> tuple[int, list[tuple[Row, Said]]]:
    """How many rows a reader gets right, and the ones it gets wrong."""
    wrong = [(row, said) for row in rows() if not right(row, said := read(row.text))]
    return len(rows()) - len(wrong), wrong
