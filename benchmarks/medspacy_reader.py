"""medspaCy scored on the shared impression table (issue 24): its sectionizer and ConText
(negation, historical, hypothetical, uncertainty) around target rules for the same findings the
hand-written reader knows. Run on demand, in an environment where medspaCy is installed (it is
not a dependency of the service):

    python3 -m venv /tmp/medspacy-venv && /tmp/medspacy-venv/bin/pip install medspacy
    /tmp/medspacy-venv/bin/python -m benchmarks.medspacy_reader

medspaCy's default pipeline needs no model download (a blank English tokenizer, PyRuSH
sentences, rule files shipped in the package). The score is printed next to the hand-written
reader's in the README."""

from __future__ import annotations

import re
from typing import Any

import medspacy  # type: ignore[import-not-found]
from medspacy.context import ConTextRule  # type: ignore[import-not-found]
from medspacy.section_detection import SectionRule  # type: ignore[import-not-found]
from medspacy.target_matcher import TargetRule  # type: ignore[import-not-found]

from tests.impression_table import Said, rows, score

_NIRADS = re.compile(
    r"\bni[\s-]?rads\b\W{0,3}(?:category|cat\.?|score)?\W{0,3}([0-4][ab]?)\b", re.I
)
_RECURRENCE = (
    r"recurren\w*|residual (?:tumou?r|disease)|metasta\w*"
    r"|perineural (?:tumou?r )?(?:spread|extension|invasion)|malignan\w*"
)
_STRENGTH = {
    "negative": 1,
    "indeterminate": 2,
    "highly-suspicious": 3,
    "positive": 4,
    "recurrence": 5,
}
_BRANCH = {
    "0": "incomplete",
    "1": "negative",
    "2a": "low-suspicion-mucosal",
    "2": "indeterminate",
    "2b": "indeterminate",
    "3": "highly-suspicious",
    "4": "recurrence",
}
_RANK = {"0": 0, "1": 1, "2a": 2, "2": 3, "2b": 3, "3": 4, "4": 5}


def build() -> Any:
    nlp = medspacy.load(
        medspacy_enable=[
            "medspacy_pyrush",
            "medspacy_target_matcher",
            "medspacy_context",
            "medspacy_sectionizer",
        ]
    )
    targets = nlp.get_pipe("medspacy_target_matcher")
    targets.add(
        [
            TargetRule(
                "recurrence",
                "RECURRENCE",
                pattern=_RECURRENCE,
            ),
            TargetRule(
                "nirads",
                "NIRADS",
                pattern=r"ni[\s-]?rads\W{0,3}(?:category|cat\.?|score)?\W{0,3}[0-4][ab]?\b",
            ),
            TargetRule(
                "post-treatment change",
                "EXPECTED",
                pattern=r"(?:expected|stable|typical) post[- ]?\w+ changes?",
            ),
            TargetRule(
                "proven",
                "PROVEN",
                pattern=r"(?:biopsy|pathology|histolog\w*)[- ](?:proven|confirmed)",
            ),
            TargetRule("highly suspicious", "HIGHLY", pattern=r"highly suspicious|most likely"),
            TargetRule("mri", "MRI", pattern=r"\bmri\b"),
        ]
    )
    context = nlp.get_pipe("medspacy_context")
    context.add(
        [
            ConTextRule("interval resolution", "HISTORICAL", direction="FORWARD"),
            ConTextRule("previously described", "HISTORICAL", direction="FORWARD"),
            ConTextRule("status post", "HISTORICAL", direction="FORWARD"),
            ConTextRule("cannot be excluded", "POSSIBLE_EXISTENCE", direction="BACKWARD"),
            ConTextRule("suspicious for", "POSSIBLE_EXISTENCE", direction="FORWARD"),
            ConTextRule("recommend", "HYPOTHETICAL", direction="FORWARD"),
        ]
    )
    sections = nlp.get_pipe("medspacy_sectionizer")
    sections.add(
        [
            SectionRule("impression:", "impression"),
            SectionRule("revised impression:", "addendum"),
            SectionRule("corrected impression:", "addendum"),
            SectionRule("amended impression:", "addendum"),
            SectionRule("findings:", "findings"),
            SectionRule("technique:", "technique"),
            SectionRule("comparison:", "comparison"),
            SectionRule("history:", "past_medical_history"),
            SectionRule("indication:", "reason_for_examination"),
            SectionRule("recommendation:", "observation_and_plan"),
        ]
    )
    return nlp


def reader(nlp: Any) -> Any:
    def read(text: str) -> Said:
        if not text.strip():
            return Said(None)
        doc = nlp(text)
        cats = {s.category for s in doc._.sections}
        keep = (
            {"impression", "addendum"}
            if cats & {"impression", "addendum"}
            else {None, "impression", "addendum"}
        )
        found: list[str] = []
        categories: list[str] = []
        proven = recommends = False
        for ent in doc.ents:
            section = ent._.section_category
            if section not in keep:
                continue
            if ent.label_ == "MRI" and ent._.is_hypothetical:
                recommends = True
            if ent._.is_historical or ent._.is_family:
                continue
            if ent.label_ == "NIRADS":
                m = _NIRADS.search(ent.text)
                if m and not ent._.is_negated:
                    categories.append(m.group(1).lower())
            elif ent.label_ == "PROVEN" and not ent._.is_negated:
                proven = True
                found.append("recurrence")
            elif ent.label_ == "HIGHLY" and not ent._.is_negated:
                found.append("highly-suspicious")
            elif ent.label_ == "EXPECTED":
                found.append("negative")
            elif ent.label_ == "RECURRENCE" and not ent._.is_hypothetical:
                if ent._.is_negated:
                    found.append("negative")
                elif ent._.is_uncertain:
                    found.append("indeterminate")
                else:
                    found.append("positive")
        if categories:
            top = max(categories, key=_RANK.__getitem__)
            return Said(_BRANCH[top], top, proven, recommends)
        if not found:
            return Said(None, None, False, recommends)
        return Said(max(found, key=_STRENGTH.__getitem__), None, proven, recommends)

    return read


def main() -> None:
    from loguru import logger  # type: ignore[import-not-found]

    logger.remove()  # PyRuSH logs every sentence at DEBUG
    right, wrong = score(reader(build()))
    print(f"medspaCy {medspacy.__version__}: {right}/{len(rows())} right")
    for row, said in wrong:
        print(
            f"  {row.text[:90]!r}: expected {row.branch}/{row.category},"
            f" read {said.branch}/{said.category}"
        )


if __name__ == "__main__":
    main()
