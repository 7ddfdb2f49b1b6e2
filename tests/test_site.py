"""The site folder (CDS_SITE_DIR): orderables ConceptMap, rule modes, knowledge version."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from fhir.resources.R4B.conceptmap import ConceptMap
from flask import Flask
from sqlalchemy import Column, DateTime, MetaData, String, Table, Text, insert, inspect, select

from cds_service.cli.main import main
from cds_service.config import Settings
from cds_service.contract.errors import ConfigurationError
from cds_service.engine import CdsEngine
from cds_service.knowledge.loader import default_hooks_dir, load_knowledge
from cds_service.knowledge.site import NO_SITE, SiteError, load_site
from cds_service.knowledge.terminology import Code
from cds_service.store.report import build_report
from cds_service.store.storage import Database, issued_cards
from cds_service.web.runtime import runtime
from tests.conftest import EXAMPLES, body_of, build_app, default_engine, postgres_url, vignette

SITE = EXAMPLES / "site"
SITE_SYSTEM = "http://example.org/fhir/CodeSystem/eap-imaging"


def site_engine(root: Path | None = SITE) -> CdsEngine:
    knowledge = load_knowledge()
    return CdsEngine(knowledge, site=load_site(root, knowledge.imaging.study_keys()))


def site_copy(tmp_path: Path, rules: dict[str, str] | None = None) -> Path:
    """The example site folder, with other rule modes when given."""
    root = tmp_path / "site"
    root.mkdir()
    shutil.copy(SITE / "orderables.json", root / "orderables.json")
    if rules is not None:
        (root / "rules.json").write_text(json.dumps({"rules": rules}))
    return root


def with_draft(name: str, code: str, text: str) -> dict[str, Any]:
    """Vignette ``name`` whose selected draft is coded only by the site orderable ``code``."""
    request = vignette(name)
    draft = request["context"]["draftOrders"]["entry"][0]["resource"]
    draft["code"] = {"coding": [{"system": SITE_SYSTEM, "code": code}], "text": text}
    return request


def rules_of(engine: CdsEngine, request: dict[str, Any]) -> list[str]:
    outcome = engine.evaluate(SERVICE, request)
    return list(outcome.rules)


SERVICE = "salivary-post-treatment-imaging-order-select"
MRI_NECK = "parotid_mec_after_parotidectomy_and_imrt_local_mri_neck"
PET_EARLY = "pet_ct_six_weeks_after_radiotherapy"


# --- reading by the site's map -------------------------------------------------------------


def test_a_draft_coded_only_by_a_site_orderable_with_an_unreadable_name_gets_the_card() -> None:
    request = with_draft(MRI_NECK, "IMG1014", "MRI HN SOFT TISS W WO")
    assert rules_of(default_engine(), request) == []  # the name alone says no region
    assert rules_of(site_engine(), request) == ["incomplete-mri-protocol"]


def test_the_map_wins_over_a_name_that_contradicts_it_and_the_log_says_so() -> None:
    # The site's radiology protocols IMG1011 as a neck MRI, whatever its name claims.
    request = with_draft(MRI_NECK, "IMG1011", "MRI ORBITS FACE NECK W WO CONTRAST")
    assert rules_of(default_engine(), request) == []  # the full protocol: nothing to say
    with structlog.testing.capture_logs() as logs:
        assert rules_of(site_engine(), request) == ["incomplete-mri-protocol"]
    said = [e for e in logs if e["event"] == "site-map-overrides-name"]
    assert said and said[0]["differs"] == ["regions"]
    assert said[0]["studies"] == ["http://loinc.org|24840-1"]
    assert "MRI ORBITS" not in json.dumps(said)  # the site code's study, not the order's text


def test_a_name_that_agrees_with_the_map_is_not_logged() -> None:
    request = with_draft(MRI_NECK, "IMG1001", "MRI NECK SOFT TISSUE W WO CONTRAST")
    with structlog.testing.capture_logs() as logs:
        assert rules_of(site_engine(), request) == ["incomplete-mri-protocol"]
    assert not [e for e in logs if e["event"] == "site-map-overrides-name"]


def test_an_inexact_mapping_is_not_used_to_read_the_order() -> None:
    # IMG2016 "CT NECK AND CHEST" is mapped inexact to CT neck with contrast: its name is read.
    request = with_draft(MRI_NECK, "IMG2016", "MRI HN SOFT TISS W WO")
    assert rules_of(site_engine(), request) == []


# --- suggesting the site's orderables ------------------------------------------------------


def _created(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        action["resource"]
        for suggestion in card.get("suggestions", [])
        for action in suggestion["actions"]
        if action["type"] == "create"
    ]


@pytest.mark.parametrize("style", ["update", "delete-create"])
def test_the_accepted_suggestion_places_the_sites_full_protocol_orderable(
    tmp_path: Path, style: str
) -> None:
    root = site_copy(tmp_path)
    (root / "client.json").write_text(json.dumps({"replacementStyle": style}))
    outcome = site_engine(root).evaluate(SERVICE, vignette(MRI_NECK))
    card = outcome.response.to_json()["cards"][0]
    placed = [
        action
        for action in card["suggestions"][0]["actions"]
        if action["type"] in ("update", "create")
    ]
    assert [a["type"] for a in placed] == ["update" if style == "update" else "create"]
    code = placed[0]["resource"]["code"]
    assert code["coding"][0] == {
        "system": SITE_SYSTEM,
        "code": "IMG1004",
        "display": "MRI ORBITS FACE NECK W WO CONTRAST",
    }
    assert code["text"] == "MRI ORBITS FACE NECK W WO CONTRAST"
    # then the standard codes, as without a site
    standard = default_engine().knowledge.cards.orders["mri-protocol"].coding
    assert code["coding"][1:] == [c.model_dump() for c in standard]
    # the label keeps the study's plain name
    assert "MRI orbits face neck without and with IV contrast" in card["suggestions"][0]["label"]


def test_the_client_file_chooses_a_profile_and_its_keys_override(tmp_path: Path) -> None:
    """{"profile": "epic"} gives Epic's selectionBehavior any and delete-create; a key next to
    it overrides the profile's (here: replacements as updates)."""
    root = site_copy(tmp_path)
    (root / "client.json").write_text(json.dumps({"profile": "epic"}))
    engine = site_engine(root)
    assert engine.client.selectionBehavior == "any"
    assert engine.client.replacementStyle == "delete-create"
    card = engine.evaluate(SERVICE, vignette(MRI_NECK)).response.to_json()["cards"][0]
    assert card["selectionBehavior"] == "any"
    assert [a["type"] for a in card["suggestions"][0]["actions"]] == ["delete", "create"]
    (root / "client.json").write_text(json.dumps({"profile": "epic", "replacementStyle": "update"}))
    engine = site_engine(root)
    assert (engine.client.selectionBehavior, engine.client.replacementStyle) == ("any", "update")


