"""``salivary-cds simulate``: a bulk FHIR export through the engine, each order as it stood.

Two exports: (a) the public Synthea sample of 10 patients (tests/data/synthea-10-patients, see
its README), whose cancers are lung and breast: no card; (b) an export the vignettes' builder
writes (benchmarks/bulk_export.py) with treated parotid cancers whose orders and reports happen
over time: each order sees only what was recorded before it.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from benchmarks.bulk_export import EXPECTED, ExportWriter, codebook
from cds_service.cli import main as cli
from cds_service.cli.simulate import TALLY_FILE, build_simulation_engine, merge, simulate
from cds_service.cli.simulation import tally as tally_module
from cds_service.cli.simulation.export import BulkExport, Row, Window, export_files, partition_of
from cds_service.cli.simulation.page import PER_ORDER_FILE
from cds_service.cli.simulation.progress import Progress
from cds_service.cli.simulation.run import OrderOutcome, Simulator
from cds_service.cli.simulation.snapshot import PatientHistory
from cds_service.cli.simulation.tally import Tally
from cds_service.engine import CdsEngine
from cds_service.fhir import build as fb
from cds_service.knowledge.loader import load_knowledge

SYNTHEA = Path(__file__).parent / "data" / "synthea-10-patients"
LUNG_AND_BREAST = "129c6ac7-8d06-89de-ad63-0204a93e76c3"


@pytest.fixture(scope="module")
def engine() -> CdsEngine:
    return CdsEngine(load_knowledge(None))


def per_order(out: Path) -> list[dict[str, str]]:
    with (out / PER_ORDER_FILE).open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _patients() -> Iterator[dict[str, object]]:
    with gzip.open(SYNTHEA / "Patient.000.ndjson.gz", "rt", encoding="utf-8") as handle:
        for line in handle:
            yield json.loads(line)


def synthea_with_orders(tmp_path: Path, extra: list[dict[str, object]] | None = None) -> Path:
    """The vendored export plus one ServiceRequest file of our own: the sample has no orders,
    so each patient gets an MRI neck and a CT neck, a week before death or on 2024-06-01."""
    export = tmp_path / "synthea"
    shutil.copytree(SYNTHEA, export)
    orders = []
    for p in _patients():
        pid = str(p["id"])
        day = str(p.get("deceasedDateTime", "2024-06-08"))[:10]
        at = datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() - 7 * 86400
        authored = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT10:00:00Z")
        for n, name in enumerate(["MRI NECK W WO CONTRAST", "CT NECK W CONTRAST"]):
            orders.append(
                fb.service_request(
                    pid, f"{pid}-{n}", text=name, status="completed", authored=authored
                )
            )
    lines = [json.dumps(r) for r in orders]
    (export / "ServiceRequest.000.ndjson").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for n, resource in enumerate(extra or []):  # a file of its own: one more file of its type
        path = export / f"{resource['resourceType']}.{900 + n}.ndjson"
        path.write_text(json.dumps(resource) + "\n", encoding="utf-8")
    return export


# --- (a) the public Synthea sample: lung and breast cancers, no card -------------------------


def test_synthea_sample_export_gets_no_card(engine: CdsEngine, tmp_path: Path) -> None:
    export = synthea_with_orders(tmp_path)
    result = simulate(engine, export, tmp_path / "out", Window(), per_order=True)
    t = result.tally
    assert t.patients == 13  # the sample's 10 living patients and 3 who died
    assert t.imaging == 26 and t.errors == {}
    assert t.in_scope == 0
    assert sum(t.cards.values()) == 0 and t.with_card == 0
    rows = per_order(tmp_path / "out")
    lung = [r for r in rows if r["patient_id"] == LUNG_AND_BREAST]
    assert len(lung) == 2 and all(r["rule"] == "" and r["in_scope"] == "0" for r in lung)


def test_synthea_records_do_reach_the_engine(engine: CdsEngine, tmp_path: Path) -> None:
    """The control: the same Synthea patient with a parotid cancer and a parotidectomy added
    (before the orders) gets the card, so 'no card' above is the engine's answer, not a record
    that never arrived."""
    codes = codebook(engine.knowledge)
    extra = [
        fb.condition(
            LUNG_AND_BREAST,
            "added-parotid",
            codes.codings(["ICD-10-CM C07"]),
            recorded="1985-06-01",
        ),
        fb.procedure(
            LUNG_AND_BREAST,
            "added-parotidectomy",
            codes.codings(["CPT 42415"]),
            performed="1985-07-01",
        ),
    ]
    export = synthea_with_orders(tmp_path, extra)
    result = simulate(engine, export, tmp_path / "out", Window(), per_order=True)
    rows = {r["order_id"]: r for r in per_order(tmp_path / "out")}
    assert rows[f"{LUNG_AND_BREAST}-0"]["rule"] == "incomplete-mri-protocol"
    assert result.tally.in_scope == 2


# --- (b) the vignette builder's export: orders and reports over time -------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 patients, gzip, three files per type (3 with the parotid timeline, 3 laryngeal)."""
    root = tmp_path_factory.mktemp("built")
    ExportWriter(load_knowledge(None), seed=7).write(root, 30, files_per_type=3, compress=True)
    return root


