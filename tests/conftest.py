"""Shared fixtures: one validated knowledge load, an app per test, deterministic uuids."""

from __future__ import annotations

import copy
import itertools
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from cds_service.app import create_app
from cds_service.config import Settings
from cds_service.engine import Engine
from cds_service.knowledge import Knowledge, default_hooks_dir, load_knowledge

ROOT = Path(__file__).resolve().parent.parent

# Every app the tests build keeps its SQLite feedback store in a throwaway folder.
os.environ.setdefault("CDS_DATA_DIR", tempfile.mkdtemp(prefix="cds-test-data-"))
EXAMPLES = ROOT / "fhir_examples"
SERVICE_ID = "salivary-post-treatment-imaging-order-select"
SIGN_SERVICE_ID = "salivary-post-treatment-imaging-order-sign"
HOOK_URL = f"/cds-services/{SERVICE_ID}"
#: The prefetch keys the reasoning reads (the Patient key is advertised but never read).
USED_PREFETCH_KEYS = (
    "conditions",
    "procedures",
    "serviceRequests",
    "devices",
    "imagingStudies",
    "diagnosticReports",
)


@pytest.fixture(scope="session")
def knowledge() -> Knowledge:
    return load_knowledge(default_hooks_dir())


@pytest.fixture(scope="session")
def engine(knowledge: Knowledge) -> Engine:
    return Engine(knowledge)


@pytest.fixture
def app() -> Flask:
    return create_app(Settings(environment="development", max_body_bytes=200_000))


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
    """A minimal valid draft ServiceRequest for patient "p" with the given code."""
    code: dict[str, Any] = {}
    if codings:
        code["coding"] = codings
    if text:
        code["text"] = text
    return {
        "resourceType": "ServiceRequest",
        "id": "sr",
        "status": "draft",
        "intent": "order",
        "code": code,
        "subject": {"reference": "Patient/p"},
    }


def body_of(response: Any) -> Any:
    """The JSON body of a Flask test response (typed Any for the tests that index into it)."""
    return response.get_json()


def expected_outcomes() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / "expected-outcomes.json").read_text())
    return data


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
    url = postgres_url()
    if url is None:
        pytest.skip("PostgreSQL not configured (set CDS_TEST_POSTGRES_URL)")
    from cds_service.feedback import make_engine, metadata

    engine = make_engine(url)
    metadata.drop_all(engine)
    engine.dispose()
    return url
