"""Client JWT verification: a matrix of good and bad tokens, with keys the tests generate."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import jwt
import pytest
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask.testing import FlaskClient
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from cds_service.config import Settings
from cds_service.contract.errors import ConfigurationError
from cds_service.web.app import create_app
from cds_service.web.security import SANDBOX_ISSUER, sandbox_issuer
from tests.conftest import HOOK_URL, SERVICE_ID, build_app, vignette
from tests.fhir_standin import FhirStandIn
from tests.live import free_port

ISSUER = "https://ehr.example.org"
BASE = "https://cds.example.org"
AUDIENCE = f"{BASE}/cds-services/{SERVICE_ID}"
JKU = "https://ehr.example.org/.well-known/jwks.json"
BODY = vignette("parotid_mec_after_parotidectomy_and_imrt_local_mri_neck")


class Keys:
    def __init__(self) -> None:
        self.ec384 = ec.generate_private_key(ec.SECP384R1())
        self.ec256 = ec.generate_private_key(ec.SECP256R1())
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.other_ec384 = ec.generate_private_key(ec.SECP384R1())

    def jwks(self) -> dict[str, Any]:
        keys = [
            dict(json.loads(ECAlgorithm.to_jwk(self.ec384.public_key())), kid="ec384"),
            dict(json.loads(ECAlgorithm.to_jwk(self.ec256.public_key())), kid="ec256"),
            dict(json.loads(RSAAlgorithm.to_jwk(self.rsa.public_key())), kid="rsa"),
        ]
        return {"keys": keys}


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


def auth_settings(keys: Keys, tmp_path: Path, **overrides: Any) -> Settings:
    """Auth required; the tests' issuer trusted with its JWKS in a file; overrides on top."""
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(keys.jwks()))
    issuers = [
        {"iss": ISSUER, "jwks_file": str(jwks), "allowed_jku": [JKU], "allowed_fhir_servers": []}
    ]
    values: dict[str, Any] = {
        "require_auth": True,
        "trusted_issuers": json.dumps(issuers),
        "public_base_url": BASE,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def client(keys: Keys, tmp_path: Path) -> FlaskClient:
    settings = auth_settings(keys, tmp_path, environment="production", jwt_leeway_seconds=5)
    return build_app(settings).test_client()


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": now + 300,
        "iat": now,
        "jti": str(uuid.uuid4()),
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def token(keys: Keys, kid: str = "ec384", alg: str = "ES384", **overrides: Any) -> str:
    key: dict[str, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey] = {
        "ec384": keys.ec384,
        "ec256": keys.ec256,
        "rsa": keys.rsa,
        "wrong": keys.other_ec384,
    }
    headers = {"kid": "ec384" if kid == "wrong" else kid}
    headers.update(overrides.pop("headers", {}))
    return jwt.encode(claims(**overrides), key[kid], algorithm=alg, headers=headers)


def call(client: FlaskClient, bearer: str | None, path: str = HOOK_URL) -> Any:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
    return client.post(path, json=BODY, headers=headers)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def relabelled(signed: str, alg: str) -> str:
    """The same token and signature under a header that names another algorithm."""
    _, payload, signature = signed.split(".")
    header = _b64(json.dumps({"alg": alg, "typ": "JWT", "kid": "rsa"}).encode())
    return f"{header}.{payload}.{signature}"


def hs256_with_public_key(keys: Keys) -> str:
    """The classic algorithm-confusion attack: HMAC keyed with the issuer's public key."""
    public = keys.rsa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa"}).encode())
    payload = _b64(json.dumps(claims()).encode())
    signature = hmac.new(public, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


@pytest.mark.parametrize(
    ("kid", "alg"), [("ec384", "ES384"), ("rsa", "RS384"), ("ec256", "ES256"), ("rsa", "RS512")]
)
def test_valid_tokens_are_accepted(client: FlaskClient, keys: Keys, kid: str, alg: str) -> None:
    response = call(client, token(keys, kid, alg))
    assert response.status_code == 200
    assert len(response.get_json()["cards"]) == 1


def test_epic_style_token_with_nbf_and_sub(client: FlaskClient, keys: Keys) -> None:
    now = int(time.time())
    bearer = token(keys, "rsa", "RS384", nbf=now, sub="epic-client-id")
    assert call(client, bearer).status_code == 200


def test_sandbox_style_rounded_iat_within_leeway(client: FlaskClient, keys: Keys) -> None:
    bearer = token(keys, iat=int(time.time()) + 1, headers={"jku": JKU})
    assert call(client, bearer).status_code == 200


BAD_TOKENS: dict[str, Callable[[Keys], str]] = {
    "alg none": lambda _: jwt.encode(claims(), cast(Any, None), algorithm="none"),
    "HS256 with the public key as secret": hs256_with_public_key,
    "wrong aud": lambda k: token(k, aud="https://other.example.org/cds-services/x"),
    "aud of another service on this host": lambda k: token(
        k, aud=f"{BASE}/cds-services/salivary-post-treatment-imaging-order-sign"
    ),
    "expired": lambda k: token(k, exp=int(time.time()) - 60, iat=int(time.time()) - 400),
    "iat in the future beyond leeway": lambda k: token(k, iat=int(time.time()) + 120),
    "nbf in the future": lambda k: token(k, nbf=int(time.time()) + 120),
    "unknown kid": lambda k: jwt.encode(
        claims(), k.ec384, algorithm="ES384", headers={"kid": "nope"}
    ),
    "no kid": lambda k: jwt.encode(claims(), k.ec384, algorithm="ES384"),
    "signed by another key under a known kid": lambda k: token(k, kid="wrong"),
    "untrusted iss": lambda k: token(k, iss="https://evil.example.org"),
    "untrusted jku": lambda k: token(k, headers={"jku": "https://evil.example.org/jwks.json"}),
    "no jti": lambda k: token(k, jti=None),
    "no exp": lambda k: token(k, exp=None),
    "ES384 header over an RSA key": lambda k: relabelled(token(k, kid="rsa", alg="RS384"), "ES384"),
    "not a JWT": lambda _: "not-a-jwt",
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
def test_bad_tokens_are_refused(client: FlaskClient, keys: Keys, case: str) -> None:
    response = call(client, BAD_TOKENS[case](keys))
    assert response.status_code == 401
    body = response.get_json()
    assert body["error"] == "unauthorized" and body["message"]
    # A token was sent and is not acceptable: RFC 6750 §3.1 invalid_token.
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_a_replayed_token_is_refused(client: FlaskClient, keys: Keys) -> None:
    bearer = token(keys)
    assert call(client, bearer).status_code == 200
    replay = call(client, bearer)
    assert replay.status_code == 401
    assert "already used" in replay.get_json()["message"]


def test_missing_header_when_required(client: FlaskClient) -> None:
    """RFC 6750 §3.1: a request without credentials gets a challenge with no error code."""
    response = call(client, None)
    assert response.status_code == 401
    assert "required" in response.get_json()["message"]
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_other_schemes_are_refused(client: FlaskClient, keys: Keys) -> None:
    """Another scheme is no bearer credential at all (RFC 6750 §3.1): no error code either."""
    response = client.post(HOOK_URL, json=BODY, headers={"Authorization": f"Basic {token(keys)}"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_discovery_is_open_but_checks_a_token_it_is_given(client: FlaskClient, keys: Keys) -> None:
    assert client.get("/cds-services").status_code == 200
    bad = client.get("/cds-services", headers={"Authorization": "Bearer not-a-jwt"})
    assert bad.status_code == 401
    good = token(keys, aud=f"{BASE}/cds-services")
    assert (
        client.get("/cds-services", headers={"Authorization": f"Bearer {good}"}).status_code == 200
    )


def test_preflight_and_health_need_no_token(client: FlaskClient) -> None:
    preflight = client.options(
        HOOK_URL,
        headers={
            "Origin": "https://sandbox.cds-hooks.org",
            "Access-Control-Request-Method": "POST",
        },
    )
    assert preflight.status_code in (200, 204)
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert call(client, None).status_code == 401  # while the hook itself needs one


def test_the_token_is_never_logged(client: FlaskClient, keys: Keys) -> None:
    bearer = token(keys, iss="https://evil.example.org")
    with structlog.testing.capture_logs() as logs:
        call(client, bearer)
    assert bearer not in json.dumps(logs)
    assert any(entry.get("event") == "unauthorized" for entry in logs)


def test_aud_follows_the_url_as_received_without_a_public_base(keys: Keys, tmp_path: Path) -> None:
    client = build_app(auth_settings(keys, tmp_path, public_base_url=None)).test_client()
    as_received = token(keys, aud=f"http://localhost{HOOK_URL}")
    assert call(client, as_received).status_code == 200


@pytest.fixture
def jwks_server(keys: Keys) -> Iterator[FhirStandIn]:
    server = FhirStandIn().start()
    server.documents["/fhir/jwks"] = keys.jwks()
    yield server
    server.stop()


def test_keys_from_a_jwks_url_with_refresh_on_a_new_kid(
    keys: Keys, jwks_server: FhirStandIn
) -> None:
    url = f"{jwks_server.base}/jwks"
    settings = Settings(
        require_auth=True,
        trusted_issuers=json.dumps(
            [{"iss": ISSUER, "jwks_url": url, "allowed_fhir_servers": [jwks_server.base]}]
        ),
        public_base_url=BASE,
    )
    client = build_app(settings).test_client()
    assert call(client, token(keys)).status_code == 200
    assert call(client, token(keys, kid="rsa", alg="RS384")).status_code == 200
    assert len(jwks_server.seen) == 1  # cached
    assert call(client, token(keys, headers={"jku": url})).status_code == 200  # its own URL


def test_the_sandbox_issuer_is_opt_in_and_ships_its_jwks() -> None:
    issuer = sandbox_issuer()
    assert issuer.iss == SANDBOX_ISSUER
    assert issuer.jwks_file is not None and issuer.jwks_file.is_file()
    jwks = json.loads(issuer.jwks_file.read_text())
    assert jwks["keys"][0]["kid"] == "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"
    assert jwks["keys"][0]["alg"] == "ES384"
    with pytest.raises(ConfigurationError, match="no trusted issuer"):
        build_app(Settings(environment="production"))
    build_app(Settings(environment="production", trust_sandbox=True))


def test_a_token_claiming_the_sandbox_but_signed_by_us_is_refused(keys: Keys) -> None:
    settings = Settings(require_auth=True, trust_sandbox=True, public_base_url=BASE)
    client = build_app(settings).test_client()
    forged = jwt.encode(
        claims(iss=SANDBOX_ISSUER),
        keys.ec384,
        algorithm="ES384",
        headers={
            "kid": "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f",
            "jku": "https://sandbox.cds-hooks.org/.well-known/jwks.json",
        },
    )
    assert call(client, forged).status_code == 401


def test_a_replay_to_another_worker_is_refused(keys: Keys, tmp_path: Path) -> None:
    """Two apps on one database stand for two gunicorn workers: the jti memory is shared."""
    settings = auth_settings(keys, tmp_path, data_dir=tmp_path / "shared")
    first, second = build_app(settings).test_client(), build_app(settings).test_client()
    bearer = token(keys)
    assert call(first, bearer).status_code == 200
    assert call(second, bearer).status_code == 401


# --- edge cases an attack run found -----------------------------------------------------------


def test_aud_may_be_a_list_only_of_the_url_called(client: FlaskClient, keys: Keys) -> None:
    assert call(client, token(keys, aud=[AUDIENCE])).status_code == 200
    both = call(client, token(keys, aud=[AUDIENCE, "https://other.example.org/cds-services/x"]))
    assert both.status_code == 401
    assert both.get_json()["message"] == "The token's aud must name only the URL called"


@pytest.mark.parametrize("lifetime", [10**20, 2**31 - int(time.time()) + 60, 3601])
def test_tokens_living_over_an_hour_are_refused_before_their_jti_is_stored(
    client: FlaskClient, keys: Keys, lifetime: int
) -> None:
    """exp = 10**20 once overflowed the SQLite jti store (500), and an exp past 2038 read as
    "already used" on PostgreSQL."""
    now = int(time.time())
    response = call(client, token(keys, exp=now + lifetime))
    assert response.status_code == 401
    assert "lives longer than 60 minutes" in response.get_json()["message"]
    assert call(client, token(keys, exp=now + 3500)).status_code == 200


def test_when_the_jti_store_does_not_answer_the_401_says_so(keys: Keys, tmp_path: Path) -> None:
    closed = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test"
    settings = auth_settings(keys, tmp_path, environment="production", database_url=closed)
    client = create_app(settings).test_client()  # no init step: the database is down
    with structlog.testing.capture_logs() as logs:
        response = call(client, token(keys))
    assert response.status_code == 401
    assert "cannot be checked now" in response.get_json()["message"]
    assert any(
        e["event"] == "replay-check-failed" and e["error_type"] == "OperationalError" for e in logs
    )


# --- issue 26, finding 9: the token's issuer is tied to the FHIR servers of its EHR ------------


def _two_ehrs(keys: Keys, tmp_path: Path, server_of_a: str) -> FlaskClient:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(keys.jwks()))
    issuers = [
        {"iss": ISSUER, "jwks_file": str(jwks), "allowed_fhir_servers": [server_of_a]},
        {"iss": "https://ehr-b.example.org", "jwks_file": str(jwks), "allowed_fhir_servers": []},
    ]
    settings = Settings(
        environment="production",
        trusted_issuers=json.dumps(issuers),
        public_base_url=BASE,
        fhir_allowlist="loopback",
    )
    return build_app(settings).test_client()


def test_another_issuers_token_never_reads_through_this_ehrs_server(
    keys: Keys, tmp_path: Path
) -> None:
    ehr_a = FhirStandIn([e["resource"] for e in BODY["prefetch"]["conditions"]["entry"]]).start()
    try:
        client = _two_ehrs(keys, tmp_path, ehr_a.base)
        body = json.loads(json.dumps(BODY))
        body["fhirServer"] = ehr_a.base
        body["prefetch"].pop("conditions")
        headers_b = {"Authorization": f"Bearer {token(keys, iss='https://ehr-b.example.org')}"}
        refused = client.post(HOOK_URL, json=body, headers=headers_b)
        assert refused.status_code == 412
        assert refused.get_json()["reasons"] == {"conditions": "fhir-server-not-allowed"}
        assert ehr_a.seen == []
        headers_a = {"Authorization": f"Bearer {token(keys)}"}
        answered = client.post(HOOK_URL, json=body, headers=headers_a)
        assert answered.status_code == 200
        assert [s.path for s in ehr_a.seen] == ["/fhir/Condition"]
    finally:
        ehr_a.stop()


def test_production_refuses_an_issuer_without_its_fhir_servers(keys: Keys, tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(keys.jwks()))
    issuers = [{"iss": ISSUER, "jwks_file": str(jwks)}]
    with pytest.raises(ConfigurationError, match="allowed_fhir_servers"):
        build_app(Settings(environment="production", trusted_issuers=json.dumps(issuers)))
