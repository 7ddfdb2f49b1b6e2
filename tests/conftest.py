"""Shared fixtures: one validated knowledge load, an app per test with its own database,
deterministic uuids, and an environment the caller's shell cannot change."""

from __future__ import annotations

import os

#: Variables the service reads. Tests build their settings themselves: nothing the caller
#: exports (``DATABASE_URL=... pytest``, ``CDS_HOOKS_DIR=... pytest``) may change an outcome.
#: Cleared before the service is imported (prometheus_client reads its variable at import).
#: CDS_TEST_POSTGRES_URL is the test harness's own, not the service's.
SERVICE_VARIABLES = ("DATABASE_URL", "PROMETHEUS_MULTIPROC_DIR")


def service_variables() -> list[str]:
    return [
        name
        for name in os.environ
        if name in SERVICE_VARIABLES
        or (name.startswith("CDS_") and name != "CDS_TEST_POSTGRES_URL")
    ]


for _name in service_variables():
    del os.environ[_name]

import copy  # noqa: E402 - after the environment is cleared
import functools  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
from collections.abc import Callable, Iterable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
from flask import Flask  # noqa: E402
from flask.testing import FlaskClient  # noqa: E402

from cds_service.cli.vignettes import VignetteBook  # noqa: E402
from cds_service.clinical.patient_record import PatientRecord  # noqa: E402
from cds_service.config import Settings  # noqa: E402
from cds_service.engine import CdsEngine  # noqa: E402
from cds_service.fhir import build as fhir_build  # noqa: E402
from cds_service.knowledge.loader import Knowledge, default_hooks_dir, load_knowledge  # noqa: E402
from cds_service.web.app import create_app, initialise  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "fhir_examples"
SERVICE_ID = "salivary-post-treatment-imaging-order-select"
SIGN_SERVICE_ID = "salivary-post-treatment-imaging-order-sign"
VIEW_SERVICE_ID = "salivary-post-treatment-imaging-patient-view"
HOOK_URL = f"/cds-services/{SERVICE_ID}"
#: The prefetch keys the reasoning reads (the Patient key is advertised but never read).
USED_PREFETCH_KEYS = (
    "conditions",
    "procedures",
    "serviceRequests",
    "devices",
    "imagingStudies",
    "diagnosticReports",
    "allergies",
    "observations",
)


@functools.cache
def default_engine() -> CdsEngine:
    """The engine on the shipped knowledge, built once for the whole run."""
    return CdsEngine(load_knowledge(default_hooks_dir()))


def patient_record(
    resources: Iterable[dict[str, Any]], devices_known: bool = True, patient_id: str = "p"
) -> PatientRecord:
    """A PatientRecord built as the engine builds it (relevance filter on)."""
    return default_engine().records.build(patient_id, resources, devices_known)


@pytest.fixture(scope="session")
def knowledge() -> Knowledge:
    return default_engine().knowledge


@pytest.fixture(scope="session")
def engine() -> CdsEngine:
    return default_engine()


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test: none of the service's variables, and its own data folder (SQLite database),
    also for the service processes a test starts (they inherit this environment)."""
    for name in service_variables():
        monkeypatch.delenv(name)
    monkeypatch.setenv("CDS_DATA_DIR", str(tmp_path / "service-data"))


def build_app(settings: Settings) -> Flask:
    """The app as a deployment runs it: the start-up step (tables), then the factory."""
    initialise(settings)
    return create_app(settings)


@pytest.fixture
def app() -> Flask:
    return build_app(Settings(environment="development", max_body_bytes=200_000))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def sequential_uuids() -> Callable[[], str]:
    """Deterministic uuids so whole responses can be compared."""
    counter = itertools.count(1)
    return lambda: f"00000000-0000-4000-8000-{next(counter):012d}"


def draft_service_request(
    codings: list[dict[str, str]] | None = None, text: str | None = None
) -> dict[str, Any]:
    """A minimal valid draft ServiceRequest "sr" for patient "p" with the given code."""
    return fhir_build.service_request(
        "p", "sr", codings=codings, text=text, encounter=None, requester=None
    )


def body_of(response: Any) -> Any:
    """The JSON body of a Flask test response (typed Any for the tests that index into it)."""
    return response.get_json()


@functools.cache
def vignette_book() -> VignetteBook:
    """fhir_examples/vignettes.json, built (the drift test proves the request files match)."""
    return VignetteBook.load(default_engine().knowledge, EXAMPLES)


def expected_outcomes() -> dict[str, Any]:
    """Per vignette: its description, service, expected cards (rule, mentions) and ratings."""
    return {
        name: {
            "description": v.description,
            "service": v.service,
            "cards": list(v.cards),
            "pama": [list(p) for p in v.pama],
            "overridden": list(v.overridden),
            "client": v.client,
            "silent": list(v.silent),
        }
        for name, v in vignette_book().vignettes.items()
    }


def vignette(name: str) -> dict[str, Any]:
    """A fresh copy of one vignette's hook request (tests may change it)."""
    data: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    return copy.deepcopy(data)


def walk(value: Any, path: str = "$") -> Iterator[tuple[str, Any]]:
    """Every (path, value) in a JSON document, to check that no null or empty value is sent."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk(item, f"{path}[{index}]")


def json_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a field or item of a JSON document (not the root), as keys and indexes:
    where the property tests put a value of their own."""
    found = [path] if path else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += json_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += json_paths(item, (*path, index))
    return found


def postgres_url() -> str | None:
    """PostgreSQL for the tests that need a real server: CDS_TEST_POSTGRES_URL (set by .ci/run).

    Locally without it those tests are skipped; in CI (CI=true) its absence is a failure.
    """
    url = os.environ.get("CDS_TEST_POSTGRES_URL")
    if url:
        return url
    if os.environ.get("CI") == "true":
        pytest.fail("CI must provide PostgreSQL: CDS_TEST_POSTGRES_URL is not set")
    return None


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty feedback database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'feedback.sqlite3'}"
    return empty_postgres()


def empty_postgres() -> str:
    """The test PostgreSQL, its service tables dropped (skips where there is none, locally)."""
    url = postgres_url()
    if url is None:
        pytest.skip("PostgreSQL not configured (set CDS_TEST_POSTGRES_URL)")
    from cds_service.store.storage import Database

    database = Database(url)
    database.drop_schema()
    database.dispose()
    return url
