"""Reads what the last head and neck report concluded, as the next radiologist would: the
impression that stands, never a size, a count or an old line.

Why this shape (issue 24): the reading goes into a card and into the clinical-history note on
the suggested order, and both are read as the service's word. So:
- structured first: a coded NI-RADS category (a conclusionCode whose text or display is one)
  wins over any text;
- then the impression only: findings, history, technique and comparison sections never decide,
  and an addendum or revised impression supersedes the original (the last section that says
  something clear is the one that stands);
- a NI-RADS category only where the label governs the number (cds_service.clinical.report_text);
  statements about a prior study or the history never decide;
- without a category, the guidance's branches from unambiguous wording, clause by clause (a
  negation before a positive phrase makes it negative, a hedge makes it indeterminate, a
  historical clause never makes it worse); the strongest clause decides, as the higher of the
  primary and neck categories does;
- when the reader is not sure, it returns None: the history note says "see the report" and no
  pathway card is shown.
Every pattern is RE2 (linear time on any input) and every text is bounded (``maxReportChars``):
a report can cost the service at most a fixed number of passes over a bounded text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cds_service.clinical.report_text import (
    Compile,
    Match,
    Matcher,
    NiradsParser,
    Section,
    Sectionizer,
    Statement,
    Work,
    compile_linear,
    normalise,
)
from cds_service.knowledge.loader import Branch, NiradsCategory, PathwayKnowledge

#: Which branch says most when a report's clauses differ: the strongest wins.
_STRENGTH: dict[Branch, int] = {
    "negative": 1,
    "indeterminate": 2,
    "highly-suspicious": 3,
    "positive": 4,
    "recurrence": 5,
}
#: A NI-RADS statement offering more distinct categories than this is a key, not a finding.
_MAX_DISTINCT = 2


@dataclass(frozen=True)
class ReportReading:
    """What a report concluded: its NI-RADS category (if stated) and the branch it means."""

    branch: Branch
    category: NiradsCategory | None = None
    #: The report says the recurrence is proven by tissue ("biopsy-proven recurrence").
    proven: bool = False
    #: The radiologist recommends an MRI (then a new MRI is not "too soon").
    recommends_mri: bool = False
    #: The category came from a coded conclusion, not from text.
    coded: bool = False


class _Unsure:
    """A section that states something, but not clearly (two categories, a conflict)."""


UNSURE = _Unsure()


class ReportReader:
    """Compiled once from the knowledge; ``read`` takes a report's conclusion and codes.

    ``compile`` is RE2 by default; a test may wrap it to count the characters each pattern is
    given (the work bound that replaces a timed test)."""

    def __init__(self, pathway: PathwayKnowledge, compile: Compile = compile_linear) -> None:
        self.work = Work()
        self._max = pathway.maxReportChars
        nirads = pathway.nirads
        self._rank = nirads.rank
        self._branches = nirads.branches
        self._sections = Sectionizer(pathway, compile, self.work)
        self._nirads = NiradsParser(pathway, self.work)
        wording = pathway.wording
        self._split = compile(wording.clauseSplit)
        self._hedges = [compile(p) for p in wording.hedges]
        self._negations = [compile(p) for p in wording.negations]
        self._positive = [compile(p) for p in wording.positive]
        self._highly = [compile(p) for p in wording.highlySuspicious]
        self._negative = [compile(p) for p in wording.negative]
        self._proven = [compile(p) for p in wording.proven]
        self._historical = [compile(p) for p in wording.historical]
        self._recommends_mri = [compile(p) for p in wording.recommendsMri]

    def read(self, conclusion: str | None, coded: Sequence[str] = ()) -> ReportReading | None:
        """The report's reading, or None when nothing in it is clear (say nothing)."""
        texts = [conclusion] if conclusion else []
        if any(len(t) > self._max for t in [*texts, *coded]):
            return None  # not a report a radiologist wrote: not read at all
        structured = self._coded(coded)
        said = normalise(conclusion) if conclusion else ""
        sections = self._sections.sections(said) if said.strip() else []
        recommends = self._recommends(sections)
        if structured is not None:
            return ReportReading(
                self._branches[structured], structured, recommends_mri=recommends, coded=True
            )
        standing: ReportReading | _Unsure | None = None
        for section in self._deciding(sections):
            reading = self._section(section.text)
            if reading is not None:
                standing = reading  # a later addendum or revised impression supersedes
        if standing is None or isinstance(standing, _Unsure):
            return None
        return ReportReading(
            standing.branch, standing.category, standing.proven, recommends_mri=recommends
        )

    # --- structure -----------------------------------------------------------------------

    def _coded(self, coded: Sequence[str]) -> NiradsCategory | None:
        """A coded NI-RADS category (conclusionCode text or display "NI-RADS 2b")."""
        found: list[Statement] = []
        for text in coded:
            found += self._nirads.statements(normalise(text))
        category = self._category(found)
        return None if isinstance(category, _Unsure) else category

    @staticmethod
    def _deciding(sections: list[Section]) -> list[Section]:
        """The impression, then what supersedes it (an addendum supersedes wherever a system
        prints it), each in the report's order; text before any header is the impression when
        no impression header is present."""
        first = "impression" if any(s.kind == "impression" for s in sections) else "unlabelled"
        return [s for s in sections if s.kind == first] + [
            s for s in sections if s.kind == "supersedes"
        ]

    def _recommends(self, sections: list[Section]) -> bool:
        said = [s.text for s in sections if s.kind != "other"]
        return any(self._search(p, text) for text in said for p in self._recommends_mri)

    # --- one section ---------------------------------------------------------------------

    def _section(self, text: str) -> ReportReading | _Unsure | None:
        statements = self._nirads.statements(text)
        category = self._category(statements)
        if isinstance(category, _Unsure):
            return UNSURE
        clauses = [c for c in self._clauses(text) if c]
        said = [self._clause(c) for c in clauses]
        proven = any(s == "recurrence" for s in said)
        if category is not None:
            return ReportReading(self._branches[category], category, proven)
        if any(s.current or s.ambiguous for s in statements):
            return UNSURE
        branches = [b for b in said if b is not None]
        if not branches:
            return None
        strongest = max(branches, key=lambda b: _STRENGTH[b])
        return ReportReading(strongest, None, proven)

    def _category(self, statements: list[Statement]) -> NiradsCategory | _Unsure | None:
        """The highest current category (primary and neck may differ); unsure when one is
        offered with an alternative, a site gets two, or more than two are stated."""
        current = [s for s in statements if s.current]
        if any(s.ambiguous for s in current):
            return UNSURE
        if not current:
            return None
        by_site: dict[str, set[NiradsCategory]] = {}
        for s in current:
            if s.site is not None:
                by_site.setdefault(s.site, set()).add(s.category)
        distinct = {s.category for s in current}
        if any(len(c) > 1 for c in by_site.values()) or len(distinct) > _MAX_DISTINCT:
            return UNSURE
        highest: NiradsCategory = max(distinct, key=self._rank.__getitem__)
        return highest

    def _clauses(self, text: str) -> list[str]:
        self.work.scanned += len(text)
        return self._split.split(text)

    def _clause(self, clause: str) -> Branch | None:
        """One clause's branch; "recurrence" only when tissue proved it."""
        historical = any(self._search(p, clause) for p in self._historical)
        if not historical:
            if any(self._positive_at(p, clause) for p in self._proven):
                return "recurrence"
            if any(self._positive_at(p, clause) for p in self._highly):
                return "highly-suspicious"
            if any(self._search(p, clause) for p in self._hedges):
                return "indeterminate"
            for pattern in self._positive:
                match = self._search(pattern, clause)
                if match is None:
                    continue
                return "negative" if self._negated(clause, match.start()) else "positive"
        if any(self._search(p, clause) for p in self._negative):
            return "negative"
        return None

    def _positive_at(self, pattern: Matcher, clause: str) -> bool:
        match = self._search(pattern, clause)
        return match is not None and not self._negated(clause, match.start())

    def _negated(self, clause: str, start: int) -> bool:
        """A negation governs what follows it up to a comma: "no findings consistent with
        recurrence" is negative, "mass without necrosis, consistent with recurrence" not."""
        before = clause[:start].rsplit(",", 1)[-1]
        return any(self._search(n, before) for n in self._negations)

    def _search(self, pattern: Matcher, text: str) -> Match | None:
        self.work.scanned += len(text)
        return pattern.search(text)
