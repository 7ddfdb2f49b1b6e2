"""Application factory: ``create_app(settings)`` builds the Flask app around one CdsEngine.

Building the app has no global side effects: it neither configures logging (the entry points
do: gunicorn's configuration, the command line) nor creates database tables (``initialise``,
an explicit step run once at start-up).
"""

from __future__ import annotations

import traceback
from typing import Any

import orjson
import structlog
from flask import Flask, Response, current_app, jsonify, request
from flask.json.provider import DefaultJSONProvider
from flask.typing import ResponseReturnValue
from flask_cors import CORS
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from cds_service.config import Settings, load_settings
from cds_service.contract.errors import (
    CdsError,
    ConfigurationError,
    DatabaseUnavailableError,
    UnauthorizedError,
)
from cds_service.engine import CdsEngine
from cds_service.fhir.allowlist import AllowList
from cds_service.fhir.circuit import CircuitBreakers
from cds_service.fhir.client import FetchLimits, FhirFetcher
from cds_service.fhir.fact_cache import FactCache
from cds_service.knowledge.loader import load_knowledge
from cds_service.knowledge.site import load_site
from cds_service.store.card_log import CardLog
from cds_service.store.pseudonyms import KEY_NAME as PSEUDONYM_KEY
from cds_service.store.pseudonyms import Pseudonyms
from cds_service.store.storage import (
    Database,
    FeedbackStore,
    IssuedCardStore,
    ReplayStore,
    SnoozeStore,
)
from cds_service.web.auth import install_authentication
from cds_service.web.feedback import blueprint as feedback_blueprint
from cds_service.web.guidance import blueprint as guidance_blueprint
from cds_service.web.health import blueprint as health_blueprint
from cds_service.web.metrics import install_metrics
from cds_service.web.openapi import blueprint as openapi_blueprint
from cds_service.web.runtime import Runtime
from cds_service.web.security import ClientVerifier, load_trusted_issuers
from cds_service.web.services import blueprint as services_blueprint
from cds_service.web.snooze import StoreSnooze

log = structlog.get_logger("cds_service.app")


def initialise(settings: Settings) -> None:
    """The one-time start-up step: create the database tables if they do not exist. A database
    that cannot be used stops start-up in one line naming the setting that chose it."""
    try:
        database = Database(settings.database())
        try:
            database.create_schema()
        finally:
            database.dispose()
    except DatabaseUnavailableError as exc:
        raise DatabaseUnavailableError(f"{exc} (check {settings.database_source()})") from exc


def _check_folders(settings: Settings) -> None:
    """A configured folder that is not there is named with its variable and what to do."""
    folders = {
        "CDS_HOOKS_DIR": (settings.hooks_dir, "unset it to use the packaged knowledge"),
        "CDS_SITE_DIR": (settings.site_dir, "unset it to run without a site configuration"),
    }
    for variable, (folder, remedy) in folders.items():
        if folder is not None and not folder.is_dir():
            raise ConfigurationError(
                f"{variable}={folder}: no such folder ({remedy}, or name an existing folder)"
            )


