"""A deployment engineer's first hour: every start-up error is one line that says what to do.

Each error is run as a deployment meets it, in a subprocess: ``salivary-cds serve`` (which
execs gunicorn with the service's configuration) or a subcommand, and must end with exit code 2,
exactly one line of output, no "Traceback" (unless CDS_LOG_LEVEL=DEBUG asks for it).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.live import free_port

CLI = str(Path(sys.executable).with_name("salivary-cds"))


def _run(tmp_path: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    environment.pop("DATABASE_URL", None)
    environment.update(CDS_DATA_DIR=str(tmp_path / "data"), CDS_WORKERS="1")
    environment.setdefault("CDS_BIND", f"127.0.0.1:{free_port()}")
    environment.update(env)
    return subprocess.run(
        [CLI, *argv],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 2, output
    assert "Traceback" not in output, output
    assert len(output.splitlines()) == 1, output
    assert output.startswith("salivary-cds: "), output
    return output


def _unreachable_database() -> str:
    return f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none"


@pytest.mark.parametrize(
    ("env", "says"),
    [
        pytest.param(
            {"CDS_ENVIRONMENT": "production"},
            ["no trusted issuer", "CDS_TRUSTED_ISSUERS", "CDS_TRUST_SANDBOX=true"],
            id="production-without-a-trusted-issuer",
        ),
        pytest.param(
            {"CDS_HOOKS_DIR": "/no/such/hooks"},
            ["CDS_HOOKS_DIR=/no/such/hooks", "unset it"],
            id="missing-hooks-folder",
        ),
        pytest.param(
            {"CDS_SITE_DIR": "/no/such/site"},
            ["CDS_SITE_DIR=/no/such/site", "unset it"],
            id="missing-site-folder",
        ),
        pytest.param(
            {"CDS_TRUSTED_ISSUERS_FILE": "/no/such/issuers.json"},
            ["CDS_TRUSTED_ISSUERS_FILE=/no/such/issuers.json", "cannot be read"],
            id="missing-issuers-file",
        ),
        pytest.param(
            {"DATABASE_URL": "unreachable"},
            ["cannot be reached", "check DATABASE_URL"],
            id="unreachable-database",
        ),
        pytest.param(
            {"DATABASE_URL": "mysql://db/cds"},
            ["DATABASE_URL: not a SQLite or PostgreSQL URL"],
            id="bad-database-url",
        ),
        pytest.param(
            {"CDS_DATA_DIR": "/proc/no-such-folder"},
            ["data folder /proc/no-such-folder cannot be created", "CDS_DATA_DIR"],
            id="data-folder-not-writable",
        ),
        pytest.param(
            {"CDS_FHIR_DEADLINE": "-1"},
            ["CDS_FHIR_DEADLINE"],
            id="bad-setting",
        ),
    ],
)
def test_serve_fails_in_one_line(tmp_path: Path, env: dict[str, str], says: list[str]) -> None:
    if env.get("DATABASE_URL") == "unreachable":
        env = {"DATABASE_URL": _unreachable_database()}
    line = _one_line(_run(tmp_path, "serve", **env))
    for words in says:
        assert words in line


@pytest.mark.parametrize("command", [["init-db"], ["report"], ["replay", "x.json"]])
def test_subcommands_name_an_unreachable_database_in_one_line(
    tmp_path: Path, command: list[str]
) -> None:
    if command[0] == "replay":  # replay needs no database: its file error is one line too
        assert "x.json: no such file" in _one_line(_run(tmp_path, *command))
        return
    line = _one_line(_run(tmp_path, *command, DATABASE_URL=_unreachable_database()))
    assert "cannot be reached" in line and "check DATABASE_URL" in line


def test_cds_database_url_is_named_as_set(tmp_path: Path) -> None:
    line = _one_line(_run(tmp_path, "init-db", CDS_DATABASE_URL="mysql://db/cds"))
    assert "CDS_DATABASE_URL: not a SQLite" in line
    line = _one_line(_run(tmp_path, "init-db", DATABASE_URL="mysql://db/cds"))
    assert "DATABASE_URL: not a SQLite" in line and "CDS_DATABASE_URL" not in line


def test_a_taken_port_says_how_to_change_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = _one_line(_run(tmp_path, "serve", CDS_BIND=f"127.0.0.1:{port}"))
    assert f"127.0.0.1:{port} is already in use" in line
    assert "--bind" in line and "CDS_BIND" in line


def test_debug_keeps_the_traceback_and_the_line(tmp_path: Path) -> None:
    result = _run(tmp_path, "serve", CDS_HOOKS_DIR="/no/such/hooks", CDS_LOG_LEVEL="DEBUG")
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("salivary-cds: CDS_HOOKS_DIR=")


def test_a_misspelt_variable_is_warned_about_naming_the_right_one(tmp_path: Path) -> None:
    result = _run(tmp_path, "init-db", CDS_REQUIRE_AUTHH="true")
    assert result.returncode == 0
    assert result.stderr.strip() == (
        "salivary-cds: warning: CDS_REQUIRE_AUTHH is not a setting and is ignored: "
        "did you mean CDS_REQUIRE_AUTH?"
    )
    assert result.stdout.strip() == "database ready"  # stdout stays the command's own