def test_an_unknown_profile_stops_start_up(tmp_path: Path) -> None:
    root = site_copy(tmp_path)
    (root / "client.json").write_text(json.dumps({"profile": "cerner-classic"}))
    with pytest.raises(SiteError, match=r"client\.json: profile 'cerner-classic'.*known: epic"):
        site_engine(root)


def test_a_bad_client_file_stops_start_up(tmp_path: Path) -> None:
    root = site_copy(tmp_path)
    (root / "client.json").write_text(json.dumps({"replacementStyle": "replace"}))
    with pytest.raises(SiteError, match=r"client\.json"):
        site_engine(root)


def test_without_a_site_orderable_the_suggestion_keeps_the_standard_codes(tmp_path: Path) -> None:
    root = site_copy(tmp_path)
    conceptmap = json.loads((root / "orderables.json").read_text())
    for group in conceptmap["group"]:  # the site has no CT neck with contrast orderable
        group["element"] = [e for e in group["element"] if e["target"][0].get("code") != "36235-0"]
    (root / "orderables.json").write_text(json.dumps(conceptmap))
    with structlog.testing.capture_logs() as logs:
        engine = site_engine(root)
    assert [e["orders"] for e in logs if e["event"] == "site-has-no-orderable"] == [
        ["ct-neck-with-contrast"]
    ]
    assert engine.knowledge.cards.orders["ct-neck-with-contrast"].site is None
    assert engine.knowledge.cards.orders["mri-protocol"].site is not None


