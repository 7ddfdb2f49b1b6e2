"""The fact cache saves time and changes nothing: hits, eviction, TTL, a resource whose content
changed under the same id, the off switch, and every golden answered the same from the cache."""

from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from benchmarks.workload import make_request, personalised
from cds_service.cli.vignettes import golden_response
from cds_service.config import Settings, load_settings
from cds_service.engine import CdsEngine
from cds_service.fhir.fact_cache import FactCache, content_key, key_prefix
from cds_service.knowledge.loader import Knowledge
from cds_service.web.app import build_engine
from tests.conftest import EXAMPLES, SERVICE_ID, build_app, vignette, vignette_book

TODAY = date(2026, 11, 24)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counting:
    """A computation that counts how often it ran."""

    def __init__(self, value: object) -> None:
        self.value = value
        self.runs = 0

    def __call__(self) -> object:
        self.runs += 1
        return self.value


P = key_prefix("record", "p")
CONDITION = {
    "resourceType": "Condition",
    "id": "c1",
    "subject": {"reference": "Patient/p"},
    "code": {"text": "Parotid cancer"},
}


def test_a_second_call_with_the_same_content_is_a_hit() -> None:
    cache = FactCache(10, 60)
    compute = Counting("fact")
    key = content_key(P, CONDITION)
    assert cache.get_or_compute(key, compute) == "fact"
    assert cache.get_or_compute(key, compute) == "fact"
    assert compute.runs == 1
    assert (cache.stats.hits, cache.stats.misses) == (1, 1)


def test_none_is_kept_too() -> None:
    """Most resources cannot matter: that answer (None) is worth keeping like any other."""
    cache = FactCache(10, 60)
    compute = Counting(None)
    key = content_key(P, CONDITION)
    assert cache.get_or_compute(key, compute) is None
    assert cache.get_or_compute(key, compute) is None
    assert compute.runs == 1


def test_the_key_is_the_canonical_content_and_the_patient() -> None:
    reordered = dict(reversed(list(CONDITION.items())))
    assert content_key(P, reordered) == content_key(P, CONDITION)
    assert content_key(key_prefix("record", "q"), CONDITION) != content_key(P, CONDITION)
    assert content_key(key_prefix("draft", "p"), CONDITION) != content_key(P, CONDITION)
    changed = {**CONDITION, "code": {"text": "Pleomorphic adenoma"}}
    assert content_key(P, changed) != content_key(P, CONDITION)


def test_content_that_cannot_be_hashed_is_read_every_time() -> None:
    huge = {**CONDITION, "note": [{"text": "x", "n": 2**70}]}  # past 64 bits: no canonical form
    assert content_key(P, huge) is None
    cache = FactCache(10, 60)
    compute = Counting("fact")
    cache.get_or_compute(None, compute)
    cache.get_or_compute(None, compute)
    assert compute.runs == 2
    assert len(cache) == 0


def test_past_the_capacity_the_oldest_entry_goes() -> None:
    cache = FactCache(2, 60)
    first, second, third = Counting(1), Counting(2), Counting(3)
    cache.get_or_compute(b"a", first)
    cache.get_or_compute(b"b", second)
    cache.get_or_compute(b"c", third)
    assert len(cache) == 2
    assert cache.stats.evictions == 1
    cache.get_or_compute(b"a", first)
    assert first.runs == 2, "the oldest was evicted and computed again"
    cache.get_or_compute(b"c", third)
    assert third.runs == 1


def test_an_entry_expires_after_its_ttl_and_leaves_memory_at_the_next_call() -> None:
    clock = FakeClock()
    cache = FactCache(10, 600, clock)
    kept, other = Counting("fact"), Counting("other")
    cache.get_or_compute(b"a", kept)
    clock.now += 599
    cache.get_or_compute(b"a", kept)
    assert kept.runs == 1
    clock.now += 1
    cache.get_or_compute(b"b", other)
    assert len(cache) == 2
    cache.sweep()  # once per hook call: the expired entry leaves memory
    assert len(cache) == 1
    assert cache.stats.expirations == 1
    cache.get_or_compute(b"a", kept)
    assert kept.runs == 2


def test_an_expired_entry_is_never_answered_from_even_before_a_sweep() -> None:
    clock = FakeClock()
    cache = FactCache(10, 600, clock)
    kept = Counting("fact")
    cache.get_or_compute(b"a", kept)
    clock.now += 600
    cache.get_or_compute(b"a", kept)
    assert kept.runs == 2


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="capacity"):
        FactCache(0, 60)
    with pytest.raises(ValueError, match="TTL"):
        FactCache(10, 0)


@pytest.fixture
def cached(knowledge: Knowledge) -> CdsEngine:
    return CdsEngine(knowledge, fact_cache=FactCache(100_000, 600))


def _answer(engine: CdsEngine, request: dict[str, Any], service: str = SERVICE_ID) -> Any:
    return engine.evaluate(service, request, lambda: "u", TODAY).response.to_json()


def test_every_golden_is_answered_the_same_from_the_cache(cached: CdsEngine) -> None:
    book = vignette_book()
    cache = cached.fact_cache
    assert cache is not None
    read_first_time = hits_first_time = 0
    for round_ in range(2):  # the second time, every record and draft comes from the cache
        for name, case in book.vignettes.items():
            stored = json.loads((EXAMPLES / "golden" / f"{name}.json").read_text("utf-8"))
            assert golden_response(cached, case, book.today) == stored, name
        if round_ == 0:
            read_first_time, hits_first_time = cache.stats.misses, cache.stats.hits
    assert read_first_time > 200
    assert cache.stats.misses == read_first_time, "the second time, nothing was read anew"
    # each call of the second round has its whole record (at least) from the cache
    assert cache.stats.hits - hits_first_time >= len(book.vignettes)


