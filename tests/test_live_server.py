"""The production command line (gunicorn, as in the Dockerfile) on loopback, called over HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from cds_service.cli import main
from tests.conftest import EXAMPLES, HOOK_URL, ROOT

GUNICORN_ARGV = ["-c", "python:cds_service.gunicorn_conf", "cds_service.app:create_app()"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def live_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    env = dict(os.environ, CDS_BIND=f"127.0.0.1:{port}", CDS_WORKERS="2")
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    log_path = tmp_path_factory.mktemp("gunicorn") / "server.log"
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        [gunicorn, *GUNICORN_ARGV], cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{url}/cds-services", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"gunicorn did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)
        log_file.close()


def test_dockerfile_runs_the_same_command_line() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "CMD " + json.dumps(["gunicorn", *GUNICORN_ARGV]) in dockerfile


def test_discovery_over_http(live_url: str) -> None:
    response = requests.get(f"{live_url}/cds-services", timeout=5)
    assert response.status_code == 200
    assert response.json()["services"][0]["hook"] == "order-select"


def test_vignette_over_http(live_url: str) -> None:
    body = json.loads(
        (EXAMPLES / "parotid_mec_after_parotidectomy_and_imrt_local_mri_neck.json").read_text()
    )
    response = requests.post(f"{live_url}{HOOK_URL}", json=body, timeout=5)
    assert response.status_code == 200
    assert response.json()["cards"][0]["indicator"] == "warning"


def test_bad_json_over_http_is_400_not_500(live_url: str) -> None:
    response = requests.post(
        f"{live_url}{HOOK_URL}", data="{", headers={"Content-Type": "application/json"}, timeout=5
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid-request"


def test_replay_against_the_running_service(
    live_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    vignette = EXAMPLES / "submandibular_acc_after_excision_mri_neck_without_contrast.json"
    assert main(["replay", str(vignette), "--url", live_url]) == 0
    assert "WARNING" in capsys.readouterr().out


def test_replay_names_an_unreachable_service(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    assert (
        main(["replay", str(EXAMPLES / "warthin_tumour_after_parotidectomy.json"), "--url", url])
        == 2
    )
    assert "cannot reach" in capsys.readouterr().err
