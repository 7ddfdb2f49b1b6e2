"""Verification of the CDS client's JWT (CDS Hooks 2.0 "Trusting CDS Clients").

A token is accepted only when: its algorithm is an asymmetric one we allow (never ``none`` or
HMAC); its ``iss`` is a configured trusted issuer; a ``jku`` header, if any, is one of that
issuer's allowed JWKS URLs (it is never fetched from the token); the signature verifies with the
key named by ``kid`` from the issuer's JWKS (a file, or a URL fetched, cached, and refreshed when
an unknown ``kid`` appears); ``aud`` is exactly the URL called; ``exp``, ``iat`` and ``nbf`` hold
within a small leeway; and its ``jti`` was not seen before within the token's lifetime.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import jwt
import requests
import structlog

from cds_service.config import Settings, TrustedIssuerConfig
from cds_service.contract.errors import (
    ConfigurationError,
    MissingCredentialsError,
    ReplayCheckUnavailableError,
    UnauthorizedError,
)
from cds_service.fhir.allowlist import AllowList

ALLOWED_ALGORITHMS = ("ES384", "RS384", "ES256", "RS256", "ES512", "RS512")
_KEY_TYPES = {"ES": "EC", "RS": "RSA"}
SANDBOX_ISSUER = "https://sandbox.cds-hooks.org"
SANDBOX_JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"
SANDBOX_JWKS_FILE = Path(__file__).parent / "trust" / "cds-hooks-sandbox-jwks.json"
log = structlog.get_logger("cds_service.security")


@dataclass(frozen=True)
class TrustedIssuer:
    """An EHR we trust: its ``iss`` and where its public keys come from."""

    iss: str
    jwks_url: str | None = None
    jwks_file: Path | None = None
    allowed_jku: tuple[str, ...] = ()
    #: The FHIR servers this issuer's calls may be fetched from (None: not limited).
    fhir_servers: AllowList | None = None

    @classmethod
    def from_config(cls, config: TrustedIssuerConfig) -> TrustedIssuer:
        allowed = config.allowed_jku
        if config.jwks_url and config.jwks_url not in allowed:
            allowed = (*allowed, config.jwks_url)
        servers = (
            AllowList(config.allowed_fhir_servers)
            if config.allowed_fhir_servers is not None
            else None
        )
        return cls(config.iss, config.jwks_url, config.jwks_file, allowed, servers)


def sandbox_issuer() -> TrustedIssuer:
    """The public CDS Hooks sandbox, with its published JWKS shipped in the package (opt-in).
    Its calls are never fetched for (it prefetches everything itself): no FHIR server."""
    return TrustedIssuer(SANDBOX_ISSUER, None, SANDBOX_JWKS_FILE, (SANDBOX_JKU,), AllowList(()))


def load_trusted_issuers(settings: Settings) -> tuple[TrustedIssuer, ...]:
    """The issuers of the settings (inline and from their file), and the sandbox if opted in."""
    configs = list(settings.trusted_issuers)
    if settings.trusted_issuers_file is not None:
        try:
            raw = json.loads(settings.trusted_issuers_file.read_text(encoding="utf-8"))
            configs += [TrustedIssuerConfig.model_validate(entry) for entry in raw]
        except OSError as exc:
            raise ConfigurationError(
                f"CDS_TRUSTED_ISSUERS_FILE={settings.trusted_issuers_file} cannot be read "
                f"({exc.strerror or exc}): name a JSON file of issuers, or unset it"
            ) from None
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                f"CDS_TRUSTED_ISSUERS_FILE={settings.trusted_issuers_file}: {exc}"
            ) from None
    if settings.environment == "production":
        unbound = [c.iss for c in configs if c.allowed_fhir_servers is None]
        if unbound:
            raise ConfigurationError(
                f"trusted issuer {unbound[0]} has no allowed_fhir_servers: in production each "
                "issuer names the FHIR servers its calls may be fetched from ([] for none)"
            )
    issuers = [TrustedIssuer.from_config(c) for c in configs]
    if settings.trust_sandbox and not any(i.iss == SANDBOX_ISSUER for i in issuers):
        issuers.append(sandbox_issuer())
    return tuple(issuers)


@dataclass(frozen=True)
class PublicKey:
    """A key of an issuer's JWKS, with the algorithm the JWK declares (if it does)."""

    jwk: jwt.PyJWK
    declared_alg: str | None


