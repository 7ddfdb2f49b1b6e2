"""The safety decision table (issue 25): every cell walked through the engine.

Each cell (ordered study x gadolinium allergy x iodinated allergy x kidney category x implant) is
built as a real hook request, the facts written as an EHR records them (a reaction's severity, an
eGFR with its date, a dialysis or transplant code, a Device with its MR labelling), and answered by
the engine. The card must not contradict the cell: the studies offered and the recommended one,
the summary, the safety lines (one kidney line at most), the ACR table's rows and the PAMA rating.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any, get_args

import pytest

from cds_service.contract.wire import Card
from cds_service.engine import CdsEngine
from cds_service.fhir import build as fb
from cds_service.knowledge.codesystems import ICD10CM, LOINC
from cds_service.knowledge.loader import default_hooks_dir
from cds_service.knowledge.safety_table import (
    Cell,
    Factors,
    ImplantCategory,
    KidneyCategory,
    OrderedStudy,
    SafetyTable,
    Severity,
    StudyKey,
)

TODAY = date(2026, 11, 24)
PID = "pt-table"
SERVICE = "salivary-post-treatment-imaging-order-select"
PAMA_URL = "http://fhir.org/argonaut/Extension/pama-rating"
#: The draft for each ordered study (CPT code and the orderable's name).
DRAFTS: dict[OrderedStudy, tuple[str, str]] = {
    "mri-gadolinium": ("70543", "MRI ORBITS FACE NECK W WO CONTRAST"),
    "mri-without": ("70540", "MRI ORBITS FACE NECK WO CONTRAST"),
    "ct-iodinated": ("70491", "CT SOFT TISSUE NECK W CONTRAST"),
    "ct-without": ("70490", "CT SOFT TISSUE NECK WO CONTRAST"),
    "pet-ct": ("78815", "PET CT SKULL BASE TO MID THIGH"),
    "us": ("76536", "US SOFT TISSUES HEAD AND NECK"),
}
KEPT: dict[OrderedStudy, StudyKey] = {
    "mri-gadolinium": "mri-protocol",
    "ct-iodinated": "ct-neck-with-contrast",
}
STUDY_TEXT: dict[StudyKey, str] = {
    "mri-protocol": "MRI orbits face neck without and with IV contrast",
    "ct-neck-with-contrast": "CT neck with IV contrast",
}
KIDNEY_LINES = re.compile(r"\*\*(Kidney function|Acute kidney injury|Dialysis)")
SEVERITY = {"mild-moderate": "moderate", "severe": "severe", "unknown": None}


def _day(days_ago: int) -> str:
    return (TODAY - timedelta(days=days_ago)).isoformat()


def _egfr(oid: str, value: float, days_ago: int) -> dict[str, Any]:
    return fb.lab_result(
        PID, oid, [fb.coding(LOINC, "33914-3")], value, "mL/min/1.73m2", _day(days_ago)
    )


def _icd(cid: str, code: str, days_ago: int, text: str | None = None) -> dict[str, Any]:
    return fb.condition(PID, cid, [fb.coding(ICD10CM, code)], text=text, recorded=_day(days_ago))


def _kidney(category: KidneyCategory) -> list[dict[str, Any]]:
    """How an EHR records each kidney category."""
    return {
        "normal": [_egfr("egfr", 82, 30)],
        "egfr-30-44": [_egfr("egfr", 38, 20)],
        "egfr-below-30": [_egfr("egfr", 24, 21)],
        "egfr-below-30-stale": [_egfr("egfr", 24, 200)],
        "aki": [_icd("aki", "N17.9", 5), _egfr("egfr", 41, 5)],
        "dialysis-anuric": [
            _icd("hd", "Z99.2", 400),
            fb.condition(PID, "anuria", [], text="Anuric on haemodialysis", recorded=_day(400)),
        ],
        "dialysis-residual": [_icd("hd", "Z99.2", 400)],
        "transplant-normal": [
            _icd("esrd", "N18.6", 2000),
            _icd("ktx", "Z94.0", 1500),
            _egfr("egfr", 65, 30),
        ],
    }[category]


def _implant(category: ImplantCategory) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(conditions, devices) for each implant category."""
    if category == "mr-conditional":
        return [], [fb.device(PID, "pm", "Dual-chamber pacemaker system", safety="MR Conditional")]
    if category == "mr-unsafe":
        return [], [fb.device(PID, "scs", "Spinal cord stimulator", safety="MR Unsafe")]
    if category == "labelling-unknown":
        return [_icd("pm", "Z95.0", 2500)], []
    if category == "cochlear":
        return [], [fb.device(PID, "ci", "Cochlear implant, right ear", safety="MR Conditional")]
    return [], []


def _allergies(f: Factors) -> list[dict[str, Any]]:
    found = []
    for agent, substance in (("gadolinium", "Gadobutrol (Gadavist)"), ("iodinated", "Iohexol")):
        severity: Severity = f.allergy(agent)  # type: ignore[arg-type]
        if severity != "none":
            found.append(fb.allergy(PID, agent, substance, severity=SEVERITY[severity]))
    return found


