"""A report's text as a radiologist reads it: normalised, cut into sections, and scanned for
NI-RADS statements where the label governs the number.

Why by hand, in one pass: NI-RADS categories are single digits, and a report is full of other
digits (sizes, counts, levels, dates) next to "neck", "primary" and "nodes". Only a number the
label "NI-RADS" governs is a category ("NI-RADS 2b", "NI-RADS: Primary 2a, Neck 1", "Neck:
NI-RADS 1"); a statement about a prior study ("previously described NI-RADS 3 nodule") or under a
negation never decides; two categories offered as alternatives ("2b vs 3") mean the report is
not sure, and then neither is the service. Every step is linear in the text: the tokens come from
one hand-written pass, the statement parser only moves forward with a bounded look back, and what
it has seen since the last boundary is kept as flags, never re-read; section headers are found by
RE2, which never backtracks. ``Work``
counts both so that a test can bound them without a clock (issue 26, finding 1).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cds_service.knowledge.linear_regex import compile_linear as linear
from cds_service.knowledge.loader import NiradsCategory, PathwayKnowledge

#: Dashes and minus signs a report may use for "NI-RADS" or "2a-2b": read as "-".
_DASHES = dict.fromkeys(
    map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"), "-"
)
_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyz")
_DIGITS = frozenset("0123456789")
#: Where what was seen before a label stops counting (a new sentence, clause or list item).
_BOUNDARIES = frozenset({".", ";", "\n", ",", ":", "!", "?"})
#: Between two site entries of one NI-RADS statement ("Primary 2a, Neck 1").
_LIST_JOINS = frozenset({",", ";", "and", "/", "&"})
#: How far back a site word may stand before the label ("Primary site: NI-RADS 2a").
_SITE_LOOKBACK = 4
#: How far after a category a prior-study word makes it historical ("NI-RADS 3 on prior MRI").
_AFTER_WINDOW = 4
_CATEGORIES: frozenset[str] = frozenset({"0", "1", "2", "2a", "2b", "3", "4"})


class Match(Protocol):
    def start(self) -> int: ...


class Matcher(Protocol):
    """What the reader needs of a compiled pattern (RE2's, or a test's counting wrapper)."""

    def search(self, text: str) -> Match | None: ...

    def finditer(self, text: str) -> Iterator[Match]: ...

    def split(self, text: str) -> list[str]: ...


Compile = Callable[[str], Matcher]


def compile_linear(pattern: str) -> Matcher:
    """Case-insensitive RE2: linear time in the text for any pattern (no backtracking)."""
    compiled: Matcher = linear(pattern, ignore_case=True)
    return compiled


@dataclass
class Work:
    """What reading reports cost: characters handed to a pattern, parser steps. Counted for
    the tests' work bound only; the service's one reader is shared by threads, so there the
    totals are approximate and never read."""

    scanned: int = 0
    steps: int = 0


def normalise(text: str) -> str:
    """Lower case, NFKC (full-width digits, ligatures), one kind of dash, no format characters
    (zero-width spaces would hide a label)."""
    text = unicodedata.normalize("NFKC", text).translate(_DASHES).lower()
    return "".join(c for c in text if unicodedata.category(c) != "Cf")


@dataclass(frozen=True)
class Section:
    kind: str  # impression, supersedes, recommendation, other, unlabelled
    text: str


class Sectionizer:
    """Cuts a conclusion at its headers ("IMPRESSION:", "ADDENDUM:", "FINDINGS:")."""

    def __init__(self, pathway: PathwayKnowledge, compile: Compile, work: Work) -> None:
        self._header = compile(pathway.sections.header)
        self._kinds = {
            name: kind for kind, names in pathway.sections.kinds.items() for name in names
        }
        self._work = work

    def sections(self, text: str) -> list[Section]:
        self._work.scanned += len(text)
        found: list[Section] = []
        start, kind = 0, "unlabelled"
        for match in self._header.finditer(text):
            header = _header_name(match)
            found.append(Section(kind, text[start : match.start()]))
            start, kind = _end(match), self._kind(header)
        found.append(Section(kind, text[start:]))
        return [s for s in found if s.text.strip()]

    def _kind(self, header: str) -> str:
        name = " ".join(w for w in header.split() if not w.strip("#").isdigit()).strip()
        if name.startswith("addendum"):
            name = "addendum"
        return self._kinds.get(name, "other")


def _end(match: Match) -> int:
    end: int = match.end()  # type: ignore[attr-defined]
    return end


def _header_name(match: Match) -> str:
    name: str = match.group(1)  # type: ignore[attr-defined]
    return name


@dataclass(frozen=True)
class Statement:
    """One NI-RADS category the label governs, with its site when the report names it."""

    category: NiradsCategory
    site: str | None
    #: False for a statement about a prior study, under a negation, or offered as one of two.
    current: bool
    ambiguous: bool = False


@dataclass
class _Scan:
    """What was seen since the last boundary (kept as flags: the parser never looks back)."""

    history: bool = False
    negation: bool = False
    tokens: list[str] = field(default_factory=list)


class NiradsParser:
    """NI-RADS statements in a text, from the label's spellings and site words (pathway.json)."""

    def __init__(self, pathway: PathwayKnowledge, work: Work) -> None:
        k = pathway.nirads
        self._labels = sorted((tuple(label.split()) for label in k.labels), key=len, reverse=True)
        self._sites = sorted(
            ((tuple(words.split()), site) for site, names in k.sites.items() for words in names),
            key=lambda s: len(s[0]),
            reverse=True,
        )
        self._fillers = frozenset(k.fillers)
        self._versions = frozenset(k.versions)
        self._alternatives = frozenset(k.alternatives)
        self._before = frozenset(k.historyBefore)
        self._after = frozenset(k.historyAfter)
        self._negations = frozenset(k.negations)
        self._work = work

    def tokens(self, text: str) -> list[str]:
        """Words (a-z runs), numbers (digits, a decimal part, a unit or letter suffix: "2b",
        "4mm", "1.5"), line ends and single marks; other whitespace separates. One pass by
        hand: a regex engine's per-match cost is what made RE2's finditer slow here."""
        self.work_scanned(len(text))
        found: list[str] = []
        i, n = 0, len(text)
        while i < n:
            c = text[i]
            start = i
            if c in _LETTERS:
                while i < n and text[i] in _LETTERS:
                    i += 1
            elif c in _DIGITS:
                while i < n and text[i] in _DIGITS:
                    i += 1
                if i + 1 < n and text[i] == "." and text[i + 1] in _DIGITS:
                    i += 1
                    while i < n and text[i] in _DIGITS:
                        i += 1
                while i < n and text[i] in _LETTERS:
                    i += 1
            elif c == "\n" or not c.isspace():
                i += 1
            else:
                i += 1
                continue
            found.append(text[start:i])
        return found

    def work_scanned(self, count: int) -> None:
        self._work.scanned += count

    def statements(self, text: str) -> list[Statement]:
        tokens = self.tokens(text)
        found: list[Statement] = []
        scan = _Scan()
        i, n = 0, len(tokens)
        while i < n:
            self._work.steps += 1
            token = tokens[i]
            width = self._label_at(tokens, i)
            if not width:
                if token in _BOUNDARIES:
                    scan = _Scan()
                else:
                    scan.history = scan.history or token in self._before
                    scan.negation = scan.negation or token in self._negations
                i += 1
                continue
            pre_site = self._site_before(tokens, i)
            end, entries, ambiguous, legend = self._after_label(tokens, i + width, pre_site)
            if entries and not legend:
                historical = scan.history or self._historical_after(tokens, end)
                current = not (historical or scan.negation)
                found += [Statement(c, s, current, ambiguous) for c, s in entries]
            scan = _Scan()
            i = max(end, i + width)
        return found

    # --- the parts of one statement ------------------------------------------------------

    def _label_at(self, tokens: Sequence[str], i: int) -> int:
        for label in self._labels:
            self._work.steps += 1
            if tuple(tokens[i : i + len(label)]) == label:
                return len(label)
        return 0

    def _site_at(self, tokens: Sequence[str], i: int) -> tuple[str | None, int]:
        for words, site in self._sites:
            self._work.steps += 1
            if tuple(tokens[i : i + len(words)]) == words:
                return site, i + len(words)
        return None, i

    def _site_before(self, tokens: Sequence[str], i: int) -> str | None:
        """A site word just before the label ("Neck: NI-RADS 1", "Primary site NI-RADS 2a")."""
        j = i - 1
        while j >= 0 and i - j <= _SITE_LOOKBACK and tokens[j] in self._fillers:
            self._work.steps += 1
            j -= 1
        for words, site in self._sites:
            self._work.steps += 1
            start = j - len(words) + 1
            if start >= 0 and tuple(tokens[start : j + 1]) == words:
                return site
        return None

    def _skip_fillers(self, tokens: Sequence[str], j: int) -> int:
        n = len(tokens)
        while j < n:
            self._work.steps += 1
            word = tokens[j]
            if word in self._fillers or word in self._versions:
                j += 1
            elif word == "v" and j + 1 < n and tokens[j + 1][:1].isdigit():
                j += 2  # "v 2025"
            elif word == "." and j > 0 and tokens[j - 1] == "cat":
                j += 1  # "cat."
            else:
                break
        return j

    def _after_label(
        self, tokens: Sequence[str], j: int, pre_site: str | None
    ) -> tuple[int, list[tuple[NiradsCategory, str | None]], bool, bool]:
        """(end, [(category, site)], ambiguous, legend) for what follows one label."""
        n = len(tokens)
        entries: list[tuple[NiradsCategory, str | None]] = []
        ambiguous = False
        j = self._skip_fillers(tokens, j)
        site: str | None = pre_site
        if j < n and tokens[j] not in _CATEGORIES:
            site, j = self._site_at(tokens, j)
            if site is None:
                return j, [], False, False
            j = self._skip_fillers(tokens, j)
        while j < n and tokens[j] in _CATEGORIES:
            self._work.steps += 1
            category: NiradsCategory = _category(tokens[j])
            j += 1
            if j < n and tokens[j] == "=":
                return j + 1, [], False, True  # "NI-RADS 1 = no evidence of recurrence": a key
            if j + 1 < n and tokens[j] in self._alternatives and tokens[j + 1] in _CATEGORIES:
                ambiguous = True  # "NI-RADS 2b vs 3", "NI-RADS 2-3"
                j += 2
            if site is None and j + 1 < n and tokens[j] == "(":
                site, after = self._site_at(tokens, j + 1)
                if site is not None:
                    j = after + (1 if after < n and tokens[after] == ")" else 0)
            entries.append((category, site))
            # another site of the same statement: "Primary 2a, Neck 1"
            k = j
            if k < n and tokens[k] in _LIST_JOINS:
                k += 1
            next_site, k = self._site_at(tokens, k)
            if next_site is None:
                break
            site, j = next_site, self._skip_fillers(tokens, k)
        return j, entries, ambiguous, False

    def _historical_after(self, tokens: Sequence[str], end: int) -> bool:
        """A prior-study word right after the statement ("NI-RADS 2b on the prior MRI")."""
        for token in tokens[end : end + _AFTER_WINDOW]:
            self._work.steps += 1
            if token in _BOUNDARIES or token in ("-", "("):
                return False  # "NI-RADS 0 - prior imaging requested": an explanation
            if token in self._after:
                return True
        return False


def _category(token: str) -> NiradsCategory:
    categories: dict[str, NiradsCategory] = {
        "0": "0",
        "1": "1",
        "2": "2",
        "2a": "2a",
        "2b": "2b",
        "3": "3",
        "4": "4",
    }
    return categories[token]