def test_without_a_site_folder_nothing_changes() -> None:
    knowledge = load_knowledge()
    assert load_site(None, knowledge.imaging.study_keys()) is NO_SITE
    engine = CdsEngine(knowledge)
    assert all(t.site is None for t in engine.knowledge.cards.orders.values())
    assert engine.version.startswith("2026.11.1+")


# --- validation at start-up ----------------------------------------------------------------


def _broken_site(tmp_path: Path, change: Any) -> Path:
    root = site_copy(tmp_path)
    conceptmap = json.loads((root / "orderables.json").read_text())
    change(conceptmap)
    (root / "orderables.json").write_text(json.dumps(conceptmap))
    return root


def _first_target(conceptmap: dict[str, Any]) -> dict[str, Any]:
    target: dict[str, Any] = conceptmap["group"][0]["element"][0]["target"][0]
    return target


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(group="not a list"), "not a valid FHIR R4 ConceptMap"),
        (lambda m: _first_target(m).update(code="99999-9"), "is not a study the service reads"),
        (
            lambda m: m["group"][0].update(source="http://www.ama-assn.org/go/cpt"),
            "standard code system",
        ),
        (lambda m: m["group"][0].pop("target"), "needs both source"),
        (lambda m: m["group"][0]["element"][0].pop("display"), "needs the site's display"),
        (
            lambda m: m["group"][0]["element"].append(
                {
                    "code": m["group"][0]["element"][0]["code"],
                    "display": "again",
                    "target": [{"code": "36235-0", "equivalence": "equivalent"}],
                }
            ),
            "two different studies",
        ),
    ],
)
def test_a_malformed_orderables_map_stops_start_up_naming_file_and_place(
    tmp_path: Path, change: Any, message: str
) -> None:
    root = _broken_site(tmp_path, change)
    with pytest.raises(SiteError, match=re.escape(message)) as raised:
        site_engine(root)
    assert "orderables.json" in str(raised.value)


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"no-such-rule": "silent"}, "rule ids: mri-contraindicated"),
        ({"pet-too-early": "quiet"}, "modes: active, silent, off"),
    ],
)
def test_bad_rule_modes_stop_start_up(tmp_path: Path, rules: dict[str, str], message: str) -> None:
    with pytest.raises(SiteError, match=re.escape(message)):
        site_engine(site_copy(tmp_path, rules))


def test_an_unknown_file_or_missing_folder_stops_start_up(tmp_path: Path) -> None:
    root = site_copy(tmp_path)
    (root / "rule.json").write_text("{}")
    with pytest.raises(SiteError, match=r"rule\.json is not a site file"):
        site_engine(root)
    with pytest.raises(SiteError, match="does not exist"):
        site_engine(tmp_path / "nowhere")


def test_the_app_refuses_to_start_on_a_bad_site_folder(tmp_path: Path) -> None:
    root = site_copy(tmp_path, {"pet-too-early": "loud"})
    with pytest.raises(ConfigurationError, match=r"rules\.json"):
        build_app(Settings(site_dir=root))


# --- rule modes ------------------------------------------------------------------------------