def request(f: Factors, ordered: OrderedStudy) -> dict[str, Any]:
    """The hook request of one cell: a treated parotid cancer, the cell's facts, one draft."""
    cancer = fb.condition(PID, "ca", [fb.coding(ICD10CM, "C07")], onset=_day(1200))
    surgery = fb.procedure(
        PID, "px", [fb.coding("http://www.ama-assn.org/go/cpt", "42415")], performed=_day(1150)
    )
    implant_conditions, devices = _implant(f.implant)
    cpt, text = DRAFTS[ordered]
    draft = fb.draft_order(PID, "draft", text=text, cpt=cpt)
    draft["reasonReference"] = [{"reference": "Condition/ca"}]
    prefetch = {
        "patient": fb.patient(PID, "female", "1960-03-02"),
        "conditions": fb.searchset(
            [
                cancer,
                *implant_conditions,
                *[r for r in _kidney(f.kidney) if r["resourceType"] == "Condition"],
            ]
        ),
        "procedures": fb.searchset([surgery]),
        "serviceRequests": fb.searchset([]),
        "devices": fb.searchset(devices),
        "imagingStudies": fb.searchset([]),
        "diagnosticReports": fb.searchset([]),
        "allergies": fb.searchset(_allergies(f)),
        "observations": fb.searchset(
            [r for r in _kidney(f.kidney) if r["resourceType"] == "Observation"]
        ),
    }
    return fb.hook_request("order-select", PID, [draft], prefetch)


def cells(table: SafetyTable) -> Iterator[tuple[Factors, OrderedStudy, Cell]]:
    for f in table.every_factors():
        for ordered in get_args(OrderedStudy):
            yield f, ordered, table.cell(f, ordered, KEPT.get(ordered))


def _studies(card: Card) -> dict[str, bool]:
    """The rated studies a card's suggestions order, with whether each is the recommended one
    (a history update that keeps the draft's code orders no other study)."""
    found: dict[str, bool] = {}
    for s in card.suggestions or []:
        for a in s.actions:
            text = (a.resource or {}).get("code", {}).get("text")
            for key, name in STUDY_TEXT.items():
                if text == name:
                    found[key] = bool(s.isRecommended)
    return found


def _rating(response: Any) -> str | None:
    for action in response.systemActions or []:
        for e in (action.resource or {}).get("extension", []):
            if e.get("url") == PAMA_URL:
                code: str = e["valueCodeableConcept"]["coding"][0]["code"]
                return code
    return None


def check_cell(engine: CdsEngine, f: Factors, ordered: OrderedStudy, cell: Cell) -> None:
    """Everything the card says for this order agrees with the table's cell."""
    table = engine.safety_table
    outcome = engine.evaluate(SERVICE, request(f, ordered), today=TODAY)
    cards = outcome.response.cards
    where = f"{ordered} x {f}"
    assert len(cards) <= 1, where
    rating = _rating(outcome.response)
    if cell.rating is not None:
        assert rating == cell.rating, where
    else:  # not-appropriate only while a card warns against the order as placed (issue 27)
        warns = set(engine.knowledge.ratings.notAppropriateWhen.rules)
        assert rating != "not-appropriate" or set(outcome.rules) & warns, where
    says_something = cell.summary is not None or cell.kind in ("discuss", "keep", "identify")
    if not cards:
        assert not says_something, f"{where}: the table has advice, the engine no card"
        return
    [card] = cards
    text = f"{card.summary}\n{card.detail}"
    for forbidden in ("unsafe", "no study is safe"):
        assert forbidden not in text.lower().replace("mr unsafe", ""), where
    # Buttons: exactly the studies the cell offers, the recommended one bold.
    offered = _studies(card)
    assert set(offered) == set(cell.offered), where
    assert {k for k, bold in offered.items() if bold} == (
        {cell.recommended} if cell.recommended else set()
    ), where
    if cell.kind == "discuss":
        assert not card.suggestions, f"{where}: discuss with radiology has no action"
    # Summary: the cell's when a safety fact decides the advice; never naming a study the
    # table keeps from the patient.
    expected = table.summary_text(cell)
    if expected is not None:
        assert card.summary == expected, where
    for key, name in (
        ("mri-protocol", "MRI orbits face neck"),
        ("mri-protocol", "MRI protocol"),
        ("ct-neck-with-contrast", "CT neck with IV contrast"),
    ):
        if name in card.summary and KEPT.get(ordered) != key:
            assert key in cell.offered or cell.kind == "identify", f"{where}: {card.summary}"
    # Safety lines: the agents' reactions, one kidney line at most.
    detail = card.detail or ""
    kidney_lines = len(KIDNEY_LINES.findall(detail))
    assert kidney_lines == (1 if "kidney" in cell.lines else 0), where
    for agent, label in (
        ("gadolinium", "gadolinium-based contrast"),
        ("iodinated", "iodinated contrast"),
    ):
        if f"allergy:{agent}" in cell.lines:
            assert f"reaction to {label}" in detail, where
    # The comparison (the short card, issue 27): a study it recommends or offers is one the
    # table offers, never one it keeps from the patient.
    for key, name in (
        ("mri-protocol", "MRI orbits face neck without and with IV contrast"),
        ("ct-neck-with-contrast", "CT neck with IV contrast"),
    ):
        for line in detail.splitlines():
            if line.startswith(("| Recommended:", "| Option:")) and name in line:
                assert key in cell.offered, f"{where}: {line}"
                assert cell.tiers[key] not in ("avoid",), f"{where}: {line}"