@pytest.fixture(scope="module")
def built_run(
    engine: CdsEngine, built: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Tally, list[dict[str, str]]]:
    out = tmp_path_factory.mktemp("built-out")
    result = simulate(engine, built, out, Window(), per_order=True)
    return result.tally, per_order(out)


def test_reads_gzip_and_several_files_per_type(built: Path) -> None:
    files = export_files(built)
    assert len(files["ServiceRequest"]) == 3
    assert all(p.name.endswith(".ndjson.gz") for p in files["ServiceRequest"])


def test_each_order_gets_the_card_of_its_moment(
    built_run: tuple[Tally, list[dict[str, str]]],
) -> None:
    _tally, rows = built_run
    timeline = [r for r in rows if r["patient_id"] == "sim-0000000"]
    by_step = {r["order_id"].removeprefix("sim-0000000-"): r for r in timeline}
    for step, rule in EXPECTED.items():
        assert by_step[step]["rule"] == (rule or ""), step


def test_an_order_placed_before_the_treatment_does_not_see_it(
    built_run: tuple[Tally, list[dict[str, str]]],
) -> None:
    """The staging MRI (D+10) comes before the parotidectomy (D+30): out of scope, no card,
    although the same order with the whole record would get the protocol card (below)."""
    _tally, rows = built_run
    staging = [r for r in rows if r["order_id"].endswith("-staging-mri")]
    assert len(staging) == 3
    assert all(r["in_scope"] == "0" and r["rule"] == "" for r in staging)


def test_with_the_whole_record_the_staging_order_would_get_a_card(
    engine: CdsEngine, built: Path
) -> None:
    """What the snapshot prevents: judged with everything the export holds, the staging MRI
    gets the protocol card. (Proves the test above can fail.)"""
    simulator = Simulator(engine)
    with BulkExport(built) as bulk:
        pid, rows = next(iter(bulk.patients(Window())))
    history = PatientHistory(pid, rows)
    staging = next(o for o in history.orders if o.resource["id"].endswith("staging-mri"))
    everything = [Row(r.kind, None if r.kind == "Device" else 0, r.authored, r.body) for r in rows]
    whole = PatientHistory(pid, everything)
    whole_staging = next(o for o in whole.orders if o.resource["id"].endswith("staging-mri"))
    assert simulator.judge(history, staging).cards == ()
    late = type(whole_staging)(2**62, whole_staging.authored_text, whole_staging.resource)
    assert [c.rule for c in simulator.judge(whole, late).cards] == ["incomplete-mri-protocol"]


