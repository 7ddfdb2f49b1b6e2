"""The Argonaut PAMA rating of an order: by its procedure code, and in agreement with the cards.

A PAMA rating rates a procedure code: CPT 70543 is "MRI orbit, face, and/or neck without and with
contrast", rated *appropriate* in this scenario whatever regions its orderable's name lists
(whether the protocol covers the face and skull base is the cards' business). Outside the scenario,
and for codes the ACR table does not rate, it is *no-criteria-apply*. Where a shown card warns
against the order as placed (hooks/knowledge/ratings.json ``notAppropriateWhen``), the rating says
so too: *not-appropriate*. The CDS Hooks sandbox's PAMA screen reads the rating from every
``update`` it applies, so every update of a CPT-coded order carries one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from cds_service.fhir.records import json_copy
from cds_service.knowledge.codesystems import CPT
from cds_service.knowledge.loader import RatedProcedure, RatingKnowledge
from cds_service.knowledge.rules import RuleId
from cds_service.knowledge.terminology import Code

PAMA_EXTENSION = "http://fhir.org/argonaut/Extension/pama-rating"
PAMA_CODESYSTEM = "http://fhir.org/argonaut/CodeSystem/pama-rating"


def cpt_codes(codings: Iterable[Code | Mapping[str, Any]]) -> tuple[str, ...]:
    """The CPT codes among ``codings`` (read facts or raw FHIR codings)."""
    found = []
    for c in codings:
        system, code = (
            (c.system, c.code) if isinstance(c, Code) else (c.get("system"), c.get("code"))
        )
        if system == CPT and isinstance(code, str) and code.strip():
            found.append(code.strip())
    return tuple(found)


class PamaRater:
    """Ratings by procedure code, built once from the ACR table."""

    def __init__(self, ratings: RatingKnowledge) -> None:
        self._by_code: dict[str, RatedProcedure] = {
            code: p for p in ratings.procedures for code in p.cpt
        }
        self._no_criteria = ratings.pamaNoCriteria
        self._warning_rules = frozenset(ratings.notAppropriateWhen.rules)
        self._warning_codes = {r: frozenset(c) for r, c in ratings.notAppropriateWhen.codes.items()}

    def procedure(self, codes: Iterable[str]) -> RatedProcedure | None:
        """The rated procedure of the first of ``codes`` the ACR table lists."""
        return next((p for c in codes if (p := self._by_code.get(c)) is not None), None)

    def warns_against(self, codes: Iterable[str], shown_rule: RuleId | None) -> bool:
        """Does the card of ``shown_rule`` make an order with these CPT codes not-appropriate
        (hooks/knowledge/ratings.json ``notAppropriateWhen``)?"""
        if shown_rule not in self._warning_rules:
            return False
        only = self._warning_codes.get(shown_rule)
        return only is None or any(c in only for c in codes)

    def rating(self, codes: Iterable[str], in_scope: bool, shown_rule: RuleId | None) -> str:
        """The rating of an order with these CPT codes, given the card shown for it (if any)."""
        codes = tuple(codes)
        if not in_scope:
            return self._no_criteria
        if self.warns_against(codes, shown_rule):
            return "not-appropriate"
        procedure = self.procedure(codes)
        return procedure.pama if procedure is not None else self._no_criteria


def with_rating(resource: Mapping[str, Any], rating: str) -> dict[str, Any]:
    """A copy of ``resource`` carrying ``rating`` as its (only) pama-rating extension."""
    rated: dict[str, Any] = json_copy(dict(resource))
    extensions = [
        e
        for e in rated.get("extension", [])
        if isinstance(e, dict) and e.get("url") != PAMA_EXTENSION
    ]
    extensions.append(
        {
            "url": PAMA_EXTENSION,
            "valueCodeableConcept": {"coding": [{"system": PAMA_CODESYSTEM, "code": rating}]},
        }
    )
    rated["extension"] = extensions
    return rated
