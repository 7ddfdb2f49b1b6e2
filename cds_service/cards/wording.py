"""The card texts of hooks/knowledge/cards.json, filled only with the placeholders their
contract names, and checked at start-up so that a text using a placeholder its builder does
not fill stops the service instead of failing a request."""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import TYPE_CHECKING

from cds_service.cards.markdown import escape_markdown
from cds_service.knowledge.loader import CardKnowledge, KnowledgeError
from cds_service.knowledge.rules import RuleId

if TYPE_CHECKING:
    from cds_service.cards.rules.registry import RuleRendering


def needs(*names: str) -> frozenset[str]:
    """The placeholders a text is filled with."""
    return frozenset(names)


def join_labels(labels: tuple[str, ...]) -> str:
    """ "a", "a and b", "a, b and c"."""
    if len(labels) <= 1:
        return "".join(labels)
    return ", ".join(labels[:-1]) + " and " + labels[-1]


def escape(text: str) -> str:
    """Keep EHR-supplied names from being read as markdown (cds_service.cards.markdown)."""
    return escape_markdown(text)


#: Texts every card may use, and the placeholders the renderer fills in each.
COMMON_TEXTS: dict[str, frozenset[str]] = {
    "evidenceCondition": needs("display", "code_label", "date_phrase"),
    "replaceDescription": needs("alternative"),
    "historyNote": needs(
        "cancer",
        "code_label",
        "date_phrase",
        "histology",
        "treatments",
        "last_report",
        "prior",
        "hallmark",
    ),
    "historyHistology": needs("histology"),
    "historyLastReport": needs("modality", "date", "finding"),
    "accHallmark": needs("nerves"),
    "accLine": needs("nerves"),
    "accChestLine": needs(),
    "historyTreatment": needs("display", "date_phrase"),
    "historyPrior": needs("prior", "date"),
    "createDescription": needs("alternative"),
    "deleteDescription": needs("ordered"),
    "couldNotCheck": needs("lines"),
    "whyPatient": needs("cancer", "histology", "treatments", "pathway"),
    "whyPositive": needs("report", "judgement"),
    "whyAcc": needs("nerves"),
    "whyAccChest": needs(),
    "whyTreatment": needs("display", "code_label", "date_phrase"),
    "whyRecurrence": needs("recurrence"),
    "whyHistology": needs("histology"),
    "comparisonColumns": needs(),
    "comparisonOrdered": needs(),
    "comparisonRecommended": needs(),
    "comparisonAlternative": needs(),
    "deferredStudy": needs("study", "date"),
    "ratedAsCode": needs("category", "code"),
    "guidanceLinkLabel": needs(),
}

DATE_TEXTS: dict[str, frozenset[str]] = {
    "diagnosed": needs("date"),
    "recorded": needs("date"),
    "performed": needs("date"),
    "performedPeriod": needs("start", "end"),
}


class Wording:
    """The texts of cards.json, filled only with the placeholders their contract names."""

    def __init__(
        self, knowledge: CardKnowledge, rule_texts: Mapping[RuleId, Mapping[str, frozenset[str]]]
    ) -> None:
        self._k = knowledge
        self._rule_texts = rule_texts
        self._dates = knowledge.datePhrases.model_dump()

    @staticmethod
    def _fill(
        where: str, template: str, contract: frozenset[str], values: Mapping[str, object]
    ) -> str:
        if set(values) != contract:  # a builder out of step with its RULES entry (a test fails)
            raise ValueError(f"{where}: filled with {sorted(values)}, declared {sorted(contract)}")
        return template.format(**values)

    def rule(self, rule: RuleId, name: str, /, **values: object) -> str:
        contract = self._rule_texts[rule][name]
        return self._fill(f"{rule}.{name}", self._k.rules[rule].texts[name], contract, values)

    def common(self, name: str, /, **values: object) -> str:
        return self._fill(name, self._k.common[name], COMMON_TEXTS[name], values)

    def date(self, name: str, /, **values: object) -> str:
        return self._fill(name, self._dates[name], DATE_TEXTS[name], values)


def _check_texts(
    where: str, texts: Mapping[str, str], contract: Mapping[str, frozenset[str]]
) -> None:
    for name, allowed in contract.items():
        if name not in texts:
            raise KnowledgeError(f"cards.json: {where} has no text {name!r}")
        try:
            used = {field for _, field, _, _ in string.Formatter().parse(texts[name]) if field}
        except ValueError as exc:
            raise KnowledgeError(f"cards.json: {where}.{name} is not a valid template") from exc
        unknown = used - allowed
        if unknown:
            raise KnowledgeError(
                f"cards.json: {where}.{name} uses unknown placeholders {sorted(unknown)}"
            )


def check_wording(knowledge: CardKnowledge, rules: Mapping[RuleId, RuleRendering]) -> None:
    """Refuse wording that a rule's builder could not fill (run at start-up)."""
    unregistered = set(RuleId) - set(rules)
    if unregistered:  # a programming error, caught by the first test that builds an engine
        raise KnowledgeError(f"rules without an entry in the cards' RULES: {unregistered}")
    missing = set(rules) - set(knowledge.rules)
    if missing:
        raise KnowledgeError(f"cards.json: rules missing: {sorted(missing)}")
    for rule, entry in rules.items():
        texts = knowledge.rules[rule].texts
        _check_texts(f"rules.{rule}", texts, entry.texts)
        variants = set(knowledge.rules[rule].overrideReasons)
        if variants != entry.reason_variants:
            raise KnowledgeError(
                f"cards.json: rules.{rule}.overrideReasons must list exactly "
                f"{sorted(entry.reason_variants)}, not {sorted(variants)}"
            )
        for name in entry.texts:
            if name.startswith("summary") and len(texts[name]) >= 140:
                raise KnowledgeError(
                    f"cards.json: rules.{rule}.{name} must be under 140 characters"
                )
    _check_texts("common", knowledge.common, COMMON_TEXTS)
    _check_texts("datePhrases", knowledge.datePhrases.model_dump(), DATE_TEXTS)