def test_a_report_issued_after_an_order_is_not_in_its_record(
    engine: CdsEngine, built: Path
) -> None:
    """The MRI neck (D+270) was done D+272 and reported D+275 (NI-RADS 2b): its own order does
    not see the report; the repeat MRI ordered D+284 does, hence repeat-mri-too-soon."""
    with BulkExport(built) as bulk:
        pid, rows = next(iter(bulk.patients(Window())))
    history = PatientHistory(pid, rows)
    orders = {o.resource["id"].removeprefix(f"{pid}-"): o for o in history.orders}
    assert "DiagnosticReport" not in history.as_of(orders["mri-neck"])
    assert "Procedure" not in history.as_of(orders["staging-mri"])
    reports = history.as_of(orders["repeat-mri"])["DiagnosticReport"]
    assert [r["id"] for r in reports] == [f"{pid}-mri-report"]
    card = Simulator(engine).judge(history, orders["mri-neck"]).cards[0]
    assert "2b" not in card.summary and card.rule == "incomplete-mri-protocol"


def test_undated_resources_only_where_they_make_the_advice_safer() -> None:
    device = Row("Device", None, None, json.dumps({"resourceType": "Device", "id": "d"}))
    condition = Row("Condition", None, None, json.dumps({"resourceType": "Condition", "id": "c"}))
    order = Row(
        "ServiceRequest",
        10,
        10,
        json.dumps({"resourceType": "ServiceRequest", "id": "o", "authoredOn": "2024-01-01"}),
    )
    history = PatientHistory("p", [device, condition, order])
    snapshot = history.as_of(history.orders[0])
    assert [r["id"] for r in snapshot["Device"]] == ["d"]
    assert "Condition" not in snapshot and "ServiceRequest" not in snapshot
    assert history.undated_left_out == {"Condition": 1}


def test_aggregate_counts(built_run: tuple[Tally, list[dict[str, str]]]) -> None:
    tally, rows = built_run
    assert tally.patients == 30
    assert tally.cards == {
        "pet-too-early": 3,
        "incomplete-mri-protocol": 3,
        "repeat-mri-too-soon": 3,
    }
    orders = {r["order_id"]: r for r in rows}
    in_scope = {o for o, r in orders.items() if r["in_scope"] == "1"}
    assert tally.in_scope == len(in_scope)
    # the 3 timeline orders after the treatment of each of the 3 patients, and their routine
    # imaging after the treatment
    timeline = {o for o in in_scope if o.endswith(("early-pet", "mri-neck", "repeat-mri"))}
    assert len(timeline) == 9 and all("-img-" in o for o in in_scope - timeline)
    assert tally.imaging == sum(
        1 for r in {r["order_id"]: r for r in rows}.values() if r["imaging"] == "1"
    )
    assert tally.per_100(tally.cards["pet-too-early"]) == round(300 / tally.imaging, 2)


def test_the_aggregate_files_hold_no_patient_or_order_id(
    engine: CdsEngine, built: Path, tmp_path: Path
) -> None:
    result = simulate(engine, built, tmp_path, Window(), per_order=False)
    assert not (tmp_path / PER_ORDER_FILE).exists() and result.per_order is None
    html = (tmp_path / "simulation.html").read_text(encoding="utf-8")
    assert (
        "<svg" in html
        and "<script" not in html.lower()
        and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    )
    for path in result.written:
        text = path.read_text(encoding="utf-8")
        assert "sim-00" not in text, path.name
    changes = (tmp_path / "simulation-changes.csv").read_text(encoding="utf-8")
    assert (
        "MRI NECK W WO CONTRAST,incomplete-mri-protocol,"
        "→ MRI orbits face neck without and with IV contrast,3,3"
    ) in changes


