"""Bad knowledge stops the service at start-up: one negative case per way a file can be wrong."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cds_service.app import create_app
from cds_service.config import Settings
from cds_service.knowledge import KnowledgeError, default_hooks_dir, load_knowledge

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


NEGATIVE_CASES: dict[str, tuple[Edit, str]] = {
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
    "duplicate service id": (
        lambda root: shutil.copy(root / SERVICE, root / "services/copy.json"),
        "duplicate service id",
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
        load_knowledge(hooks_copy)


def test_the_app_does_not_start_on_bad_knowledge(hooks_copy: Path) -> None:
    (hooks_copy / "knowledge/cards.json").write_text("[]")
    with pytest.raises(KnowledgeError):
        create_app(Settings(hooks_dir=hooks_copy))


def test_a_missing_knowledge_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeError, match="does not exist"):
        load_knowledge(tmp_path / "nowhere")
