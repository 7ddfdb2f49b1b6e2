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