def test_a_name_seen_for_one_patient_is_counted_not_listed(
    engine: CdsEngine, tmp_path: Path
) -> None:
    export = tmp_path / "one"
    export.mkdir()
    order = fb.service_request(
        "p1",
        "o1",
        text="MRI NECK FOR JANE DOE",
        status="completed",
        authored="2024-01-02T10:00:00Z",
    )
    (export / "ServiceRequest.ndjson").write_text(json.dumps(order) + "\n", encoding="utf-8")
    result = simulate(engine, export, tmp_path / "out", Window())
    assert result.tally.imaging == 1
    for path in result.written:
        if path.suffix != ".json":  # the tally (for merging) keeps names; the report does not
            assert "JANE" not in path.read_text(encoding="utf-8"), path.name


def test_the_window_limits_the_orders(engine: CdsEngine, built: Path, tmp_path: Path) -> None:
    since = datetime(2023, 7, 1, tzinfo=UTC)
    until = datetime(2024, 1, 1, tzinfo=UTC)
    result = simulate(engine, built, tmp_path, Window(since, until), per_order=True)
    authored = [r["authored"] for r in per_order(tmp_path)]
    assert authored and all("2023-07-01" <= a[:10] < "2024-01-01" for a in authored)
    assert result.tally.service_requests == len({r["order_id"] for r in per_order(tmp_path)})


def test_partitions_are_disjoint_and_add_up(engine: CdsEngine, built: Path, tmp_path: Path) -> None:
    whole = simulate(engine, built, tmp_path / "all", Window(), per_order=True)
    parts = []
    for k in (1, 2, 3):
        simulate(engine, built, tmp_path / f"p{k}", Window(part=k, of=3), per_order=True)
        rows = per_order(tmp_path / f"p{k}")
        assert {partition_of(r["patient_id"], 3) for r in rows} <= {k}
        parts.append({r["patient_id"] for r in rows})
    assert set.union(*parts) == {r["patient_id"] for r in per_order(tmp_path / "all")}
    assert sum(len(p) for p in parts) == len(set.union(*parts))
    merge(engine, [tmp_path / f"p{k}" for k in (1, 2, 3)], tmp_path / "merged")
    merged = json.loads((tmp_path / "merged" / TALLY_FILE).read_text(encoding="utf-8"))
    assert merged == whole.tally.to_json()


