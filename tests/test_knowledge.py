"""Bad knowledge stops the service at start-up: one negative case per way a file can be wrong."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import pytest

from cds_service.cards.rules import RULES
from cds_service.clinical.due_imaging import DueImaging
from cds_service.clinical.guidance import Finding
from cds_service.config import Settings
from cds_service.engine import CdsEngine
from cds_service.knowledge.loader import KnowledgeError, default_hooks_dir, load_knowledge
from cds_service.knowledge.rules import RuleId
from cds_service.knowledge.terminology import (
    CONDITION_VALUESETS,
    OBSERVATION_VALUESETS,
    TREATMENT_VALUESETS,
    ValueSetName,
)
from cds_service.web.app import create_app
from tests.conftest import vignette

Edit = Callable[[Path], object]


def _edit_json(relative: str, change: Callable[[Any], None]) -> Edit:
    def edit(root: Path) -> None:
        path = root / relative
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))

    return edit


VS = "knowledge/valuesets/malignant-major-salivary-neoplasm.json"
SERVICE = "services/salivary-post-treatment-imaging-order-select.json"


def _first_include(data: Any) -> Any:
    return data["compose"]["include"][0]


PATHWAY = "knowledge/pathway.json"
NEGATIVE_CASES: dict[str, tuple[Edit, str]] = {
    "report-reading pattern that does not compile": (
        _edit_json(PATHWAY, lambda d: d["wording"]["hedges"].append("(unclosed")),
        "cannot run in linear time",
    ),
    "report-reading pattern that could backtrack (RE2 refuses it)": (
        _edit_json(PATHWAY, lambda d: d["wording"]["hedges"].append("(?<!highly )suspicious")),
        "cannot run in linear time",
    ),
    "adenoid cystic carcinoma gland without nerves": (
        _edit_json(PATHWAY, lambda d: d["acc"]["nerves"].pop("sublingual")),
        "names no nerves",
    ),
    "routine reasons missing": (
        _edit_json(PATHWAY, lambda d: d.pop("routineReasons")),
        "routineReasons",
    ),
    "follow-up interval the wrong way round": (
        _edit_json(PATHWAY, lambda d: d.update(indeterminateFollowUpMonths=[3, 2])),
        "indeterminateFollowUpMonths",
    ),
    "NI-RADS category without a branch": (
        _edit_json(PATHWAY, lambda d: d["nirads"]["branches"].pop("2b")),
        "rank and a branch",
    ),
    "code without its checked-against source": (
        _edit_json(VS, lambda d: _first_include(d).pop("extension")),
        "checked against",
    ),
    "code without display": (
        _edit_json(VS, lambda d: _first_include(d)["concept"][0].pop("display")),
        "has no display",
    ),
    "value set that is not FHIR": (
        _edit_json(VS, lambda d: d.update(status="sort-of-active-maybe", compose="x")),
        "not a valid FHIR ValueSet",
    ),
    "value set with no codes": (
        _edit_json(VS, lambda d: _first_include(d).update(concept=[])),
        "lists no concept",
    ),
    "required value set missing": (
        lambda root: (root / "knowledge/valuesets/radiotherapy.json").unlink(),
        "value sets missing",
    ),
    "unreadable JSON": (
        lambda root: (root / "knowledge/cards.json").write_text("{not json"),
        "cannot read JSON",
    ),
    "summary of 140 characters or more": (
        _edit_json(
            "knowledge/cards.json",
            lambda d: d["rules"]["incomplete-mri-protocol"].update(summary="x" * 140),
        ),
        "summary",
    ),
    "unknown placeholder in card wording": (
        _edit_json(
            "knowledge/cards.json",
            lambda d: d["rules"]["incomplete-mri-protocol"]["texts"].update(
                regionsProblem="{patient_name}"
            ),
        ),
        "unknown placeholders",
    ),
    "placeholder another text of the rule has but this one's builder does not fill": (
        _edit_json(
            "knowledge/cards.json",
            lambda d: d["rules"]["pet-too-early"]["texts"].update(deferLabel="Defer ({days} d)"),
        ),
        "unknown placeholders",
    ),
    "rule text missing": (
        _edit_json(
            "knowledge/cards.json",
            lambda d: d["rules"]["us-limited"]["texts"].pop("suggestionLabel"),
        ),
        "has no text 'suggestionLabel'",
    ),
    "rule missing": (
        _edit_json("knowledge/cards.json", lambda d: d["rules"].pop("us-limited")),
        "rules missing",
    ),
    "wording for a rule the engine does not have": (
        _edit_json(
            "knowledge/cards.json",
            lambda d: d["rules"].update(extra=d["rules"]["us-limited"]),
        ),
        "extra",
    ),
    "unknown card field": (
        _edit_json("knowledge/cards.json", lambda d: d.update(typo=1)),
        "typo",
    ),
    "source url that is not https": (
        _edit_json("knowledge/cards.json", lambda d: d["source"].update(url="http://acr.org")),
        "url",
    ),
    "bad regular expression": (
        _edit_json(
            "knowledge/imaging-orders.json",
            lambda d: d["text"]["modalities"][0]["patterns"].append("(unclosed"),
        ),
        "bad pattern",
    ),
    "unknown modality": (
        _edit_json(
            "knowledge/imaging-orders.json",
            lambda d: d["codedOrderables"][0].update(modality="MAGIC"),
        ),
        "modality",
    ),
    "coded orderable without source": (
        _edit_json(
            "knowledge/imaging-orders.json", lambda d: d["codedOrderables"][0].update(source="")
        ),
        "source",
    ),
    "prefetch token the spec does not allow": (
        _edit_json(
            SERVICE,
            lambda d: d["prefetch"].update(x="Observation?patient={{context.draftOrders.id}}"),
        ),
        "not allowed",
    ),
    "service without description": (
        _edit_json(SERVICE, lambda d: d.pop("description")),
        "description",
    ),
    "rated MRI differs from the recommended protocol": (
        _edit_json(
            "knowledge/ratings.json",
            lambda d: d["procedures"][0]["match"].update(requiredRegions=[["neck"]]),
        ),
        "recommendedProtocol",
    ),
    "implant pattern with no word a pre-check can look for": (
        _edit_json(
            "knowledge/mri-safety.json",
            lambda d: d["implantTextPatterns"].append("[A-Z]{3}"),
        ),
        "no literal word",
    ),
    "head and neck region pattern with no word a pre-check can look for": (
        _edit_json(
            "knowledge/imaging-orders.json",
            lambda d: d["text"]["regions"][2]["patterns"].append("[A-Z]{2,}"),
        ),
        "no literal word",
    ),
    "contrast agent pattern with no word a pre-check can look for": (
        _edit_json(
            "knowledge/contrast-safety.json",
            lambda d: d["agents"]["gadolinium"]["patterns"].append("[A-Z]{4,}"),
        ),
        "no literal word",
    ),
    "contrast safety file missing": (
        lambda root: (root / "knowledge/contrast-safety.json").unlink(),
        "contrast-safety.json",
    ),
    "implant value set that the reasoning does not know": (
        _edit_json("knowledge/mri-safety.json", lambda d: d.update(implantValueSet="implants")),
        "implantValueSet",
    ),
    "duplicate service id": (
        lambda root: shutil.copy(root / SERVICE, root / "services/copy.json"),
        "duplicate service id",
    ),
    "a rule without its own override reasons": (
        _edit_json(
            "knowledge/cards.json",
            lambda d: d["rules"]["pet-too-early"].update(overrideReasons={}),
        ),
        "pet-too-early has no override reasons of its own",
    ),
    "an empty override reason list": (
        _edit_json(
            "knowledge/cards.json",
            lambda d: d["rules"]["us-limited"]["overrideReasons"].update(default=[]),
        ),
        r"us-limited overrideReasons\.default is empty",
    ),
    "a problem variant without its reasons": (
        _edit_json(
            "knowledge/cards.json",
            lambda d: d["rules"]["incomplete-mri-protocol"]["overrideReasons"].pop("with"),
        ),
        "must list exactly",
    ),
    "one reason code with two meanings": (
        _edit_json(
            "knowledge/cards.json",
            lambda d: d["rules"]["us-limited"]["overrideReasons"]["default"].append(
                {"code": "suspected-distant-disease", "display": "Something else"}
            ),
        ),
        "displayed differently elsewhere",
    ),
    "the old shared pool of override reasons": (
        _edit_json(
            "knowledge/cards.json",
            lambda d: d["rules"]["us-limited"].update(overrideReasonCodes=["x"]),
        ),
        "overrideReasonCodes",
    ),
}


@pytest.fixture
def hooks_copy(tmp_path: Path) -> Path:
    root = tmp_path / "hooks"
    shutil.copytree(default_hooks_dir(), root)
    return root


def test_the_shipped_knowledge_loads(hooks_copy: Path) -> None:
    knowledge = load_knowledge(hooks_copy)
    assert "salivary-post-treatment-imaging-order-select" in knowledge.services


@pytest.mark.parametrize("case", sorted(NEGATIVE_CASES))
def test_bad_knowledge_is_refused(hooks_copy: Path, case: str) -> None:
    edit, message = NEGATIVE_CASES[case]
    edit(hooks_copy)
    with pytest.raises(KnowledgeError, match=message):
        CdsEngine(load_knowledge(hooks_copy))  # what start-up does


def test_the_app_does_not_start_on_bad_knowledge(hooks_copy: Path) -> None:
    (hooks_copy / "knowledge/cards.json").write_text("[]")
    with pytest.raises(KnowledgeError):
        create_app(Settings(hooks_dir=hooks_copy))


def test_a_missing_knowledge_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeError, match="does not exist"):
        load_knowledge(tmp_path / "nowhere")


def test_every_value_set_is_read_on_conditions_or_on_procedures() -> None:
    groups = [*CONDITION_VALUESETS, *OBSERVATION_VALUESETS, *TREATMENT_VALUESETS]
    assert sorted(groups) == sorted(ValueSetName)


def test_an_implant_pattern_added_to_the_knowledge_is_read(hooks_copy: Path) -> None:
    """The attack run's case: the pattern ICD, added without a keyword, loaded silently and was
    never read (the hand-written pre-check said no). The pre-check is now derived."""
    _edit_json("knowledge/mri-safety.json", lambda d: d["implantTextPatterns"].append("ICD"))(
        hooks_copy
    )
    engine = CdsEngine(load_knowledge(hooks_copy))
    body = vignette("parotid_cancer_full_protocol_ordered")
    conditions = body["prefetch"]["conditions"]["entry"]
    conditions.append(
        {
            "resource": {
                "resourceType": "Condition",
                "id": "icd",
                "code": {"text": "ICD in situ"},
                "subject": {"reference": f"Patient/{body['context']['patientId']}"},
            }
        }
    )
    outcome = engine.evaluate("salivary-post-treatment-imaging-order-select", body)
    assert outcome.rules == ("mri-contraindicated",)
    assert "ICD in situ" in outcome.response.cards[0].detail  # type: ignore[operator]


def test_every_rule_and_every_finding_has_one_entry() -> None:
    assert set(RULES) == set(RuleId)
    findings = {entry.finding for entry in RULES.values()}
    assert findings == {*get_args(Finding), *get_args(DueImaging), None}


def test_every_treatment_code_has_a_short_clinical_name() -> None:
    """Cards and order notes name treatments as clinicians do ("IMRT"), not by a billing
    descriptor: every code of a treatment value set carries its short name."""
    valuesets = load_knowledge(default_hooks_dir()).valuesets
    for name in TREATMENT_VALUESETS:
        for concept in valuesets.concepts(name):
            assert concept.short_name, (name, concept.code)
            assert ";" not in concept.short_name and len(concept.short_name) <= 60


def test_each_service_description_says_which_indicators_it_returns(engine: CdsEngine) -> None:
    """Discovery is what an EHR's integrator reads: the order-sign service returns an info card
    (the clinical history, once per session), so its text must not say "only warnings"."""
    goldens = Path(__file__).resolve().parent.parent / "fhir_examples" / "golden"
    shown: dict[str, set[str]] = {}
    for path in goldens.glob("*.json"):
        golden = json.loads(path.read_text(encoding="utf-8"))
        cards = golden["response"].get("cards", [])
        shown.setdefault(golden["service"], set()).update(c["indicator"] for c in cards)
    sign = next(s for s in engine.knowledge.services.values() if s.hook == "order-sign")
    assert "info" in shown[sign.id]
    text = f"{sign.description} {sign.usageRequirements}"
    assert "only warnings" not in text
    assert "information card" in text and "clinical history" in text