def test_a_silent_rule_is_decided_and_recorded_but_returns_no_card(tmp_path: Path) -> None:
    engine = site_engine(site_copy(tmp_path, {"pet-too-early": "silent"}))
    outcome = engine.evaluate(SERVICE, vignette(PET_EARLY))
    assert outcome.response.cards == []
    assert outcome.silent_rules == ("pet-too-early",)
    assert [(c.rule_id, c.shown) for c in outcome.issued] == [("pet-too-early", False)]
    assert default_engine().evaluate(SERVICE, vignette(PET_EARLY)).rules == ("pet-too-early",)


def test_an_off_rule_is_not_evaluated_and_no_other_card_takes_its_place(tmp_path: Path) -> None:
    engine = site_engine(site_copy(tmp_path, {"incomplete-mri-protocol": "off"}))
    outcome = engine.evaluate(SERVICE, vignette(MRI_NECK))
    assert outcome.response.cards == []
    assert outcome.issued == ()


def test_history_off_also_takes_its_line_out_of_other_cards(tmp_path: Path) -> None:
    request = vignette("treated_parotid_cancer_us_neck")  # its card adds an MRI
    draft = request["context"]["draftOrders"]["entry"][0]["resource"]
    for field in ("reasonCode", "reasonReference"):
        draft.pop(field, None)  # no reason: the card offers to add the history
    label = "Add the cancer diagnosis and treatment history to the order"
    shown = default_engine().evaluate(SERVICE, request).response.to_json()["cards"][0]
    assert label in [s["label"] for s in shown["suggestions"]]
    engine = site_engine(site_copy(tmp_path, {"missing-clinical-history": "off"}))
    card = engine.evaluate(SERVICE, request).response.to_json()["cards"][0]
    assert label not in [s["label"] for s in card["suggestions"]]
    assert card["summary"] == shown["summary"]


def test_silent_cards_are_reported_as_would_have_shown_with_the_knowledge_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = site_copy(tmp_path, {"pet-too-early": "silent"})
    settings = Settings(site_dir=root)
    app = build_app(settings)
    client = app.test_client()
    assert body_of(client.post(f"/cds-services/{SERVICE}", json=vignette(PET_EARLY)))["cards"] == []
    shown = body_of(client.post(f"/cds-services/{SERVICE}", json=vignette(MRI_NECK)))
    assert [c["summary"] for c in shown["cards"]]
    running = runtime(app)
    running.card_log.flush()
    rows = {r.rule_id: r for r in build_report(running.database)}
    assert (rows["pet-too-early"].shown, rows["pet-too-early"].would_have_shown) == (0, 1)
    assert (
        rows["incomplete-mri-protocol"].shown,
        rows["incomplete-mri-protocol"].would_have_shown,
    ) == (1, 0)
    version = running.engine.version
    by_version = build_report(running.database, by="version")
    assert {(r.key, r.rule_id) for r in by_version} == {
        (version, "pet-too-early"),
        (version, "incomplete-mri-protocol"),
    }
    assert main(["report", "--database-url", settings.database(), "--by", "version"]) == 0
    table = capsys.readouterr().out
    assert "would have shown" in table and version in table
    assert body_of(client.get("/readyz"))["knowledgeVersion"] == version


# --- knowledge version -----------------------------------------------------------------------


def test_the_version_changes_with_any_edit_to_the_site_or_hooks(tmp_path: Path) -> None:
    root = site_copy(tmp_path, {"pet-too-early": "silent"})
    first = site_engine(root).version
    assert re.fullmatch(r"2026\.11\.1\+[0-9a-f]{10}", first)
    assert site_engine(root).version == first  # stable
    (root / "rules.json").write_text(json.dumps({"rules": {"pet-too-early": "active"}}))
    assert site_engine(root).version != first
    assert site_engine(None).version not in (first, site_engine(root).version)
    hooks = tmp_path / "hooks"
    shutil.copytree(default_hooks_dir(), hooks)
    before = CdsEngine(load_knowledge(hooks)).version
    cards = hooks / "knowledge" / "cards.json"
    cards.write_text(cards.read_text().replace("MRI", "MRI ", 1))
    assert CdsEngine(load_knowledge(hooks)).version != before


