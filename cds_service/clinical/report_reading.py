"""Reads what the last head and neck report concluded: an NI-RADS category, or the guidance's
positive / negative / indeterminate from unambiguous wording; anything else is unknown.

Why this shape: radiologists report post-treatment head and neck imaging with NI-RADS, whose
categories map onto the guidance's three branches after a surveillance MRI (shared/clinical/
ni-rads.md); reports without a category often still conclude plainly ("no evidence of
recurrence", "consistent with recurrence"). Wording is read clause by clause, a negation before
a positive phrase turning it negative and a hedge turning the clause indeterminate, because a
report that says "recurrence cannot be excluded" must never read as "recurrence". Every
pattern is data (hooks/knowledge/pathway.json); the table test holds real-style impressions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import get_args

from cds_service.knowledge.loader import Branch, NiradsCategory, PathwayKnowledge

#: The NI-RADS categories, by how a report spells them (case aside).
_CATEGORIES: dict[str, NiradsCategory] = {c: c for c in get_args(NiradsCategory)}
#: Which branch says most, when a report's clauses differ: the strongest wins.
_STRENGTH: dict[Branch, int] = {"negative": 1, "indeterminate": 2, "positive": 3}


@dataclass(frozen=True)
class ReportReading:
    """What a report concluded: its NI-RADS category (if stated) and the branch it means."""

    branch: Branch
    category: NiradsCategory | None = None


class ReportReader:
    """Compiled once from the knowledge; ``read`` takes a report's conclusion texts."""

    def __init__(self, pathway: PathwayKnowledge) -> None:
        flags = re.IGNORECASE
        nirads = pathway.nirads
        self._mention = re.compile(nirads.mention, flags)
        self._direct = re.compile(nirads.direct, flags)
        self._labelled = re.compile(nirads.labelled, flags)
        self._rank = nirads.rank
        self._branches = nirads.branches
        wording = pathway.wording
        self._split = re.compile(wording.clauseSplit, flags)
        self._hedges = [re.compile(p, flags) for p in wording.hedges]
        self._negations = [re.compile(p, flags) for p in wording.negations]
        self._positive = [re.compile(p, flags) for p in wording.positive]
        self._negative = [re.compile(p, flags) for p in wording.negative]

    def read(self, texts: Iterable[str]) -> ReportReading | None:
        """The report's reading, or None when nothing in it is unambiguous (say nothing)."""
        said = [t for t in texts if t and t.strip()]
        category = self.category(said)
        if category is not None:
            return ReportReading(self._branches[category], category)
        branches = [b for text in said for b in self._clause_branches(text)]
        if not branches:
            return None
        return ReportReading(max(branches, key=lambda b: _STRENGTH[b]))

    def category(self, texts: Iterable[str]) -> NiradsCategory | None:
        """The highest NI-RADS category the texts state (primary and neck may differ)."""
        known: list[NiradsCategory] = []
        for text in texts:
            if not self._mention.search(text):
                continue
            for pattern in (self._direct, self._labelled):
                for match in pattern.finditer(text):
                    category = _category(match.group(1))
                    if category is not None:
                        known.append(category)
        if not known:
            return None
        highest: NiradsCategory = max(known, key=self._rank.__getitem__)
        return highest

    def _clause_branches(self, text: str) -> list[Branch]:
        branches: list[Branch] = []
        for clause in self._split.split(text):
            branch = self._clause(clause)
            if branch is not None:
                branches.append(branch)
        return branches

    def _clause(self, clause: str) -> Branch | None:
        if any(p.search(clause) for p in self._hedges):
            return "indeterminate"
        for pattern in self._positive:
            match = pattern.search(clause)
            if match is None:
                continue
            # A negation governs what follows it up to a comma: "no findings consistent with
            # recurrence" is negative, "mass without necrosis, consistent with recurrence" not.
            before = clause[: match.start()].rsplit(",", 1)[-1]
            if any(n.search(before) for n in self._negations):
                return "negative"  # "no findings consistent with recurrence"
            return "positive"
        if any(p.search(clause) for p in self._negative):
            return "negative"
        return None


def _category(token: str) -> NiradsCategory | None:
    return _CATEGORIES.get(token.lower())