def build_engine(settings: Settings) -> CdsEngine:
    """The engine for these settings: hooks/ knowledge and the site folder, both validated."""
    _check_folders(settings)
    knowledge = load_knowledge(settings.hooks_dir)
    site = load_site(settings.site_dir, knowledge.imaging.study_keys())
    cache = (
        FactCache(
            settings.fact_cache_entries,
            settings.fact_cache_ttl,
            max_bytes=settings.fact_cache_bytes,
        )
        if settings.fact_cache
        else None
    )
    return CdsEngine(knowledge, max_orders=settings.max_orders, site=site, fact_cache=cache)


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app. Knowledge is loaded and validated here: bad knowledge stops start-up."""
    settings = settings or load_settings()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json = OrjsonProvider(app)
    database = Database(settings.database())
    issuers = load_trusted_issuers(settings)
    if settings.auth_required() and not issuers:
        raise ConfigurationError(
            "authentication is required (CDS_REQUIRE_AUTH, on in production) but no trusted "
            "issuer is configured: set CDS_TRUSTED_ISSUERS or CDS_TRUSTED_ISSUERS_FILE, or "
            "CDS_TRUST_SANDBOX=true, or CDS_REQUIRE_AUTH=false"
        )
    engine = build_engine(settings)
    log.info(
        "storage",
        database=database.location,
        data_dir=None if settings.database_url else str(settings.data_folder()),
    )
    log.info(
        "knowledge",
        version=engine.version,
        site=str(settings.site_dir) if settings.site_dir else None,
        silent_rules=sorted(r for r, m in engine.site.rule_modes.items() if m == "silent"),
        off_rules=sorted(r for r, m in engine.site.rule_modes.items() if m == "off"),
    )
    pseudonyms = Pseudonyms(lambda: database.secret(PSEUDONYM_KEY))
    engine.pseudonym_key = pseudonyms.key
    Runtime(
        settings=settings,
        pseudonyms=pseudonyms,
        engine=engine,
        fetcher=FhirFetcher(
            AllowList(settings.allowed_fhir_servers()),
            FetchLimits(
                connect_timeout=settings.fhir_connect_timeout,
                read_timeout=settings.fhir_read_timeout,
                deadline=settings.fhir_deadline,
                max_pages=settings.fhir_max_pages,
                max_bytes=settings.fhir_max_bytes,
            ),
            CircuitBreakers(
                settings.fhir_breaker_failures,
                settings.fhir_breaker_window,
                settings.fhir_breaker_cool_off,
            ),
            slots=settings.fhir_slots,
        ),
        database=database,
        feedback=FeedbackStore(database),
        card_log=CardLog(IssuedCardStore(database, engine.version)),
        verifier=ClientVerifier(
            issuers, leeway=settings.jwt_leeway_seconds, replays=ReplayStore(database)
        ),
        snooze=StoreSnooze(SnoozeStore(database)),
        readiness={"database": database.reachable},
    ).attach(app)
    install_metrics(app)
    install_authentication(app)
    app.register_blueprint(services_blueprint)
    app.register_blueprint(feedback_blueprint)
    app.register_blueprint(health_blueprint)
    app.register_blueprint(openapi_blueprint)
    app.register_blueprint(guidance_blueprint)
    _enable_cors(app, settings)
    _register_error_handlers(app)
    return app


class OrjsonProvider(DefaultJSONProvider):
    """JSON in and out with orjson: a 700 KiB prefetch parses ~5x faster than with json, and a
    response is serialised once, by orjson, straight to bytes.

    orjson refuses what JSON forbids anyway (NaN) and integers beyond 64 bits; either is a 400.
    Responses keep their keys in the order built and write non-ASCII text as UTF-8 (Flask's
    default sorts keys and escapes it: the same JSON). Dates, dataclasses and whatever else
    orjson does not take itself are written as Flask writes them, and so is JSON past orjson's
    limits (the test client writes deliberately deep request bodies with this provider).
    """

    sort_keys = False
    _OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:  # noqa: ARG002 - Flask's signature
        return orjson.loads(s)

    def dumps(self, obj: Any, **kwargs: Any) -> str:  # noqa: ARG002 - Flask's signature
        return self._bytes(obj).decode("utf-8")

    def response(self, *args: Any, **kwargs: Any) -> Response:
        obj = self._prepare_response_obj(args, kwargs)
        return Response(self._bytes(obj), mimetype=self.mimetype)

    def _bytes(self, obj: Any) -> bytes:
        try:
            return orjson.dumps(obj, default=self.default, option=self._OPTIONS)
        except TypeError:  # past orjson's limits (nesting, big integers): Flask's own writer
            return super().dumps(obj).encode("utf-8")


def _enable_cors(app: Flask, settings: Settings) -> None:
    """CORS for browser CDS clients (CDS Hooks 2.0 "Cross-Origin Resource Sharing").

    Applies to every /cds-services endpoint, errors included, so a browser sees a 4xx body
    instead of an opaque network error. Private-network preflights are answered so a public
    sandbox page may call a service on localhost.
    """
    origins = settings.allowed_origins()
    if not origins:
        return
    CORS(
        app,
        resources={r"/cds-services*": {"origins": origins}},
        methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type"],
        max_age=600,
        allow_private_network=True,
    )


def code_frames(exc: BaseException) -> list[str]:
    """Where an exception was raised, as ``file:line in function`` frames: the stack of a 500
    without its message or local values, which may carry request (patient) data."""
    return [
        f"{frame.filename.rsplit('/', 2)[-1]}:{frame.lineno} in {frame.name}"
        for frame in traceback.extract_tb(exc.__traceback__)
    ]


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(CdsError)
    def _cds_error(exc: CdsError) -> ResponseReturnValue:
        response = jsonify(exc.to_json())
        if isinstance(exc, UnauthorizedError):
            log.info("unauthorized", path=request.path, reason=exc.message)
            response.headers["WWW-Authenticate"] = exc.challenge
        return response, exc.status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> ResponseReturnValue:
        code = exc.code or 500
        name = (exc.name or "error").lower().replace(" ", "-")
        body: dict[str, object] = {"error": name, "message": exc.description or exc.name}
        if isinstance(exc, RequestEntityTooLarge):  # say what the limit is, in bytes
            limit = current_app.config["MAX_CONTENT_LENGTH"]
            body["message"] = f"The request body is larger than the limit of {limit} bytes"
            body["limitBytes"] = limit
        response = jsonify(body)
        for header, value in exc.get_headers():  # e.g. Allow on 405 (RFC 9110)
            if header.lower() != "content-type":
                response.headers[header] = value
        return response, code

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> ResponseReturnValue:
        # The type and the code frames, never the message: it may carry request data.
        log.error(
            "unhandled", path=request.path, error_type=type(exc).__name__, frames=code_frames(exc)
        )
        return jsonify({"error": "internal-error", "message": "Internal error"}), 500