def test_the_version_is_logged_at_start_up(tmp_path: Path) -> None:
    with structlog.testing.capture_logs() as logs:
        app: Flask = build_app(Settings(site_dir=site_copy(tmp_path, {"us-limited": "off"})))
    line = next(e for e in logs if e["event"] == "knowledge")
    assert line["version"] == runtime(app).engine.version
    assert line["off_rules"] == ["us-limited"]


# --- storage: a table from before the columns existed --------------------------------------


def _old_issued_cards(url: str) -> Database:
    database = Database(url)
    database.drop_schema()
    old = MetaData()
    table = Table(
        "issued_cards",
        old,
        Column("card_uuid", String(64), primary_key=True),
        Column("service_id", String(128), nullable=False),
        Column("rule_id", String(64), nullable=False),
        Column("hook_instance", String(80), nullable=False),
        Column("suggestion_uuids", Text, nullable=False),
        Column("issued_at", DateTime(timezone=True), nullable=False),
    )
    old.create_all(database.sql)
    with database.sql.begin() as connection:
        connection.execute(
            insert(table).values(
                card_uuid="c1",
                service_id="s",
                rule_id="us-limited",
                hook_instance="h",
                suggestion_uuids="[]",
                issued_at=datetime.now(UTC),
            )
        )
    return database


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_existing_issued_cards_table_gets_the_new_columns(tmp_path: Path, backend: str) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite3'}" if backend == "sqlite" else postgres_url()
    if url is None:
        pytest.skip("PostgreSQL not configured (set CDS_TEST_POSTGRES_URL)")
    database = _old_issued_cards(url)
    try:
        database.create_schema()
        database.create_schema()  # a second start-up finds nothing to add
        columns = {c["name"] for c in inspect(database.sql).get_columns("issued_cards")}
        assert {"mode", "knowledge_version"} <= columns
        with database.sql.connect() as connection:
            row = connection.execute(
                select(issued_cards.c.mode, issued_cards.c.knowledge_version)
            ).one()
        assert tuple(row) == ("shown", "")
        assert build_report(database)[0].shown == 1
    finally:
        database.drop_schema()
        database.dispose()


# --- onboarding check -------------------------------------------------------------------------


def test_the_onboarding_check_reads_the_example_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    draft = tmp_path / "draft.json"
    export = SITE / "orderables-export.csv"
    assert len(export.read_text().splitlines()) - 1 >= 60
    argv = ["orderables", str(export), "--system", SITE_SYSTEM, "--conceptmap", str(draft)]
    assert main(argv) == 0
    table = capsys.readouterr().out
    lines = {
        line.split()[1] if line.startswith("!") else line.split()[0]: line
        for line in table.splitlines()
        if "IMG" in line
    }
    assert "46310-9" in lines["IMG1004"] and not lines["IMG1004"].startswith("!")
    assert lines["IMG1011"].startswith("!") and "ambiguous" in lines["IMG1011"]
    assert lines["IMG1014"].startswith("!") and "no body region" in lines["IMG1014"]
    assert lines["IMG4005"].startswith("!") and "image-guided" in lines["IMG4005"]
    assert "(inexact) 46310-9" in lines["IMG1013"]
    assert re.search(r"64 orderables: \d+ read cleanly", table)

    written = json.loads(draft.read_text())
    ConceptMap.model_validate(written)
    targets = {e["code"]: e["target"][0] for g in written["group"] for e in g["element"]}
    assert targets["IMG1004"]["equivalence"] == "equivalent"
    assert targets["IMG1011"]["equivalence"] == "unmatched" and targets["IMG1011"]["comment"]
    assert all(t["equivalence"] == "equivalent" or t.get("comment") for t in targets.values())
    # the draft, put in a site folder as it is, loads and reads the clean names
    root = tmp_path / "draft-site"
    root.mkdir()
    shutil.copy(draft, root / "orderables.json")
    assert site_engine(root).classifier.read([Code(SITE_SYSTEM, "IMG1004")], []) is not None


