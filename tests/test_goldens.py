"""Whole responses, frozen: every vignette answered with injected uuids and a fixed date must
equal its committed golden response (fhir_examples/golden/). A change of wording, order,
suggestion or rating shows up here as a diff to review, never silently."""

from __future__ import annotations

import itertools
import json
from datetime import date
from typing import Any

import pytest

from cds_service.engine import CdsEngine
from tests.conftest import EXAMPLES, expected_outcomes, vignette

GOLDEN = EXAMPLES / "golden"
TODAY = date(2026, 11, 24)


def golden(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))
    return data


def test_every_vignette_has_a_golden_response() -> None:
    assert {p.stem for p in GOLDEN.glob("*.json")} == set(expected_outcomes())


@pytest.mark.parametrize("name", sorted(expected_outcomes()))
def test_response_equals_golden(engine: CdsEngine, name: str) -> None:
    want = golden(name)
    counter = itertools.count(1)
    outcome = engine.evaluate(
        want["service"],
        vignette(name),
        new_uuid=lambda: f"00000000-0000-4000-8000-{next(counter):012d}",
        today=TODAY,
    )
    assert list(outcome.rules) == want["rules"]
    assert outcome.response.to_json() == want["response"]