def _chunks(n: int) -> list[int]:
    return list(range(n))


CHUNKS = 8


@pytest.mark.parametrize("chunk", _chunks(CHUNKS))
def test_every_cell_of_the_table_through_the_engine(engine: CdsEngine, chunk: int) -> None:
    every = list(cells(engine.safety_table))
    assert len(every) == 4 * 4 * 8 * 5 * 6  # the whole table, no gap
    # The sandbox's profile: the only one that returns PAMA ratings, which the cell decides too.
    rating = engine.for_client("sandbox")
    for f, ordered, cell in every[chunk::CHUNKS]:
        check_cell(rating, f, ordered, cell)


def test_the_engine_reads_each_factor_as_the_table_names_it(engine: CdsEngine) -> None:
    """The request builder above writes each factor as an EHR would; the engine reads back the
    same factor values (so the walk tests the reading as well as the rules)."""
    from cds_service.clinical.guidance import PatientSituation, find_implant
    from cds_service.clinical.reasoning import find_post_treatment_context

    k = engine.knowledge
    for f in engine.safety_table.every_factors():
        if f.gadolinium != f.iodinated:
            continue  # the allergies are read independently: one diagonal is enough
        body = request(f, "us")
        resources = [
            e["resource"]
            for value in body["prefetch"].values()
            if isinstance(value, dict) and value.get("resourceType") == "Bundle"
            for e in value["entry"]
        ]
        record = engine.records.build(PID, resources)
        context = find_post_treatment_context(record, k.valuesets)
        assert context is not None
        situation = PatientSituation(
            context,
            find_implant(record, k.valuesets, k.safety, engine.implant_names, engine.contrast),
            True,
            None,
            TODAY,
            engine.safety_table,
            engine.contrast.assess(record, TODAY),
        )
        assert situation.factors == f


def test_a_table_with_a_gap_is_refused_at_start_up() -> None:
    import json

    from cds_service.knowledge.safety_table import SafetyTableKnowledge, check_every_cell

    data = json.loads((default_hooks_dir() / "knowledge" / "safety-table.json").read_text())
    del data["kidney"]["aki"]
    with pytest.raises(ValueError, match="kidney: no entry for"):
        SafetyTableKnowledge.model_validate(data)
    data = json.loads((default_hooks_dir() / "knowledge" / "safety-table.json").read_text())
    data["summaries"]["discuss"]["text"] = "{facts} on record: " + "x" * 140
    with pytest.raises(ValueError, match="over 140"):
        check_every_cell(SafetyTable(SafetyTableKnowledge.model_validate(data)))
    data = json.loads((default_hooks_dir() / "knowledge" / "safety-table.json").read_text())
    data["kidney"]["aki"]["source"] = "a blog"
    with pytest.raises(ValueError, match="source 'a blog'"):
        SafetyTableKnowledge.model_validate(data)
    data = json.loads((default_hooks_dir() / "knowledge" / "safety-table.json").read_text())
    data["kidney"]["aki"]["line"] = "**AKI:** {evidence}, {egfr}"
    with pytest.raises(ValueError, match="unknown placeholders"):
        SafetyTableKnowledge.model_validate(data)


def test_the_readme_shows_the_table_as_the_engine_has_it(engine: CdsEngine) -> None:
    """The clinician's rendering in the README is generated from the data (no drift)."""
    from cds_service.knowledge.safety_table_doc import render_markdown, section_of

    readme = (default_hooks_dir().parent / "README.md").read_text(encoding="utf-8")
    assert section_of(readme) == render_markdown(engine.safety_table), (
        "run: salivary-cds safety-table --readme README.md"
    )


def test_discuss_with_radiology_has_no_action_even_without_a_reason(engine: CdsEngine) -> None:
    """The folded clinical-history update would complete the MRI order: not on this card."""
    f = Factors(kidney="egfr-below-30", implant="labelling-unknown")
    body = request(f, "mri-without")
    del body["context"]["draftOrders"]["entry"][0]["resource"]["reasonReference"]
    [card] = engine.evaluate(SERVICE, body, today=TODAY).response.cards
    assert card.summary.endswith("discuss with radiology")
    assert card.suggestions is None