def test_the_reviewed_example_differs_from_the_draft_only_where_it_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    draft = tmp_path / "draft.json"
    export = SITE / "orderables-export.csv"
    main(["orderables", str(export), "--system", SITE_SYSTEM, "--conceptmap", str(draft)])
    capsys.readouterr()

    def targets(path: Path) -> dict[str, dict[str, Any]]:
        data = json.loads(path.read_text())
        return {e["code"]: e["target"][0] for g in data["group"] for e in g["element"]}

    drafted, reviewed = targets(draft), targets(SITE / "orderables.json")
    assert drafted.keys() == reviewed.keys()
    changed = [code for code in drafted if drafted[code] != reviewed[code]]
    assert changed
    assert all(reviewed[code]["comment"].startswith("reviewed:") for code in changed)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("id,label\nA,B\n", "needs the columns code and name"),
        ("code,name\nA,MRI NECK\nA,CT NECK\n", "code A is listed twice"),
        ("code,name\nA,\n", "code and name must both be given"),
    ],
)
def test_a_bad_export_is_refused_with_its_line(
    tmp_path: Path, content: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "export.csv"
    export.write_text(content)
    assert main(["orderables", str(export)]) == 2
    assert message in capsys.readouterr().err


def test_the_standard_pet_ct_orderable_reads_as_the_rated_study(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ "SKULL BASE TO MID THIGH" is the PET/CT field; its upper limit is no second region, so
    the onboarding check does not flag the standard orderable as inexact."""
    export = tmp_path / "export.csv"
    export.write_text(
        "code,name\nP1,PET CT SKULL BASE TO MID THIGH\nP2,NM PET/CT SKULL BASE TO MIDTHIGH\n"
    )
    assert main(["orderables", str(export), "--system", SITE_SYSTEM]) == 0
    out = capsys.readouterr().out
    assert "2 read cleanly as a known study, 0 to review" in out
    assert "also names skull-base" not in out


# --- issue 26, finding 15: a malformed site folder stops start-up, naming the file -------------


def _site_copy(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    shutil.copytree(Path(__file__).resolve().parent.parent / "fhir_examples" / "site", site)
    return site


def test_a_deeply_nested_rules_file_is_refused_naming_it(tmp_path: Path) -> None:
    site = _site_copy(tmp_path)
    (site / "orderables.json").unlink()
    (site / "rules.json").write_text("[" * 5000 + "]" * 5000)
    with pytest.raises(SiteError, match=r"rules\.json: nests too deeply"):
        load_site(site, frozenset())
    (site / "rules.json").write_text('{"rules": ' + "[" * 100 + "]" * 100 + "}")
    with pytest.raises(SiteError, match=r"rules\.json: nests deeper"):
        load_site(site, frozenset())


def test_a_rule_named_twice_is_refused(tmp_path: Path) -> None:
    site = _site_copy(tmp_path)
    (site / "orderables.json").unlink()
    (site / "rules.json").write_text(
        '{"rules": {"pet-too-early": "silent", "pet-too-early": "active"}}'
    )
    with pytest.raises(SiteError, match="appears twice"):
        load_site(site, frozenset())


@pytest.mark.parametrize("kind", ["directory", "broken link"])
def test_an_orderables_file_that_is_not_a_file_is_refused(tmp_path: Path, kind: str) -> None:
    site = _site_copy(tmp_path)
    target = site / "orderables.json"
    target.unlink()
    if kind == "directory":
        target.mkdir()
    else:
        target.symlink_to(tmp_path / "missing.json")
    with pytest.raises(SiteError, match="not a regular file"):
        load_site(site, frozenset())
