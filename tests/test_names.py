"""Name matchers: the fast pre-check is derived from the patterns and never changes an answer."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.knowledge.loader import Knowledge
from cds_service.knowledge.names import (
    NameMatcher,
    UncheckablePatternError,
    normalise_text,
    required_words,
)


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        ("PACE ?MAKER", {"MAKER"}),
        ("(SPINAL CORD|DEEP BRAIN|VAGUS NERVE) STIMULATOR", {"STIMULATOR"}),
        ("(SPINAL CORD|DEEP BRAIN) (IMPLANT)?", {"SPINAL", "BRAIN"}),
        ("COCHLEAR (IMPLANT|PROSTHESIS)", {"COCHLEAR"}),
        ("ICD", {"ICD"}),
        ("ORBITS?", {"ORBIT"}),
        ("(?:PRE )+CONTRAST", {"CONTRAST"}),
    ],
)
def test_required_words(pattern: str, words: set[str]) -> None:
    assert required_words(pattern) == words


@pytest.mark.parametrize("pattern", ["W(?= $)", "[A-Z]{3}", "(?:ICD)?", "WO", "W AND WO", "A|B C"])
def test_patterns_without_a_checkable_word_are_refused(pattern: str) -> None:
    with pytest.raises(UncheckablePatternError):
        required_words(pattern)


def _matchers(knowledge: Knowledge) -> list[NameMatcher]:
    head_neck = knowledge.imaging.recommendedProtocol.headNeckRegions
    region_patterns = [
        p for r in knowledge.imaging.text.regions if r.region in head_neck for p in r.patterns
    ]
    return [NameMatcher(knowledge.safety.implantTextPatterns), NameMatcher(region_patterns)]


WORDS = [
    "PACEMAKER", "PACE", "MAKER", "pace-maker", "ICD", "AICD", "defibrillator", "Cochlear",
    "implant", "prosthesis", "spinal", "cord", "stimulator", "deep", "brain", "NECK", "face",
    "orbits", "skull", "base", "parotid", "cervical", "lymph", "nodes", "W/O", "W/", "WITH",
    "WITHOUT", "+", "&", "-", "/", "é", "MRI", "CT", "in situ", "left", "skullbase",
]  # fmt: skip


@settings(max_examples=600, deadline=None)
@given(parts=st.lists(st.sampled_from(WORDS) | st.text(max_size=4), max_size=6))
def test_the_pre_check_never_changes_an_answer(knowledge: Knowledge, parts: list[str]) -> None:
    name = " ".join(parts)
    for matcher in _matchers(knowledge):
        assert matcher.match(name) == matcher.match_normalised(normalise_text(name))


# --- the normalisation and the pre-check run without RE2's wrapper: same answers -------------

#: The normalisation as it ran on RE2 before (issue 32): the reference the ``re`` version keeps.
_RE2_REFERENCE = [
    (r"\bW\s*/\s*O\b", " WO "),
    (r"\bW\s*/", " W "),
    (None, None),  # "+" and "&" -> " AND "
    (r"[^A-Z0-9]+", " "),
    (r"\bWITHOUT\b", "WO"),
    (r"\bWITH\b", "W"),
]


def _normalised_on_re2(text: str) -> str:
    from cds_service.knowledge.linear_regex import compile_linear

    t = text.upper()
    for pattern, replacement in _RE2_REFERENCE:
        if pattern is None or replacement is None:
            t = t.replace("+", " AND ").replace("&", " AND ")
        else:
            t = compile_linear(pattern).sub(replacement, t)
    return " " + " ".join(t.split()) + " "


#: Pieces that tell RE2's and ``re``'s defaults apart: Unicode spaces and letters around W and /.
TRICKY = [
    "W", "/", "O", "W/O", "W /O", "W/ O", "w/o", " ", "\t", "\v", "\u00a0", "\u2003", "\n",
    "É", "é", "ß", "ı", "İ", "ﬀ", "_", "WITH", "WITHOUT", "with", "+", "&", "0", "Ö", "WO",
]  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(parts=st.lists(st.sampled_from(TRICKY + WORDS) | st.text(max_size=3), max_size=10))
def test_normalisation_on_re_reads_as_it_did_on_re2(parts: list[str]) -> None:
    for name in ("".join(parts), " ".join(parts)):
        assert normalise_text(name) == _normalised_on_re2(name)


@settings(max_examples=600, deadline=None)
@given(parts=st.lists(st.sampled_from(WORDS + TRICKY) | st.text(max_size=4), max_size=8))
def test_the_substring_pre_check_is_the_re2_gate(knowledge: Knowledge, parts: list[str]) -> None:
    name = "".join(parts)
    for matcher in _matchers(knowledge):
        assert matcher.could_match(name) == (matcher._gate.search(name.upper()) is not None)


def test_a_long_name_is_pre_checked_by_the_re2_gate(knowledge: Knowledge) -> None:
    matcher = _matchers(knowledge)[0]
    long_name = "x" * 5000 + " pacemaker"
    assert matcher.could_match(long_name)
    assert not matcher.could_match("x" * 5000)


def test_adversarial_names_normalise_as_on_re2() -> None:
    for name in ("W" + " " * 20_000 + "x", "W " * 10_000, "W/ " * 5_000, "\u00a0W/\u00a0O" * 2_000):
        assert normalise_text(name) == _normalised_on_re2(name)