@dataclass
class _KeySet:
    """An issuer's last good keys, and when its JWKS was last asked for (success or not)."""

    keys: dict[str, PublicKey] = field(default_factory=dict)
    loaded: bool = False
    last_attempt: float = float("-inf")
    #: Set while no refresh is running; a caller with no keys at all may wait for one.
    idle: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.idle.set()


class JwksCache:
    """Public keys per issuer: from a file once, or from a URL, fetched again when a token names
    an unknown ``kid``, at most once per ``min_refresh`` seconds whether the last fetch worked
    or failed (a failing JWKS endpoint is not hammered by every token). The fetch runs outside
    the lock: a token whose key is known never waits for it; the last good keys keep serving
    while it runs or when it fails. Only a caller that has no keys at all waits for a running
    fetch, at most its timeout."""

    def __init__(self, timeout: float = 2.0, min_refresh: float = 30.0) -> None:
        self._sets: dict[str, _KeySet] = {}
        self._lock = threading.Lock()
        self._timeout = timeout
        self._min_refresh = min_refresh

    def key(self, issuer: TrustedIssuer, kid: str) -> PublicKey:
        with self._lock:
            current = self._sets.setdefault(issuer.iss, _KeySet())
            found = current.keys.get(kid)
        if found is not None:
            return found
        self._refresh(issuer, current)
        if not current.loaded:
            raise UnauthorizedError("The issuer's JWKS cannot be read")
        try:
            return current.keys[kid]
        except KeyError:
            raise UnauthorizedError("The token's key (kid) is not in the issuer's JWKS") from None

    def _refresh(self, issuer: TrustedIssuer, current: _KeySet) -> None:
        """Fetch the JWKS unless one was asked for within ``min_refresh`` (files: once)."""
        with self._lock:
            now = time.monotonic()
            fresh = now - current.last_attempt < self._min_refresh
            if (issuer.jwks_file is not None and current.loaded) or fresh:
                running = not current.idle.is_set()
                mine = False
            else:
                current.last_attempt = now
                current.idle.clear()
                running = mine = True
        if not mine:
            if running and not current.loaded:
                current.idle.wait(self._timeout)  # the first fetch is on its way
            return
        try:
            keys = self._load(issuer)
        except UnauthorizedError:
            log.warning("jwks-unreadable", iss=issuer.iss)
            keys = None
        with self._lock:
            if keys is not None:
                current.keys, current.loaded = keys, True
            current.idle.set()

    def _load(self, issuer: TrustedIssuer) -> dict[str, PublicKey]:
        try:
            if issuer.jwks_file is not None:
                data = json.loads(issuer.jwks_file.read_text(encoding="utf-8"))
            else:
                assert issuer.jwks_url is not None
                response = requests.get(issuer.jwks_url, timeout=self._timeout)
                response.raise_for_status()
                data = response.json()
        except (OSError, ValueError, requests.RequestException):
            raise UnauthorizedError("The issuer's JWKS cannot be read") from None
        keys: dict[str, PublicKey] = {}
        for jwk in data.get("keys", []):
            if not isinstance(jwk, dict) or not jwk.get("kid"):
                continue
            try:
                keys[jwk["kid"]] = PublicKey(jwt.PyJWK(jwk), jwk.get("alg"))
            except jwt.PyJWTError:
                continue  # a key type we cannot use (e.g. symmetric) is left out
        return keys


#: A client JWT authenticates one call: it may live an hour at the most (exp - iat, and exp
#: from now). Longer ones are refused before their jti is stored (an exp of 10**20 once broke
#: the store).
MAX_TOKEN_LIFETIME = 3600


