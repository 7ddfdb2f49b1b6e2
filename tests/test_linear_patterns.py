"""Every pattern this service applies to client text (order, study, implant, allergy and lab
names; the histology text) runs on RE2, in linear time, whatever the input: proved by compiling
each under RE2 (which refuses anything that would need backtracking), by the loader refusing a
pattern that cannot, and by an adversarial property test that the RE2 readings are the ones the
backtracking engine gave. No timing is asserted here (see benchmarks/redos.py for figures)."""

from __future__ import annotations

import functools
import json
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.knowledge.linear_regex import NotLinearError, compile_linear
from cds_service.knowledge.loader import Knowledge, KnowledgeError, load_knowledge
from cds_service.knowledge.names import NameMatcher, normalise_text, word_pattern

HOOKS = Path(__file__).resolve().parent.parent / "hooks"


@functools.cache
def _knowledge() -> Knowledge:
    return load_knowledge(HOOKS)


def _client_text_patterns() -> dict[str, list[str]]:
    """Every knowledge pattern applied to client text, outside the NI-RADS report reader."""
    k = _knowledge()
    text = k.imaging.text
    return {
        "imaging-orders.json": [
            *text.guidedProcedurePatterns,
            *text.ambiguousRegionPatterns,
            *(p for m in text.modalities for p in m.patterns),
            *(p for r in text.regions for p in r.patterns),
            *text.contrast.withoutAndWith,
            *text.contrast.without,
            *text.contrast.with_,
        ],
        "mri-safety.json": list(k.safety.implantTextPatterns),
        "contrast-safety.json": [
            p for patterns in k.contrast.gated_patterns().values() for p in patterns
        ],
        "pathway.json acc.textPattern": [k.pathway.acc.textPattern],
    }


def test_every_pattern_applied_to_client_text_compiles_under_re2() -> None:
    patterns = _client_text_patterns()
    assert sum(len(p) for p in patterns.values()) > 50
    for where, found in patterns.items():
        for pattern in found:
            compile_linear(pattern)  # raises NotLinearError naming the pattern
            assert where


def test_the_matchers_are_re2_patterns() -> None:
    assert type(word_pattern(["MRI"])).__module__ == "re2"
    matcher = NameMatcher(["PACE ?MAKER"])
    assert type(matcher._pattern).__module__ == "re2"
    assert type(matcher._gate).__module__ == "re2"


@pytest.mark.parametrize("pattern", [r"(A)\1", r"W(?= $)", r"(?<!X)Y", r"(?>A+)"])
def test_a_pattern_that_needs_backtracking_is_refused(pattern: str) -> None:
    with pytest.raises(NotLinearError):
        compile_linear(pattern)


def test_the_loader_refuses_a_backtracking_pattern_naming_the_file(tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    shutil.copytree(HOOKS, hooks)
    path = hooks / "knowledge" / "imaging-orders.json"
    data = json.loads(path.read_text())
    data["text"]["contrast"]["with"].append("(CONTRAST)\\1")
    path.write_text(json.dumps(data))
    with pytest.raises(KnowledgeError, match=r"imaging-orders\.json"):
        load_knowledge(hooks)


_WORDS = [
    "MRI",
    "MR",
    "CT",
    "W",
    "WO",
    "WITH",
    "WITHOUT",
    "CONTRAST",
    "NECK",
    "FACE",
    "ORBITS",
    "W/O",
    "W/",
    "+",
    "&",
    "GAD",
    "IV",
    "POST",
    "PRE",
    " ",
    "  ",
    "/",
    "-",
    "X",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_WORDS), max_size=30))
def test_re2_reads_names_exactly_as_the_backtracking_engine_did(words: list[str]) -> None:
    """The contrast words, old (``re``, with the lookahead) and new (RE2), on the same names."""
    k = _knowledge()
    name = normalise_text(" ".join(words))
    for group in ("withoutAndWith", "without", "with_"):
        alternatives = list(getattr(k.imaging.text.contrast, group))
        old = [a.replace("W $", "W(?= $)") for a in alternatives]
        backtracking = re.compile(r"\b(?:" + "|".join(f"(?:{a})" for a in old) + r")\b")
        assert bool(word_pattern(alternatives).search(name)) == bool(backtracking.search(name))


@pytest.mark.parametrize(
    "name",
    [
        "MRI " + " " * 200_000 + "x",
        "W" * 200_000,
        "W " * 100_000,
        "MRI NECK " + "W/" * 50_000 + "O",
        "PACE" * 50_000 + "MAKER",
    ],
)
def test_adversarial_names_are_read(name: str) -> None:
    """Inputs that make backtracking patterns blow up are read like any other (linear)."""
    k = _knowledge()
    matcher = NameMatcher(list(k.safety.implantTextPatterns))
    matcher.match(name)
    for group in (k.imaging.text.contrast.with_, k.imaging.text.contrast.withoutAndWith):
        word_pattern(group).search(normalise_text(name))
