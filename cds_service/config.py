"""Settings from the environment (prefix ``CDS_``), with safe defaults and no secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
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

    def allowed_origins(self) -> list[str]:
        if self.cors_origins is None:
            return ["*"] if self.environment == "development" else []
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]
