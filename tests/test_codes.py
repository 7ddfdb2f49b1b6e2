"""Every code the service or its examples use is checked: known source, real ICD-10-CM code."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import simple_icd_10_cm as icd

from cds_service.knowledge.codesystems import ICD10CM
from cds_service.knowledge.loader import Knowledge
from tests.conftest import EXAMPLES, expected_outcomes, vignette, walk

LOCAL_PREFIX = "http://hospital.example.org/"
STATUS_SYSTEMS = {
    "http://terminology.hl7.org/CodeSystem/condition-clinical",
    "http://terminology.hl7.org/CodeSystem/condition-ver-status",
    "http://terminology.hl7.org/CodeSystem/condition-category",
    "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
    "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
    "http://terminology.hl7.org/CodeSystem/observation-category",
}


def knowledge_codes(knowledge: Knowledge) -> dict[tuple[str, str], str]:
    codes = {
        (c.system, c.code): c.display
        for name in knowledge.valuesets.names
        for c in knowledge.valuesets.concepts(name)
    }
    codes.update({(o.system, o.code): o.display for o in knowledge.imaging.codedOrderables})
    codes.update(
        {(c.system, c.code): c.display for o in knowledge.cards.orders.values() for c in o.coding}
    )
    pathway = knowledge.pathway
    codes.update({(c.system, c.code): c.display for c in pathway.tissueSampling.reportCategories})
    codes.update(
        {(c.system, c.code): c.display for cs in pathway.acc.glandCodes.values() for c in cs}
    )
    return codes


def background_codes() -> dict[tuple[str, str], str]:
    data = json.loads((EXAMPLES / "background-codes.json").read_text())
    assert all(c["source"] for c in data["codes"])
    return {(c["system"], c["code"]): c["display"] for c in data["codes"]}


def vignette_codings() -> Iterator[tuple[str, dict[str, Any]]]:
    for name in expected_outcomes():
        for path, value in walk(vignette(name)):
            if isinstance(value, dict) and "system" in value and "code" in value:
                yield f"{name}:{path}", value


def test_every_icd10cm_code_in_the_knowledge_is_real_with_its_cms_description(
    knowledge: Knowledge,
) -> None:
    checked = 0
    for (system, code), display in knowledge_codes(knowledge).items():
        if system == ICD10CM:
            assert icd.is_valid_item(code), code
            assert icd.get_description(code) == display, code
            checked += 1
    assert checked >= 14


def test_every_icd10cm_code_in_the_examples_is_real() -> None:
    for (system, code), display in background_codes().items():
        if system == ICD10CM:
            assert icd.is_valid_item(code) and icd.get_description(code) == display


def test_every_vignette_code_is_known_and_displayed_as_checked(knowledge: Knowledge) -> None:
    own = {
        (knowledge.cards.clinicalConcernSystem, c.code): c.display
        for c in knowledge.cards.clinicalConcerns
    }  # the service's own reasons for the exam (cards.json), as a client sends them back
    known = knowledge_codes(knowledge) | background_codes() | own
    seen = 0
    for where, coding in vignette_codings():
        system = coding["system"]
        if system.startswith(LOCAL_PREFIX) or system in STATUS_SYSTEMS:
            continue
        key = (system, coding["code"])
        assert key in known, f"{where}: {key} is in no checked list"
        if "display" in coding:
            assert coding["display"] == known[key], where
        seen += 1
    assert seen > 50


def test_icdo3_codes_use_the_hl7_terminology_uri(knowledge: Knowledge) -> None:
    systems = {system for system, _ in knowledge_codes(knowledge)}
    assert "http://terminology.hl7.org/CodeSystem/icd-o-3" in systems
    assert not any(
        "icd-o" in s.lower() and s != "http://terminology.hl7.org/CodeSystem/icd-o-3"
        for s in systems
    )


def test_known_mislabelled_and_retired_codes_are_absent(knowledge: Knowledge) -> None:
    # shared/clinical/codes.md: 363449006 is testis cancer (seen mislabelled as parotid);
    # 254464000 and 93896003 appear retired; C08.8 is not an ICD-10-CM code.
    codes = knowledge_codes(knowledge)
    for system, code in [
        ("http://snomed.info/sct", "363449006"),
        ("http://snomed.info/sct", "254464000"),
        ("http://snomed.info/sct", "93896003"),
        (ICD10CM, "C08.8"),
    ]:
        assert (system, code) not in codes