class ReplayGuard(Protocol):
    def first_use(self, iss: str, jti: str, expires: float) -> bool:
        """True the first time; raises ReplayCheckUnavailableError when it cannot tell."""
        ...


class ClientVerifier:
    """Verifies one Authorization header for one called URL."""

    def __init__(
        self,
        issuers: tuple[TrustedIssuer, ...],
        replays: ReplayGuard,
        leeway: float = 30.0,
        jwks: JwksCache | None = None,
    ) -> None:
        self._issuers = {i.iss: i for i in issuers}
        self._leeway = leeway
        self._jwks = jwks or JwksCache()
        self._replays = replays

    def fhir_servers(self, iss: str) -> AllowList | None:
        """The FHIR servers a verified token's issuer may have fetched for (None: not limited)."""
        issuer = self._issuers.get(iss)
        return issuer.fhir_servers if issuer is not None else AllowList(())

    def verify(self, authorization: str | None, audience: str) -> dict[str, Any]:
        """Return the verified claims, or raise UnauthorizedError with a reason."""
        if not authorization:
            raise MissingCredentialsError("An Authorization: Bearer <JWT> header is required")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise MissingCredentialsError("The Authorization header must be 'Bearer <JWT>'")
        token = token.strip()
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise UnauthorizedError("The bearer token is not a JWT") from None
        algorithm = header.get("alg")
        if algorithm not in ALLOWED_ALGORITHMS:
            raise UnauthorizedError(f"Signing algorithm {algorithm!r} is not accepted")
        issuer = self._issuers.get(str(unverified.get("iss")))
        if issuer is None:
            raise UnauthorizedError("The token's issuer is not trusted")
        jku = header.get("jku")
        if jku is not None and jku not in issuer.allowed_jku:
            raise UnauthorizedError("The token's jku is not an allowed JWKS URL for its issuer")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise UnauthorizedError("The token names no key (kid)")
        key = self._jwks.key(issuer, kid)
        if (
            key.declared_alg not in (None, algorithm)
            or key.jwk.key_type != _KEY_TYPES[algorithm[:2]]
        ):
            raise UnauthorizedError("The token's algorithm does not match its key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.jwk.key,
                algorithms=[algorithm],
                audience=audience,
                issuer=issuer.iss,
                leeway=self._leeway,
                options={"require": ["iss", "aud", "exp", "iat", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise UnauthorizedError("The token has expired") from None
        except jwt.ImmatureSignatureError:
            raise UnauthorizedError("The token is not yet valid (iat or nbf)") from None
        except jwt.InvalidAudienceError:
            raise UnauthorizedError("The token's aud is not the URL called") from None
        except jwt.MissingRequiredClaimError as exc:
            raise UnauthorizedError(f"The token has no {exc.claim!r} claim") from None
        except jwt.PyJWTError:
            raise UnauthorizedError("The token's signature or claims are invalid") from None
        now = time.time()
        if float(claims["iat"]) > now + self._leeway:
            raise UnauthorizedError("The token is not yet valid (iat or nbf)")
        if isinstance(claims["aud"], list) and claims["aud"] != [audience]:
            # PyJWT accepts a list that holds the URL among others; a token meant for this
            # service and something else could be replayed to either: refuse it.
            raise UnauthorizedError("The token's aud must name only the URL called")
        expires = float(claims["exp"])
        if (
            expires - float(claims["iat"]) > MAX_TOKEN_LIFETIME
            or expires > now + MAX_TOKEN_LIFETIME
        ):
            raise UnauthorizedError(
                f"The token lives longer than {MAX_TOKEN_LIFETIME // 60} minutes (exp)"
            )
        try:
            first_use = self._replays.first_use(issuer.iss, str(claims["jti"]), expires)
        except ReplayCheckUnavailableError:
            raise UnauthorizedError(
                "The token's one-time use (jti) cannot be checked now: the service's database "
                "does not answer; send the call again"
            ) from None
        if not first_use:
            raise UnauthorizedError("The token was already used (jti)")
        return claims
