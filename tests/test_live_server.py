"""The production command line (gunicorn, as in the Dockerfile) on loopback, called over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from cds_service.cli import main
from tests.conftest import EXAMPLES, HOOK_URL, ROOT
from tests.live import GUNICORN_ARGV, free_port, start_gunicorn


@pytest.fixture(scope="module")
def live_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = start_gunicorn(tmp_path_factory.mktemp("gunicorn"))
    yield server.url
    server.stop()


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
    url = f"http://127.0.0.1:{free_port()}"
    assert (
        main(["replay", str(EXAMPLES / "warthin_tumour_after_parotidectomy.json"), "--url", url])
        == 2
    )
    assert "cannot reach" in capsys.readouterr().err
