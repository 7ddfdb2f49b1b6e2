"""How the app is put together: settings that name their variable, an app factory without global
side effects, the 500 handler's log, and tests that the caller's environment cannot steer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import structlog
from flask import Flask
from sqlalchemy import inspect

from cds_service.config import Settings, load_settings
from cds_service.contract.errors import ConfigurationError
from cds_service.web.app import create_app, initialise
from cds_service.web.runtime import runtime
from tests.conftest import ROOT


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CDS_FHIR_DEADLINE", "-1"),
        ("CDS_FHIR_ALLOWLIST", "ftp://ehr.example.org/fhir"),
        ("CDS_TRUSTED_ISSUERS", '[{"iss": "https://ehr.example.org"}]'),
        ("CDS_TRUSTED_ISSUERS", "not json"),
        ("CDS_WORKERS", "0"),
        ("CDS_BIND", "everywhere"),
        ("DATABASE_URL", "mysql://db/cds"),
    ],
)
def test_a_bad_setting_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    if value != "not json":
        assert variable in str(raised.value)


def test_list_settings_are_typed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": []}')
    monkeypatch.setenv("CDS_FHIR_ALLOWLIST", "loopback, https://ehr.example.org/fhir")
    monkeypatch.setenv("CDS_CORS_ORIGINS", "https://sandbox.cds-hooks.org")
    monkeypatch.setenv(
        "CDS_TRUSTED_ISSUERS",
        f'[{{"iss": "https://e", "jwks_file": "{jwks}", "allowed_fhir_servers": []}}]',
    )
    settings = load_settings()
    assert settings.allowed_fhir_servers() == ("loopback", "https://ehr.example.org/fhir")
    assert settings.allowed_origins() == ["https://sandbox.cds-hooks.org"]
    assert settings.trusted_issuers[0].jwks_file == jwks


def test_gunicorn_reads_the_same_settings() -> None:
    environment = dict(os.environ, CDS_BIND="127.0.0.1:9", CDS_WORKERS="3", CDS_THREADS="5")
    probe = "import cds_service.web.gunicorn_conf as c; print(c.bind, c.workers, c.threads)"
    done = subprocess.run(
        [sys.executable, "-c", probe], env=environment, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["127.0.0.1:9", "3", "5"]
    environment["CDS_WORKERS"] = "many"
    failed = subprocess.run(
        [sys.executable, "-c", probe], env=environment, capture_output=True, text=True
    )
    assert failed.returncode != 0 and "CDS_WORKERS" in failed.stderr


def test_building_the_app_creates_no_tables_and_leaves_logging_alone(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    before = structlog.get_config()
    app = create_app(settings)
    assert structlog.get_config() == before
    database = runtime(app).database
    assert inspect(database.sql).get_table_names() == []
    initialise(settings)
    assert set(inspect(database.sql).get_table_names()) == {
        "issued_cards",
        "feedback_items",
        "seen_tokens",
        "service_secrets",
    }
    database.dispose()


def test_a_500_logs_where_it_happened_but_not_its_message(app: Flask) -> None:
    def broken() -> str:
        raise RuntimeError("Jane Doe, MRN 12345")

    app.add_url_rule("/broken", view_func=broken)
    with structlog.testing.capture_logs() as logs:
        response = app.test_client().get("/broken")
    assert response.status_code == 500
    assert response.get_json() == {"error": "internal-error", "message": "Internal error"}
    [entry] = [e for e in logs if e["event"] == "unhandled"]
    assert entry["error_type"] == "RuntimeError"
    assert any("test_wiring.py" in frame and "broken" in frame for frame in entry["frames"])
    assert "Jane" not in repr(entry)


def test_the_engine_imports_no_storage_or_http_library() -> None:
    probe = (
        "import sys, cds_service.engine; "
        "print(sorted(m for m in ('sqlalchemy', 'flask', 'requests', 'cds_service.store.storage') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_the_callers_environment_changes_no_test_outcome(tmp_path: Path) -> None:
    """``DATABASE_URL=... pytest`` and ``CDS_HOOKS_DIR=/nonexistent pytest`` once leaked into
    the tests (a file written, 54 errors); now the tests build their own settings."""
    leak = tmp_path / "leak.sqlite3"
    environment = dict(
        os.environ,
        DATABASE_URL=f"sqlite:///{leak}",
        CDS_HOOKS_DIR="/nonexistent",
        CDS_ENVIRONMENT="production",
        CDS_REQUIRE_AUTH="true",
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_goldens.py",
            "tests/test_vignettes.py",
            "tests/test_feedback.py",
            "-k",
            "not postgresql",
        ],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout and "error" not in done.stdout.splitlines()[-1]
    assert not leak.exists()
