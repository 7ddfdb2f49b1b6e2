"""The examples folder is what the vignette data and the engine produce: the request files, the
record Bundle and the golden responses (whole responses with uuids counted from 1 and the data's
fixed date). A change of data, wording, order, suggestion or rating shows up here as a diff to
review, never silently; ``salivary-cds vignettes`` rewrites the files after a deliberate change."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cds_service.cli.vignettes import drift, golden_response
from cds_service.engine import CdsEngine
from tests.conftest import EXAMPLES, vignette_book


def test_the_examples_folder_matches_the_data_and_the_engine(engine: CdsEngine) -> None:
    assert drift(vignette_book(), engine, EXAMPLES) == []


def test_drift_is_found(engine: CdsEngine, tmp_path: Path) -> None:
    """The drift check can fail: an edited request file or golden is reported by name."""
    root = tmp_path / "examples"
    shutil.copytree(EXAMPLES, root)
    name = next(iter(vignette_book().vignettes))
    request = json.loads((root / f"{name}.json").read_text())
    request["context"]["patientId"] = "someone-else"
    (root / f"{name}.json").write_text(json.dumps(request))
    golden = root / "golden" / f"{name}.json"
    golden.write_text(golden.read_text().replace("MRI", "MRT", 1))
    assert drift(vignette_book(), engine, root) == [f"{name}.json", f"golden/{name}.json"]


@pytest.mark.parametrize("name", sorted(vignette_book().vignettes))
def test_response_equals_golden(engine: CdsEngine, name: str) -> None:
    book = vignette_book()
    stored = json.loads((EXAMPLES / "golden" / f"{name}.json").read_text(encoding="utf-8"))
    assert golden_response(engine, book.vignettes[name], book.today) == stored
