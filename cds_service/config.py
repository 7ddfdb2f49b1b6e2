"""Settings from the environment (prefix ``CDS_``), typed, with safe defaults and no secrets.

Every entry point (the app factory, gunicorn's configuration, the command line) reads one
``Settings`` object through ``load_settings()``: a bad value stops start-up with an error that
names its environment variable, instead of surfacing later as a wrong answer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from cds_service.contract.errors import ConfigurationError

LOOPBACK = "loopback"


def _comma_list(value: Any) -> Any:
    """``a, b`` from the environment; a list or tuple as given in code."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


CommaList = Annotated[tuple[str, ...], NoDecode]


class TrustedIssuerConfig(BaseModel):
    """An EHR we trust: its ``iss`` and where its public keys come from (exactly one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    iss: str = Field(min_length=1)
    jwks_url: str | None = Field(default=None, pattern=r"^https?://")
    jwks_file: Path | None = None
    allowed_jku: tuple[str, ...] = ()
    #: The FHIR base URLs (prefixes, as CDS_FHIR_ALLOWLIST) this issuer's EHR serves: a call
    #: signed by this issuer is fetched for only from these (and only if CDS_FHIR_ALLOWLIST
    #: allows them too). A token from EHR B must not read EHR A's patients. Required in
    #: production; unset in development: no narrowing.
    allowed_fhir_servers: tuple[str, ...] | None = None

    @field_validator("jwks_file")
    @classmethod
    def _file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"jwks_file {value} does not exist")
        return value

    @model_validator(mode="after")
    def _one_key_source(self) -> TrustedIssuerConfig:
        if (self.jwks_url is None) == (self.jwks_file is None):
            raise ValueError(f"issuer {self.iss}: give exactly one of jwks_url and jwks_file")
        return self


class Settings(BaseSettings):
    """One object for all configuration; tests pass their own instead of the environment."""

    model_config = SettingsConfigDict(env_prefix="CDS_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    #: Folder holding services/ and knowledge/; default: the packaged or repository hooks/.
    hooks_dir: Path | None = None
    #: The site's folder (orderables.json, rules.json; see README "Deploying at a site").
    #: Unset: no site configuration, every rule active, standard codes on suggested orders.
    site_dir: Path | None = None
    #: Largest request body accepted, in bytes (413 above it).
    max_body_bytes: int = Field(default=5 * 1024 * 1024, gt=0)
    #: Seconds a request (headers and body) has to arrive whole once its connection is waited
    #: on; past it: 408 and closed. Requests are received by the worker's event loop, never by
    #: a thread (cds_service.web.buffered_worker): a slow client costs no thread.
    request_read_timeout: float = Field(default=10.0, gt=0, le=300)
    #: Bytes all requests being received by one worker may hold together (503 past it).
    request_buffer_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    #: Draft orders judged in one hook call at most; more is a 400 naming the limit.
    max_orders: int = Field(default=50, ge=1, le=500)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: Keep what each resource read as between calls of an ordering session (patient data in
    #: this worker's memory only, never written; see README "Security"): on or off.
    fact_cache: bool = True
    #: At most this many resources kept per worker process; each for at most the TTL, seconds.
    fact_cache_entries: int = Field(default=20_000, ge=1, le=1_000_000)
    fact_cache_ttl: float = Field(default=600.0, gt=0, le=3600)
    #: Bytes the fact cache of one worker may hold (each entry counted at its resource's size).
    fact_cache_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    #: Browser origins allowed by CORS (the CDS Hooks sandbox is a browser app), comma-separated.
    #: Unset: "*" in development, none in production.
    cors_origins: CommaList | None = None

    #: FHIR base URLs the service may fetch from, comma-separated prefixes, or "loopback".
    #: Unset: "loopback" in development, nothing in production.
    fhir_allowlist: CommaList | None = None
    fhir_connect_timeout: float = Field(default=0.5, gt=0, le=10)
    fhir_read_timeout: float = Field(default=1.5, gt=0, le=30)
    #: Overall time for all FHIR fetches of one hook call, in seconds.
    fhir_deadline: float = Field(default=2.0, gt=0, le=30)
    fhir_max_pages: int = Field(default=5, ge=1, le=100)
    fhir_max_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    #: Parallel FHIR fetches per worker process; beyond them a key fails at once (fhir-busy).
    fhir_slots: int = Field(default=32, ge=1, le=512)
    #: Circuit breaker per FHIR base URL: this many failed calls within the window open it for
    #: the cool-off, after which one probe call is let through.
    fhir_breaker_failures: int = Field(default=5, ge=1, le=1000)
    fhir_breaker_window: float = Field(default=30.0, gt=0, le=3600)
    fhir_breaker_cool_off: float = Field(default=30.0, gt=0, le=3600)

    #: Require a valid client JWT on hook and feedback calls. Unset: on in production only.
    require_auth: bool | None = None
    #: Trusted issuers as JSON: [{"iss", "jwks_url" | "jwks_file", "allowed_jku": [...]}].
    trusted_issuers: tuple[TrustedIssuerConfig, ...] = ()
    #: The same, read from a JSON file.
    trusted_issuers_file: Path | None = None
    #: Opt in to the public CDS Hooks sandbox (issuer https://sandbox.cds-hooks.org), whose
    #: published JWKS ships with the service.
    trust_sandbox: bool = False
    #: The URL clients call, e.g. https://cds.example.org (proxies change host and scheme);
    #: the JWT's aud must equal this base plus the path called. Unset: the URL as received.
    public_base_url: str | None = Field(default=None, pattern=r"^https?://[^?#]+$")
    jwt_leeway_seconds: float = Field(default=30.0, ge=0, le=300)

    #: SQLAlchemy URL of the feedback store (DATABASE_URL), e.g.
    #: postgresql+psycopg://user@host/db. Unset: a SQLite file under ``data_dir``.
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "CDS_DATABASE_URL", "database_url"),
        pattern=r"^(sqlite|postgresql)(\+\w+)?://",
    )
    data_dir: Path = Path("var")

    #: gunicorn: where to listen, how many worker processes and threads per worker.
    bind: str = Field(default="127.0.0.1:8080", pattern=r"^(unix:\S+|\[?[\w.:\-]+\]?:\d{1,5})$")
    workers: int = Field(default=2, ge=1, le=64)
    threads: int = Field(default=32, ge=1, le=256)
    #: Prometheus multi-process folder (PROMETHEUS_MULTIPROC_DIR, set by gunicorn's config):
    #: when set, a scrape of any worker sums every worker's samples.
    metrics_dir: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("PROMETHEUS_MULTIPROC_DIR", "metrics_dir"),
    )

    _split_lists = field_validator("cors_origins", "fhir_allowlist", mode="before")(_comma_list)

    @field_validator("trusted_issuers", mode="before")
    @classmethod
    def _issuers_json(cls, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else ()
        return value

    @field_validator("fhir_allowlist")
    @classmethod
    def _allowlist_entries(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for entry in value or ():
            if entry != LOOPBACK and not entry.startswith(("http://", "https://")):
                raise ValueError(f"{entry!r} is neither 'loopback' nor an http(s) base URL")
            if "?" in entry or "#" in entry:
                raise ValueError(f"{entry!r}: a base URL has no query or fragment")
        return value

    def auth_required(self) -> bool:
        if self.require_auth is None:
            return self.environment == "production"
        return self.require_auth

    def allowed_fhir_servers(self) -> tuple[str, ...]:
        if self.fhir_allowlist is None:
            return (LOOPBACK,) if self.environment == "development" else ()
        return self.fhir_allowlist

    def allowed_origins(self) -> list[str]:
        if self.cors_origins is None:
            return ["*"] if self.environment == "development" else []
        return list(self.cors_origins)

    def sqlite_default_url(self) -> str:
        """The embedded default: a SQLite file under ``data_dir``."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(self.data_dir / 'cds_service.sqlite3').resolve()}"

    def database(self) -> str:
        return self.database_url or self.sqlite_default_url()


def environment_name(field: str) -> str:
    """The environment variable that sets ``field``."""
    aliases = {"database_url": "DATABASE_URL", "metrics_dir": "PROMETHEUS_MULTIPROC_DIR"}
    return aliases.get(field, f"CDS_{field.upper()}")


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment (and ``overrides``); a bad value names its variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "settings"
            problems.append(f"{environment_name(field)}: {err['msg']}")
        raise ConfigurationError("invalid settings: " + "; ".join(problems)) from None
    except ValueError as exc:  # e.g. a list setting that is not valid JSON
        raise ConfigurationError(f"invalid settings: {exc}") from None
