"""The replay command, on vignettes and on a FHIR Bundle with a chosen draft order."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import pytest

from cds_service.cli.main import main
from cds_service.fhir.build import draft_order
from tests.conftest import EXAMPLES

POSITIVE = EXAMPLES / "parotid_mec_after_parotidectomy_and_imrt_local_mri_neck.json"
BUNDLE = EXAMPLES / "bundles" / "parotid_mec_record.json"


def test_replay_prints_the_card_readably(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(POSITIVE)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("[1] WARNING: MRI may miss perineural spread")
    assert "Suggestion (recommended): Replace with MRI orbits face neck" in out
    assert "update ServiceRequest/mri-neck-1: Change the draft order to MRI orbits face" in out
    assert "Override reasons:" in out


def test_replay_json_is_the_raw_response(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(POSITIVE), "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["cards"][0]["indicator"] == "warning"


def test_replay_of_a_silent_vignette(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(EXAMPLES / "warthin_tumour_after_parotidectomy.json")]) == 0
    assert "No cards" in capsys.readouterr().out


def test_replay_answers_a_request_with_the_service_of_its_hook(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cds_service.engine.utc_today", lambda: date(2026, 11, 24))
    view = EXAMPLES / "patient_view_baseline_mri_due_after_adjuvant_imrt.json"
    assert main(["replay", str(view)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("[1] INFO: Baseline post-treatment MRI is due")
    assert "create MRI orbits face neck without and with IV contrast" in out


@pytest.mark.parametrize(
    ("order", "fires"),
    [
        (["--order-text", "MRI NECK W WO CONTRAST"], True),
        (["--order-text", "MRI orbits face neck w/wo IV contrast"], False),
        (["--order-cpt", "70540"], True),
        (["--order-cpt", "70543"], False),
    ],
)
def test_replay_of_a_bundle_with_a_chosen_order(
    capsys: pytest.CaptureFixture[str], order: list[str], fires: bool
) -> None:
    assert main(["replay", str(BUNDLE), *order, "--json"]) == 0
    cards = json.loads(capsys.readouterr().out)["cards"]
    assert any(c["indicator"] == "warning" for c in cards) is fires


def test_replay_of_a_bundle_with_a_draft_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    draft = tmp_path / "draft.json"
    draft.write_text(json.dumps(draft_order("pt-parotid-mec", "my-draft", text="MR NECK WO")))
    assert main(["replay", str(BUNDLE), "--draft", str(draft), "--json"]) == 0
    card = json.loads(capsys.readouterr().out)["cards"][0]
    assert card["suggestions"][0]["actions"][0]["resource"]["id"] == "my-draft"


def test_replay_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(BUNDLE)]) == 2
    assert "needs --order-text" in capsys.readouterr().err
    junk = tmp_path / "junk.json"
    junk.write_text("{oops")
    assert main(["replay", str(junk)]) == 2
    assert "cannot read JSON" in capsys.readouterr().err
    other = tmp_path / "other.json"
    other.write_text('{"resourceType": "Patient"}')
    assert main(["replay", str(other)]) == 2
    assert "neither a hook request nor a FHIR Bundle" in capsys.readouterr().err


def test_replay_of_a_request_the_service_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = json.loads(POSITIVE.read_text())
    del body["prefetch"]
    path = tmp_path / "no-prefetch.json"
    path.write_text(json.dumps(body))
    assert main(["replay", str(path)]) == 1
    assert "HTTP 412" in capsys.readouterr().out


def test_vignettes_check_and_rewrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "examples"
    shutil.copytree(EXAMPLES, root)
    assert main(["vignettes", "--check", "--examples", str(root)]) == 0
    golden = root / "golden" / "parotid_cancer_cpt_70543_only.json"
    golden.write_text("{}")
    assert main(["vignettes", "--check", "--examples", str(root)]) == 1
    assert "differs: golden/parotid_cancer_cpt_70543_only.json" in capsys.readouterr().out
    assert main(["vignettes", "--examples", str(root)]) == 0
    assert "1 files changed" in capsys.readouterr().out
    assert (EXAMPLES / golden.relative_to(root)).read_text() == golden.read_text()


def test_replay_sends_a_request_to_the_service_of_its_hook(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An order-sign request goes to the order-sign service without --service: there the full
    protocol without a reason gets the standalone history card (at order-select: silence)."""
    request = EXAMPLES / "order_sign_full_protocol.json"
    assert json.loads(request.read_text(encoding="utf-8"))["hook"] == "order-sign"
    assert main(["replay", str(request)]) == 0
    assert "Add the clinical history to this imaging order" in capsys.readouterr().out
    select = "salivary-post-treatment-imaging-order-select"
    assert main(["replay", str(request), "--service", select]) == 1  # the flag still wins
    assert "hook is 'order-sign' but service" in capsys.readouterr().out


def test_safety_table_prints_and_rewrites_the_readme_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cds_service.knowledge.safety_table_doc import END, START

    assert main(["safety-table"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(START) and printed.rstrip().endswith(END)
    assert "| labelling-unknown | clear | clear | identify labelling; CT fallback" in printed
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n{START}\nold\n{END}\n\nAfter.\n", encoding="utf-8")
    assert main(["safety-table", "--readme", str(readme)]) == 0
    assert readme.read_text(encoding="utf-8") == f"# Title\n\n{printed}\nAfter.\n"
    no_section = tmp_path / "other.md"
    no_section.write_text("# nothing generated here\n", encoding="utf-8")
    assert main(["safety-table", "--readme", str(no_section)]) == 2
