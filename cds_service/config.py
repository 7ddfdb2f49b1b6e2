"""Settings from the environment (prefix ``CDS_``), typed, with safe defaults and no secrets.

Every entry point (the app factory, gunicorn's configuration, the command line) reads one
``Settings`` object through ``load_settings()``: a bad value stops start-up with an error that
names its environment variable, instead of surfacing later as a wrong answer.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping
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
#: The origin of the public CDS Hooks sandbox, a browser app: trusting its JWTs
#: (CDS_TRUST_SANDBOX) is of use only if its pages may call the service (CORS).
SANDBOX_ORIGIN = "https://sandbox.cds-hooks.org"
#: The folder under the per-user data directory that holds the default SQLite file.
DATA_FOLDER_NAME = "salivary-imaging-cds"
#: ``CDS_`` variables that are not settings but are read by someone else on purpose: the test
#: harness's PostgreSQL (``tests/``, ``scripts/test.sh``). Never warned about.
OTHER_CDS_VARIABLES = frozenset({"CDS_TEST_POSTGRES_URL"})


def default_data_dir() -> Path:
    """Where data lives when ``CDS_DATA_DIR`` is not set: the per-user data directory of the XDG
    Base Directory specification (``$XDG_DATA_HOME``, else ``~/.local/share``), never the folder
    the service happens to be started from. The Docker image sets ``CDS_DATA_DIR`` (its volume)."""
    xdg = os.environ.get("XDG_DATA_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / DATA_FOLDER_NAME
    try:
        home = Path.home()
    except RuntimeError:  # no HOME and no password entry (a container's numeric user)
        raise ConfigurationError(
            "no home folder to keep the SQLite database in: set CDS_DATA_DIR to a writable "
            "folder (or DATABASE_URL)"
        ) from None
    return home / ".local" / "share" / DATA_FOLDER_NAME


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
    )
    #: Folder of the default SQLite file (when no DATABASE_URL). Unset: the per-user data
    #: directory (``default_data_dir``); a relative path is taken from the start-up folder.
    data_dir: Path = Field(default_factory=default_data_dir)

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

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(sqlite|postgresql)(\+\w+)?://", value):
            raise ValueError(
                "not a SQLite or PostgreSQL URL: use postgresql+psycopg://USER@HOST:PORT/NAME "
                "or sqlite:////path/to/file.sqlite3"
            )
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
        """Unset: any origin in development; in production none, except the sandbox's own
        origin when the sandbox is trusted (its calls come from a browser page)."""
        if self.cors_origins is None:
            if self.environment == "development":
                return ["*"]
            return [SANDBOX_ORIGIN] if self.trust_sandbox else []
        return list(self.cors_origins)

    def data_folder(self) -> Path:
        """``data_dir`` as an absolute path (what the start-up log and ``/readyz`` name)."""
        return self.data_dir.expanduser().absolute()

    def sqlite_default_url(self) -> str:
        """The embedded default: a SQLite file under ``data_dir``, which is created if need be."""
        folder = self.data_folder()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"data folder {folder} cannot be created ({exc.strerror or exc}): set "
                "CDS_DATA_DIR to a writable folder, or DATABASE_URL"
            ) from None
        return f"sqlite:///{folder.resolve() / 'cds_service.sqlite3'}"

    def database(self) -> str:
        return self.database_url or self.sqlite_default_url()

    def database_source(self) -> str:
        """Which setting chose the database, for error messages: the variable that was set."""
        if self.database_url is None:
            return f"CDS_DATA_DIR ({self.data_folder()})"
        return "DATABASE_URL" if "DATABASE_URL" in os.environ else environment_name("database_url")


#: Environment variables named by their own name rather than ``CDS_`` + the field's name.
_ALIASES = {"database_url": "DATABASE_URL", "metrics_dir": "PROMETHEUS_MULTIPROC_DIR"}


def environment_name(field: str) -> str:
    """The environment variable that sets ``field`` (a field name, or the alias pydantic
    reports a value under). ``DATABASE_URL`` is named as set: ``CDS_DATABASE_URL`` is its
    alternative spelling."""
    key = field.lower()
    if key in ("database_url", "cds_database_url") and "DATABASE_URL" not in os.environ:
        return "CDS_DATABASE_URL" if "CDS_DATABASE_URL" in os.environ else "DATABASE_URL"
    if key.startswith("cds_"):
        key = key[4:]
    return _ALIASES.get(key, f"CDS_{key.upper()}")


def known_variables() -> frozenset[str]:
    """Every ``CDS_`` variable the service reads."""
    names = {f"CDS_{field.upper()}" for field in Settings.model_fields}
    return frozenset(names | {"CDS_DATABASE_URL"} | OTHER_CDS_VARIABLES)


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """One warning per ``CDS_`` variable that is no setting (a typo is otherwise silently
    ignored), naming the closest known one: ``CDS_REQUIRE_AUTHH is not a setting: did you mean
    CDS_REQUIRE_AUTH?``"""
    known = known_variables()
    warnings = []
    for name in sorted(os.environ if environ is None else environ):
        if not name.startswith("CDS_") or name in known:
            continue
        close = difflib.get_close_matches(name, sorted(known - OTHER_CDS_VARIABLES), n=1)
        hint = f"did you mean {close[0]}?" if close else "see README 'Configuration'"
        warnings.append(f"{name} is not a setting and is ignored: {hint}")
    return warnings


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment (and ``overrides``); a bad value names its variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "settings"
            message = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"{environment_name(field)}: {message}")
        raise ConfigurationError("invalid settings: " + "; ".join(problems)) from None
    except ValueError as exc:  # e.g. a list setting that is not valid JSON
        raise ConfigurationError(f"invalid settings: {exc}") from None
