"""Settings from the environment (prefix ``CDS_``), with safe defaults and no secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """One object for all configuration; tests pass their own instead of the environment."""

    model_config = SettingsConfigDict(env_prefix="CDS_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    #: Folder holding services/ and knowledge/; default: the packaged or repository hooks/.
    hooks_dir: Path | None = None
    #: Largest request body accepted, in bytes (413 above it).
    max_body_bytes: int = Field(default=5 * 1024 * 1024, gt=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: Browser origins allowed by CORS (the CDS Hooks sandbox is a browser app), comma-separated.
    #: Unset: "*" in development, none in production.
    cors_origins: str | None = None

    #: FHIR base URLs the service may fetch from, comma-separated prefixes, or "loopback".
    #: Unset: "loopback" in development, nothing in production.
    fhir_allowlist: str | None = None
    fhir_connect_timeout: float = Field(default=0.5, gt=0, le=10)
    fhir_read_timeout: float = Field(default=1.5, gt=0, le=30)
    #: Overall time for all FHIR fetches of one hook call, in seconds.
    fhir_deadline: float = Field(default=2.0, gt=0, le=30)
    fhir_max_pages: int = Field(default=5, ge=1, le=100)
    fhir_max_bytes: int = Field(default=20 * 1024 * 1024, gt=0)

    #: Require a valid client JWT on hook and feedback calls. Unset: on in production only.
    require_auth: bool | None = None
    #: Trusted issuers as JSON: [{"iss", "jwks_url" | "jwks_file", "allowed_jku": [...]}].
    trusted_issuers: str | None = None
    trusted_issuers_file: Path | None = None
    #: Opt in to the public CDS Hooks sandbox (issuer https://sandbox.cds-hooks.org), whose
    #: published JWKS ships with the service.
    trust_sandbox: bool = False
    #: The URL clients call, e.g. https://cds.example.org (proxies change host and scheme);
    #: the JWT's aud must equal this base plus the path called. Unset: the URL as received.
    public_base_url: str | None = None
    jwt_leeway_seconds: float = Field(default=30.0, ge=0, le=300)

    #: SQLAlchemy URL of the feedback store (DATABASE_URL), e.g.
    #: postgresql+psycopg://user@host/db. Unset: a SQLite file under ``data_dir``.
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "CDS_DATABASE_URL")
    )
    data_dir: Path = Path("var")

    def auth_required(self) -> bool:
        if self.require_auth is None:
            return self.environment == "production"
        return self.require_auth

    def allowed_fhir_servers(self) -> str:
        if self.fhir_allowlist is None:
            return "loopback" if self.environment == "development" else ""
        return self.fhir_allowlist

    def allowed_origins(self) -> list[str]:
        if self.cors_origins is None:
            return ["*"] if self.environment == "development" else []
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]
