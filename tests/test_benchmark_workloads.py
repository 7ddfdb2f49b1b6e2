"""The benchmark's workloads are what its figures claim: new patients in the cold workload, real
ordering sessions in the other, and answers like the typical request's (not 4xx, not silence)."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from benchmarks.run import workload_calls
from benchmarks.workload import (
    ORDER_SELECT,
    ORDER_SIGN,
    PATIENT_MARK,
    make_request,
    personalised,
    session_calls,
)
from cds_service.engine import CdsEngine

TODAY = date(2026, 11, 24)


def _ids(request: dict[str, Any]) -> set[str]:
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("resourceType"), str) and isinstance(node.get("id"), str):
                found.add(node["id"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(request)
    return found


def _summaries(engine: CdsEngine, service: str, request: dict[str, Any]) -> list[str]:
    response = engine.evaluate(service, request, lambda: "u", TODAY).response.to_json()
    return [card["summary"] for card in response["cards"]]


def test_a_personalised_request_is_another_patient_with_the_same_answer(
    engine: CdsEngine,
) -> None:
    typical = make_request("typical")
    one, two = personalised(typical, "1"), personalised(typical, "2")
    assert _ids(one).isdisjoint(_ids(typical))
    assert _ids(one).isdisjoint(_ids(two))
    assert len(_ids(one)) == len(_ids(typical))
    assert one["context"]["patientId"] == typical["context"]["patientId"] + "-1"
    assert one["context"]["selections"] == [typical["context"]["selections"][0] + "-1"]
    answer = _summaries(engine, ORDER_SELECT, typical)
    assert answer
    assert _summaries(engine, ORDER_SELECT, one) == answer
    assert _summaries(engine, ORDER_SELECT, two) == answer


def test_a_session_selects_one_more_draft_each_call_then_signs_them_all(
    engine: CdsEngine,
) -> None:
    calls = session_calls(4)
    assert [service for service, _ in calls] == [ORDER_SELECT] * 4 + [ORDER_SIGN]
    prefetches = {json.dumps(request["prefetch"], sort_keys=True) for _, request in calls}
    assert len(prefetches) == 1, "the same resources throughout the session"
    selected = [request["context"]["selections"][0] for _, request in calls[:-1]]
    assert len(set(selected)) == 4
    assert "selections" not in calls[-1][1]["context"]
    assert len(calls[-1][1]["context"]["draftOrders"]["entry"]) == 4
    answers = [_summaries(engine, service, request) for service, request in calls]
    assert answers[0] and answers[1] and answers[-1]
    assert answers[0] != answers[1], "another draft selected, another card"


def test_every_workload_call_names_the_patient_mark_everywhere() -> None:
    for name in ("cold", "session"):
        calls = workload_calls(name)
        assert calls[0][0], "the first call starts a patient"
        for _, route, request in calls:
            assert route.startswith("/cds-services/")
            assert request["context"]["patientId"].endswith(PATIENT_MARK)
            assert all(i.endswith(PATIENT_MARK) for i in _ids(request))
    assert sum(first for first, _, _ in workload_calls("session")) == 4


def test_the_mix_is_85_percent_non_imaging_calls_answered_at_once(engine: CdsEngine) -> None:
    """The hospital mix: 17 of 20 calls are medication/lab calls without prefetch (empty answer,
    nothing fetched: their fhirServer is a closed port), 3 the typical imaging call (a card)."""
    calls = workload_calls("mix")
    assert len(calls) == 20
    imaging = 0
    for index, (_, route, request) in enumerate(calls):
        body = json.loads(json.dumps(request).replace(PATIENT_MARK, f"m{index}"))
        outcome = engine.evaluate(route.rsplit("/", 1)[1], body, lambda: "u", TODAY)
        if outcome.no_imaging_order:
            assert "prefetch" not in body and outcome.response.to_json() == {"cards": []}
        else:
            imaging += 1
            assert body["prefetch"] and outcome.response.to_json()["cards"]
    assert imaging == 3
