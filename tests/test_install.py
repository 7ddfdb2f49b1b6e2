"""Installed as a deployment installs it: the wheel, in a fresh venv, run from another folder.

The wheel and the sdist are built from this checkout (hatchling, offline), the wheel is
installed into a new venv without its dependencies, and the venv reads the dependencies from
this test environment's site-packages (a ``.pth`` file naming them; their ``.pth`` files, among
them this checkout's editable install, are not read from there): so the code, the knowledge and
the examples all come from the wheel, and the test needs no network and a few seconds. Every
command runs in an empty temporary folder with its own HOME.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT
from tests.live import free_port

FRESH_PYTHON = f"python{sys.version_info.major}.{sys.version_info.minor}"


@dataclass(frozen=True)
class Installed:
    wheel: Path
    sdist: Path
    venv: Path

    @property
    def cli(self) -> Path:
        return self.venv / "bin" / "salivary-cds"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    work = tmp_path_factory.mktemp("install")
    dist = work / "dist"
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-d", str(dist)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    uv = Path(sys.executable).with_name("uv")
    subprocess.run(
        [
            *(str(uv), "pip", "install", "--python", str(venv / "bin" / "python")),
            *("--no-deps", "--offline", "--quiet", str(wheel)),
        ],
        check=True,
        capture_output=True,
    )
    purelib = venv / "lib" / FRESH_PYTHON / "site-packages"
    (purelib / "zz_test_dependencies.pth").write_text(
        "\n".join(site.getsitepackages()) + "\n", encoding="utf-8"
    )
    return Installed(wheel, sdist, venv)


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """An empty folder outside the checkout to run commands from."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


def _environment(home: Path, **extra: str) -> dict[str, str]:
    """The test's environment without any service variable (not even the data folder the test
    fixture sets), with its own HOME: where data goes is the service's default."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env.pop("DATABASE_URL", None)
    env.pop("XDG_DATA_HOME", None)
    env.pop("PYTHONPATH", None)
    env["HOME"] = str(home)
    env.update(extra)
    return env


def _run(
    installed: Installed, cwd: Path, *argv: str, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(installed.cli), *argv],
        cwd=cwd,
        env=_environment(cwd.parent / "home", **extra),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The command failed as a configuration error does: exit 2, one line, no traceback."""
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 2, output
    assert "Traceback" not in output
    assert len(output.splitlines()) == 1, output
    assert output.startswith("salivary-cds: ")
    return output


def test_the_wheel_holds_code_knowledge_and_examples_and_the_sdist_no_cache(
    installed: Installed,
) -> None:
    names = zipfile.ZipFile(installed.wheel).namelist()
    assert "cds_service/_hooks/knowledge/cards.json" in names
    assert "cds_service/_examples/vignettes.json" in names
    assert "cds_service/web/trust/cds-hooks-sandbox-jwks.json" in names
    assert not [n for n in names if n.startswith("tests/") or "__pycache__" in n]
    with tarfile.open(installed.sdist) as sdist:
        members = [m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name]
    assert "requirements.lock" in members
    assert "hooks/knowledge/cards.json" in members
    assert not [m for m in members if m.startswith((".hypothesis", ".venv", ".mypy_cache", "var/"))]
    assert not [m for m in members if "__pycache__" in m]


def test_the_fresh_venv_runs_the_wheel_not_the_checkout(
    installed: Installed, elsewhere: Path
) -> None:
    probe = (
        "import cds_service, cds_service.knowledge.loader as k, cds_service.cli.vignettes as v;"
        "print(cds_service.__file__); print(k.default_hooks_dir()); print(v.default_examples_dir())"
    )
    result = subprocess.run(
        [str(installed.python), "-c", probe],
        cwd=elsewhere,
        env=_environment(elsewhere.parent / "home"),
        capture_output=True,
        text=True,
        check=True,
    )
    for line in result.stdout.splitlines():
        assert line.startswith(str(installed.venv)), line


@dataclass
class _Server:
    process: subprocess.Popen[bytes]
    url: str


@pytest.fixture
def served(installed: Installed, elsewhere: Path) -> Iterator[_Server]:
    port = free_port()
    log = elsewhere.parent / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(installed.cli), "serve", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
            cwd=elsewhere,
            env=_environment(elsewhere.parent / "home", CDS_TRUST_SANBOX="true"),  # a typo
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = _Server(process, f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 15)
            process.wait(timeout=15)


def test_serve_from_another_folder_keeps_data_in_the_user_data_directory(
    served: _Server, elsewhere: Path
) -> None:
    ready = requests.get(f"{served.url}/readyz", timeout=5)
    assert ready.status_code == 200
    expected = elsewhere.parent / "home" / ".local" / "share" / "salivary-imaging-cds"
    assert ready.json()["database"] == f"sqlite:///{expected / 'cds_service.sqlite3'}"
    assert (expected / "cds_service.sqlite3").is_file()
    assert list(elsewhere.iterdir()) == []  # nothing written where it was started
    log = (elsewhere.parent / "serve.log").read_text()
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert {"event": "storage", "data_dir": str(expected)}.items() <= next(
        r for r in records if r.get("event") == "storage"
    ).items()  # the start-up log names it too
    assert (
        "CDS_TRUST_SANBOX is not a setting and is ignored: did you mean CDS_TRUST_SANDBOX?" in log
    )


def test_the_data_folder_is_where_cds_data_dir_says(installed: Installed, elsewhere: Path) -> None:
    result = _run(installed, elsewhere, "init-db", CDS_DATA_DIR="relative-data")
    assert result.returncode == 0, result.stderr
    assert (elsewhere / "relative-data" / "cds_service.sqlite3").is_file()


def test_replay_from_the_installed_examples(installed: Installed, elsewhere: Path) -> None:
    examples = installed.venv / "lib" / FRESH_PYTHON / "site-packages/cds_service/_examples"
    request = examples / "parotid_mec_after_parotidectomy_and_imrt_local_mri_neck.json"
    result = _run(installed, elsewhere, "replay", str(request))
    assert result.returncode == 0, result.stderr
    assert "MRI may miss perineural spread" in result.stdout
    missing = _one_line_error(_run(installed, elsewhere, "replay", "no-such-request.json"))
    assert str(examples) in missing  # says where the example requests are


def test_report_and_its_unreachable_database(installed: Installed, elsewhere: Path) -> None:
    result = _run(installed, elsewhere, "report")
    assert result.returncode == 0, result.stderr
    down = _run(
        installed,
        elsewhere,
        "report",
        DATABASE_URL=f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none",
    )
    assert "cannot be reached" in _one_line_error(down)
    assert "DATABASE_URL" in down.stderr


def test_cards_html_and_vignettes_check_from_the_wheel(
    installed: Installed, elsewhere: Path
) -> None:
    page = elsewhere.parent / "cards.html"
    result = _run(installed, elsewhere, "cards", "--html", str(page))
    assert result.returncode == 0, result.stderr
    assert "<html" in page.read_text(encoding="utf-8")
    check = _run(installed, elsewhere, "vignettes", "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert ", 0 files differ" in check.stdout
    # Writing over the installed copy is refused in one line that says what to pass.
    assert "--examples" in _one_line_error(_run(installed, elsewhere, "vignettes"))