def test_command_line(built: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(
        ["simulate", str(built), "--out", str(tmp_path), "--per-order", "--partition", "1/1"]
    )
    out, err = capsys.readouterr()
    assert code == 0
    assert "imaging" in out and "PHI" in out and PER_ORDER_FILE in out
    assert "PHI" in err  # said before the run starts, too
    assert "orders/s" not in err  # stderr is not a terminal: no bar


def test_command_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["simulate", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    assert "not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli.main(["simulate", str(tmp_path / "empty"), "--out", str(tmp_path)]) == 2
    assert "no NDJSON file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["simulate", str(tmp_path), "--partition", "4/3"])


def test_a_bad_line_is_skipped_not_fatal(engine: CdsEngine, tmp_path: Path) -> None:
    export = tmp_path / "bad"
    export.mkdir()
    order = fb.service_request(
        "p1",
        "o1",
        text="MRI NECK W WO CONTRAST",
        status="completed",
        authored="2024-01-02T10:00:00Z",
    )
    (export / "ServiceRequest.ndjson").write_text(
        "{not json\n" + json.dumps(order) + "\n", encoding="utf-8"
    )
    assert simulate(engine, export, tmp_path / "out", Window()).tally.imaging == 1


def test_progress_line() -> None:
    now = [0.0]
    stream = io.StringIO()
    bar = Progress(1000, stream, enabled=True, clock=lambda: now[0])
    now[0] = 2.0
    bar.advance(250)
    line = bar.line()
    assert "250/1,000 orders" in line and "125 orders/s" in line and "0:00:06 left" in line
    assert stream.getvalue().startswith("\r[")
    quiet = io.StringIO()
    Progress(10, quiet, enabled=False).advance(5)
    assert quiet.getvalue() == ""


def test_without_duckdb_the_command_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "duckdb", None)  # import duckdb -> ImportError
    assert cli.main(["simulate", str(SYNTHEA), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "simulate needs DuckDB: pip install 'salivary-imaging-cds[simulate]'" in err


def test_duckdb_is_kept_offline_and_quiet(tmp_path: Path) -> None:
    with BulkExport(SYNTHEA, work_dir=tmp_path) as bulk:
        settings = dict(
            bulk._db.execute(
                "SELECT name, value FROM duckdb_settings() "
                "WHERE name LIKE 'auto%_known_extensions' OR name = 'enable_progress_bar'"
            ).fetchall()
        )
        assert bulk.counts["Patient"] == 13
        assert list(tmp_path.iterdir())  # its private folder, under --work-dir
    assert settings == {
        "autoinstall_known_extensions": "false",
        "autoload_known_extensions": "false",
        "enable_progress_bar": "false",  # DuckDB's own bar would garble ours and batch logs
    }
    assert not list(tmp_path.iterdir())  # removed: it held patient data


def test_an_order_without_authored_on_is_counted_not_simulated(
    engine: CdsEngine, tmp_path: Path
) -> None:
    export = tmp_path / "undated"
    export.mkdir()
    dated = fb.service_request(
        "p1", "o1", text="MRI NECK W WO CONTRAST", status="completed", authored="2024-01-02"
    )
    undated = fb.service_request("p1", "o2", text="MRI NECK W WO CONTRAST", status="completed")
    lines = [json.dumps(dated), json.dumps(undated)]
    (export / "ServiceRequest.ndjson").write_text("\n".join(lines) + "\n", encoding="utf-8")
    tally = simulate(engine, export, tmp_path / "out", Window()).tally
    assert (tally.service_requests, tally.undated_orders) == (1, 1)
    html = (tmp_path / "out" / "simulation.html").read_text(encoding="utf-8")
    assert "without a readable authoredOn" in html


def test_distinct_names_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every order a free-text name of its own must not grow memory without end."""
    monkeypatch.setattr(tally_module, "MAX_NAMES", 2)
    tally = Tally()
    for patient in ("p1", "p2"):
        outcomes = [
            OrderOutcome(patient, f"{patient}-{n}", "2024-01-02", f"NOTE {patient} {n}", False)
            for n in range(3)
        ]
        tally.add_patient(outcomes, {})
    assert len(tally.not_imaging) == 3
    assert tally.not_imaging[tally_module.OVERFLOW_NAME].orders == 4
    assert tally.not_imaging[tally_module.OVERFLOW_NAME].patients == 2


def test_sigterm_deletes_the_duckdb_folder(tmp_path: Path) -> None:
    """A batch scheduler's SIGTERM mid-run: the private DuckDB folder (patient data) goes."""
    export = tmp_path / "export"
    ExportWriter(load_knowledge(None)).write(export, 1500)
    work = tmp_path / "work"
    work.mkdir()
    command = [
        sys.executable,
        "-m",
        "cds_service.cli.main",
        "simulate",
        str(export),
        "--out",
        str(tmp_path / "out"),
        "--work-dir",
        str(work),
    ]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        deadline = time.monotonic() + 60
        while not any(work.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert any(work.iterdir()), "the run never started"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 128 + signal.SIGTERM
    assert not any(work.iterdir())


def test_the_site_folder_decides_what_is_shown(built: Path, tmp_path: Path) -> None:
    """The example site has pet-too-early in silent mode: decided and counted, not shown."""
    site = build_simulation_engine(Path(__file__).parents[1] / "fhir_examples" / "site")
    tally = simulate(site, built, tmp_path, Window()).tally
    assert tally.silent == {"pet-too-early": 3}
    assert "pet-too-early" not in tally.cards
    rules = (tmp_path / "simulation-by-rule.csv").read_text(encoding="utf-8")
    assert "pet-too-early,0,0.0,0.0,3" in rules