def test_a_session_reads_its_resources_once(cached: CdsEngine) -> None:
    assert cached.fact_cache is not None
    request = personalised(make_request("typical"), "s1")
    first = _answer(cached, request)
    misses = cached.fact_cache.stats.misses
    assert _answer(cached, request) == first
    assert cached.fact_cache.stats.misses == misses, "nothing read again"
    other_patient = personalised(make_request("typical"), "s2")
    assert _answer(cached, other_patient)["cards"]
    assert cached.fact_cache.stats.misses > misses, "another patient: read anew"


def test_a_session_reads_its_record_with_one_key(cached: CdsEngine) -> None:
    """The later calls of a session find the whole record under one key: one lookup, however
    many resources it holds (issue 32)."""
    assert cached.fact_cache is not None
    request = personalised(make_request("typical"), "w1")
    first = _answer(cached, request)
    stats = cached.fact_cache.stats
    hits, misses = stats.hits, stats.misses
    assert _answer(cached, request) == first
    assert (stats.hits - hits, stats.misses - misses) == (2, 0), "the record and its draft"


def test_the_same_resources_in_another_order_are_read_again_and_answer_the_same(
    cached: CdsEngine, engine: CdsEngine
) -> None:
    request = personalised(make_request("typical"), "w2")
    _answer(cached, request)
    reordered = copy.deepcopy(request)
    entries = reordered["prefetch"]["conditions"]["entry"]
    entries.reverse()
    assert cached.fact_cache is not None
    misses = cached.fact_cache.stats.misses
    assert _answer(cached, reordered) == _answer(engine, reordered)
    assert cached.fact_cache.stats.misses > misses, "another key: the record is read again"


def test_the_record_key_holds_what_the_client_said_was_unknown(cached: CdsEngine) -> None:
    """The same resources with devices (allergies, kidney results) unknown must not be
    answered by the record read when they were known: unknown devices never let MRI be
    called safe."""
    request = vignette("parotid_mec_after_parotidectomy_and_imrt_local_mri_neck")
    bundles = [v for v in request["prefetch"].values() if v and v.get("entry")]
    resources = [e["resource"] for bundle in bundles for e in bundle["entry"]]
    flags = ("devices_known", "allergies_known", "observations_known")
    for unknown in flags:
        known_record = cached.records.build("pt-parotid-mec", resources)
        unknown_record = cached.records.build("pt-parotid-mec", resources, **{unknown: False})
        assert all(getattr(known_record, flag) for flag in flags)
        assert getattr(unknown_record, unknown) is False, unknown
        assert known_record.conditions == unknown_record.conditions != ()


def test_the_same_id_with_new_content_is_read_again(cached: CdsEngine, engine: CdsEngine) -> None:
    """A cancer diagnosis corrected to a benign tumour under the same id: the cache must not
    answer with the old reading."""
    request = vignette("parotid_mec_after_parotidectomy_and_imrt_local_mri_neck")
    assert _answer(cached, request)["cards"]
    corrected = copy.deepcopy(request)
    for entry in corrected["prefetch"]["conditions"]["entry"]:
        condition = entry["resource"]
        if condition["id"] == "parotid-mec":
            condition["verificationStatus"]["coding"][0]["code"] = "refuted"
    assert _answer(cached, corrected) == _answer(engine, corrected)
    assert _answer(cached, corrected)["cards"] == []


def test_the_same_content_for_another_patient_is_read_again(
    cached: CdsEngine, engine: CdsEngine
) -> None:
    """The reading depends on the patient in context: another patient's resource, sent with
    the same content, is skipped whatever the cache holds."""
    request = vignette("parotid_mec_after_parotidectomy_and_imrt_local_mri_neck")
    _answer(cached, request)
    other = copy.deepcopy(request)
    other["context"]["patientId"] = "someone-else"
    for entry in other["context"]["draftOrders"]["entry"]:
        entry["resource"]["subject"] = {"reference": "Patient/someone-else"}
    assert _answer(cached, other) == _answer(engine, other)
    assert _answer(cached, other)["cards"] == []


def test_the_app_has_the_cache_unless_it_is_switched_off(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    on = build_engine(Settings(data_dir=tmp_path))
    assert on.fact_cache is not None
    assert (on.fact_cache.capacity, on.fact_cache.ttl_seconds) == (20_000, 600)
    monkeypatch.setenv("CDS_FACT_CACHE", "off")
    settings = load_settings(data_dir=tmp_path)
    assert settings.fact_cache is False
    assert build_engine(settings).fact_cache is None
    client = build_app(settings).test_client()
    response = client.post(
        f"/cds-services/{SERVICE_ID}",
        json=vignette("parotid_mec_after_parotidectomy_and_imrt_local_mri_neck"),
    )
    assert response.status_code == 200
    assert response.get_json()["cards"]


def test_the_cache_is_bounded_by_bytes_as_well_as_count() -> None:
    """150 calls of 4 MB unique text once grew a worker by 624 MB under a count bound alone."""
    from cds_service.fhir.fact_cache import read_through

    cache = FactCache(1000, 60, max_bytes=100_000)
    for n in range(50):
        big = {**CONDITION, "id": f"c{n}", "note": [{"text": "x" * 10_000}]}
        read_through(cache, P, big, lambda: "fact")
    assert cache.size <= 100_000
    assert 0 < len(cache) <= 10
    huge = {**CONDITION, "id": "huge", "note": [{"text": "x" * 200_000}]}
    assert read_through(cache, P, huge, lambda: "fact") == "fact"  # read, never kept
    assert cache.size <= 100_000
