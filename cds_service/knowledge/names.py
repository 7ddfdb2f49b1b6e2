"""Reading names (order names, study descriptions, implant names): one normalisation, and pattern
matchers whose fast pre-check is derived from the patterns themselves.

A pre-check that is written down separately from the patterns it guards can silently switch a
safety rule off: add the implant pattern ``ICD`` without its keyword and "ICD in situ" is never
read. Here the pre-check words are computed from each pattern (a word every match must contain),
and a pattern for which no such word can be found is refused when the knowledge is loaded.

Every knowledge pattern here runs on RE2 (cds_service.knowledge.linear_regex): names are client
text, and no name can make a match take more than linear time. ``re`` parses patterns (pre-checks)
and runs the five fixed patterns of the normalisation, which are this module's own and linear in
``re`` too (see ``normalise_text``): RE2's Python wrapper substitutes in a Python loop, ~9x
slower, and the normalisation runs on every name read.
"""

from __future__ import annotations

import re
import re._constants as sre_constants  # the stdlib's regex parser (stable since Python 3.11)
import re._parser as sre_parser
from collections.abc import Iterable, Sequence
from typing import Any

from cds_service.knowledge.linear_regex import LinearPattern, compile_linear

#: Words the normalisation writes itself (W/O -> WO, WITH -> W, + -> AND): the raw name need not
#: hold them, so they can never serve as a pre-check on the raw name.
_REWRITTEN_WORDS = ("WO", "AND")


class UncheckablePatternError(ValueError):
    """A pattern has no literal word that every match must contain."""


def normalise_text(text: str) -> str:
    """Upper-case and rewrite the usual order-name shorthands to plain words.

    "W/O" and "WITHOUT" -> WO, "W/" and "WITH" -> W, "+" and "&" -> AND, other punctuation -> space,
    so "MR FACE/NECK W+WO" reads "MR FACE NECK W AND WO". The result starts and ends with a space.

    The patterns are fixed (never from knowledge or clients) and cannot backtrack more than
    linearly in ``re``: each has at most one repeat before a literal, and a repeat of spaces
    that fails at a non-``/`` is not tried again from inside the same run of spaces (a run
    follows one ``W`` only). ``tests/test_names.py`` checks them against the same patterns on
    RE2 on adversarial names; ``benchmarks/redos.py`` times them on 100,000 characters.
    """
    t = text.upper()
    t = _W_SLASH_O.sub(" WO ", t)
    t = _W_SLASH.sub(" W ", t)
    t = t.replace("+", " AND ").replace("&", " AND ")
    t = _NOT_WORD.sub(" ", t)
    t = _WITHOUT.sub("WO", t)
    t = _WITH.sub("W", t)
    return " " + " ".join(t.split()) + " "


#: The normalisation's own patterns (see normalise_text), run by ``re`` with ASCII word boundaries
#: and RE2's whitespace (``\s`` is ``[\t\n\f\r ]`` there), so they read as they did on RE2.
_W_SLASH_O = re.compile(r"\bW[\t\n\f\r ]*/[\t\n\f\r ]*O\b", re.ASCII)
_W_SLASH = re.compile(r"\bW[\t\n\f\r ]*/", re.ASCII)
_NOT_WORD = re.compile(r"[^A-Z0-9]+", re.ASCII)
_WITHOUT = re.compile(r"\bWITHOUT\b", re.ASCII)
_WITH = re.compile(r"\bWITH\b", re.ASCII)
#: Names up to this length are pre-checked by looking for each gate word in turn (C substring
#: search; RE2's wrapper costs ~10 µs a call); a longer name by the RE2 gate, linear in its
#: length whatever the number of words.
SHORT_NAME_CHARS = 1024


def word_pattern(alternatives: Iterable[str]) -> LinearPattern:
    """Alternatives matched as whole words of normalised text (RE2: linear time). An
    alternative may end with `` $``: the name's last word (normalised text ends with a space;
    RE2 has no lookahead for ``W(?= $)``)."""
    joined = "|".join(f"(?:{a})" for a in alternatives)
    return compile_linear(r"\b(?:" + joined + r")(?:\b|$)")


def _usable_pieces(run: str) -> list[str]:
    """Words of a literal run that the raw (un-normalised) upper-case name must hold too."""
    return [
        piece
        for piece in run.split(" ")
        if piece
        and re.fullmatch(r"[A-Z0-9]+", piece)
        and not any(piece in rewritten for rewritten in _REWRITTEN_WORDS)
    ]


def _best(options: list[frozenset[str]]) -> frozenset[str] | None:
    """Of several requirements that all hold, the most selective: longest shortest word."""
    if not options:
        return None
    return max(options, key=lambda o: (min(len(w) for w in o), -len(o)))


def _required(tokens: Sequence[tuple[Any, Any]]) -> frozenset[str] | None:
    """Words one of which every match of this parsed sequence contains; None if unknown."""
    options: list[frozenset[str]] = []
    run: list[str] = []

    def flush() -> None:
        options.extend(frozenset({p}) for p in _usable_pieces("".join(run)))
        run.clear()

    for op, arg in tokens:
        if op is sre_constants.LITERAL:
            run.append(chr(arg))
            continue
        flush()
        found: frozenset[str] | None = None
        if op is sre_constants.SUBPATTERN:
            found = _required(arg[-1])
        elif op is sre_constants.BRANCH:
            branches = [_required(branch) for branch in arg[1]]
            if all(b is not None for b in branches):
                found = frozenset().union(*(b for b in branches if b is not None))
        elif op in (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT) and arg[0] >= 1:
            found = _required(arg[2])
        if found:
            options.append(found)
    flush()
    return _best(options)


def required_words(pattern: str) -> frozenset[str]:
    """Words (upper case) one of which the raw name must hold for ``pattern`` to match its
    normalised form; raises UncheckablePatternError when there is no such word."""
    found = _required(sre_parser.parse(pattern))
    if not found:
        raise UncheckablePatternError(
            f"pattern {pattern!r} has no literal word that every match must contain"
        )
    return found


class NameMatcher:
    """Whole-word patterns on normalised names, behind a pre-check derived from the patterns:
    a name holding none of the required words is not normalised or searched. The pre-check
    only saves time; ``tests/test_names.py`` proves it never changes an answer."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = tuple(patterns)
        words = frozenset().union(*(required_words(p) for p in patterns))
        # A word that holds another gate word adds nothing (ORBITAL holds ORB).
        self.gate_words = tuple(
            sorted(w for w in words if not any(o != w and o in w for o in words))
        )
        self._gate = compile_linear("|".join(re.escape(w) for w in self.gate_words))
        self._pattern = word_pattern(patterns)

    def could_match(self, name: str) -> bool:
        """The pre-check alone: False means the name cannot match."""
        upper = name.upper()
        if len(upper) <= SHORT_NAME_CHARS:
            return any(word in upper for word in self.gate_words)
        return self._gate.search(upper) is not None

    def match(self, name: str) -> bool:
        return self.could_match(name) and bool(self._pattern.search(normalise_text(name)))

    def match_normalised(self, normalised: str) -> bool:
        """Without the pre-check, on an already normalised name."""
        return bool(self._pattern.search(normalised))
