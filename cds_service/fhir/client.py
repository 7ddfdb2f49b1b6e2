"""Fetch missing prefetch data from the EHR's FHIR server (CDS Hooks 2.0 "Prefetch").

Only allow-listed base URLs are contacted. Keys are fetched in parallel over pooled connections,
with a fresh ``requests.Session`` per call that keeps no cookie and ignores the environment
(``trust_env`` off: no ``.netrc`` credentials, no proxy variables): nothing one caller's fetch
leaves behind (a cookie the FHIR server set) can ride along on another caller's. Searches
follow ``Bundle.link[next]`` (on the same base) up to a page limit; every HTTP call has
connect/read timeouts and the whole fetch an overall deadline, read in chunks so that a slow
or endless body cannot hold a request past it.
"""

from __future__ import annotations

import copy
import hashlib
import http.cookiejar
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import orjson
import requests
import structlog
import urllib3
from requests.adapters import HTTPAdapter

from cds_service.contract.errors import ServiceError
from cds_service.fhir.allowlist import AllowList
from cds_service.fhir.circuit import CircuitBreakers, counts_against_server
from cds_service.fhir.json_limits import too_deep
from cds_service.fhir.searchset import searchset_error

log = structlog.get_logger("cds_service.fhir")


class FetchFailedError(ServiceError):
    """One prefetch key could not be fetched; ``reason`` is a short code for the 412 body."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class FetchLimits:
    connect_timeout: float = 0.5
    read_timeout: float = 1.5
    deadline: float = 2.0
    max_pages: int = 5
    max_bytes: int = 20 * 1024 * 1024


@dataclass
class FetchResult:
    resources: dict[str, list[Mapping[str, Any]]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


def render_template(template: str, context: Mapping[str, Any]) -> str:
    """Fill ``{{context.x}}`` tokens with URL-encoded context values (primitives only)."""
    rendered = template
    for key, value in context.items():
        token = "{{context." + key + "}}"
        if token in rendered and isinstance(value, str | int):
            rendered = rendered.replace(token, quote(str(value), safe=""))
    if "{{" in rendered:
        raise FetchFailedError("template-token-unavailable")
    return rendered


class FhirFetcher:
    """One per process: pooled connections (a fresh session per call), a bounded set of fetch
    slots, and a circuit breaker per FHIR server.

    Waiting on a slow FHIR server must not take the threads that answer other calls: a fetch
    runs only in a free slot (none free: the key fails at once as ``fhir-busy``, it is never
    queued behind a hung server), stops reading when the call's deadline passes, and a server
    that keeps failing is not contacted at all for a cool-off (``circuit-open``).
    """

    def __init__(
        self,
        allow: AllowList,
        limits: FetchLimits,
        breakers: CircuitBreakers | None = None,
        slots: int = 32,
    ) -> None:
        self.allow = allow
        self.limits = limits
        self.breakers = breakers if breakers is not None else CircuitBreakers()
        #: Called with the reason whenever a key is not fetched without trying (metrics).
        self.on_skipped: Callable[[str], None] = lambda _reason: None
        #: The connection pools, shared by every call's own session (a pooled connection
        #: carries no state of its caller: headers are sent per request).
        self._adapter = HTTPAdapter(pool_connections=8, pool_maxsize=slots, max_retries=0)
        self._slots = threading.BoundedSemaphore(slots)
        self._pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="fhir-fetch")

    def allowed(self, base: str) -> bool:
        return self.allow.allows(base)

    def for_issuer(self, servers: AllowList | None) -> FhirFetcher:
        """This fetcher (its pools, slots and breakers shared) limited to the FHIR servers of
        the issuer that signed the call; None: not limited (no issuer, or development)."""
        if servers is None:
            return self
        view = copy.copy(self)
        view.allow = self.allow.narrowed(servers)
        return view

    def _new_session(self) -> requests.Session:
        """One call's session: no cookie kept or sent, nothing taken from the environment."""
        session = requests.Session()
        session.trust_env = False  # no .netrc Basic credentials, no proxies from the env
        session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        session.mount("http://", self._adapter)
        session.mount("https://", self._adapter)
        return session

    def fetch(
        self,
        base: str,
        templates: Mapping[str, str],
        context: Mapping[str, Any],
        access_token: str | None,
    ) -> FetchResult:
        """Fetch every key of ``templates``; keys that fail are in ``failures``, never partial."""
        result = FetchResult()
        if not self.allowed(base):
            result.failures = dict.fromkeys(templates, "fhir-server-not-allowed")
            return result
        if not self.breakers.allow(base):
            result.failures = dict.fromkeys(templates, "circuit-open")
            for _ in templates:
                self.on_skipped("circuit-open")
            return result
        deadline = time.monotonic() + self.limits.deadline
        headers = {"Accept": "application/fhir+json, application/json"}
        if access_token:
            headers["Authorization"] = f"Bearer {access_token}"
        futures: dict[str, Future[list[Mapping[str, Any]]]] = {}
        session = self._new_session()
        for key, template in templates.items():
            try:
                url = f"{base.rstrip('/')}/{render_template(template, context)}"
            except FetchFailedError as exc:
                result.failures[key] = exc.reason
                continue
            if not self._slots.acquire(blocking=False):
                result.failures[key] = "fhir-busy"  # never queue behind a hung server
                self.on_skipped("fhir-busy")
                continue
            future = self._pool.submit(self._fetch_key, session, base, url, headers, deadline)
            future.add_done_callback(lambda _f: self._slots.release())
            futures[key] = future
        wait(futures.values(), timeout=max(0.0, deadline - time.monotonic()) + 0.05)
        for key, future in futures.items():
            if not future.done():
                result.failures[key] = "timeout"  # its thread stops at the deadline too
                continue
            try:
                result.resources[key] = future.result()
            except FetchFailedError as exc:
                result.failures[key] = exc.reason
            except Exception as exc:  # a defect must cost this key, never the call (no 500)
                log.error("fetch-failed", key=key, error_type=type(exc).__name__)
                result.failures[key] = "internal-error"
        if futures:
            unwell = any(counts_against_server(r) for r in result.failures.values())
            self.breakers.record(base, healthy=not unwell, who=_who(context))
        else:
            self.breakers.unused(base)
        return result

    def _fetch_key(
        self,
        session: requests.Session,
        base: str,
        url: str,
        headers: Mapping[str, str],
        deadline: float,
    ) -> list[Mapping[str, Any]]:
        resources: list[Mapping[str, Any]] = []
        next_url: str | None = url
        pages = 0
        while next_url is not None:
            if pages >= self.limits.max_pages:
                raise FetchFailedError("too-many-pages")  # an incomplete record is no record
            if not next_url.startswith(base.rstrip("/") + "/"):
                raise FetchFailedError("next-link-off-server")
            if not self.allow.allows(next_url, query=True):
                raise FetchFailedError("url-not-allowed")  # every URL requested is checked
            body = self._get_json(session, next_url, headers, deadline)
            pages += 1
            kind = body.get("resourceType") if isinstance(body, dict) else None
            if kind == "OperationOutcome" or not isinstance(kind, str):
                raise FetchFailedError(
                    "operation-outcome" if kind == "OperationOutcome" else "not-fhir"
                )
            if too_deep(body) is not None:
                raise FetchFailedError("too-deeply-nested")
            if kind != "Bundle":
                return [body]
            entries = body.get("entry")
            if entries is not None and not isinstance(entries, list):
                raise FetchFailedError("bundle-entry-not-an-array")
            if searchset_error(body):
                raise FetchFailedError("incomplete-searchset")  # an error entry: not "none"
            for entry in entries or []:
                resource = entry.get("resource") if isinstance(entry, dict) else None
                if (
                    isinstance(resource, dict)
                    and resource.get("resourceType") != "OperationOutcome"
                ):
                    resources.append(resource)  # wrong shapes inside: skipped by the reader
            next_url = _next_link(body)
        return resources

    def _get_json(
        self, session: requests.Session, url: str, headers: Mapping[str, str], deadline: float
    ) -> Any:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchFailedError("timeout")
        timeout = (
            min(self.limits.connect_timeout, remaining),
            min(self.limits.read_timeout, remaining),
        )
        try:
            with session.get(
                url, headers=dict(headers), timeout=timeout, stream=True, allow_redirects=False
            ) as response:
                if response.status_code in (401, 403):
                    raise FetchFailedError("unauthorized")
                if response.status_code != 200:
                    raise FetchFailedError(f"http-{response.status_code}")
                body = self._read_body(response.raw, deadline)
        except requests.Timeout:
            raise FetchFailedError("timeout") from None
        except _NOT_SENT:
            raise FetchFailedError("request-invalid") from None  # the caller's, not the server's
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError):
            raise FetchFailedError("unreachable") from None
        try:
            return orjson.loads(body)  # refuses nesting beyond 1,024 levels too
        except orjson.JSONDecodeError:
            raise FetchFailedError("not-json") from None

    def _read_body(self, raw: urllib3.BaseHTTPResponse, deadline: float) -> bytes:
        """Read the body a socket read at a time, each bounded by what is left of the deadline,
        so a server that drips its body is cut at the deadline and its connection closed (by
        leaving the ``with`` block unread): no thread reads on after the call has answered."""
        chunks: list[bytes] = []
        size = 0
        sock = getattr(getattr(raw, "connection", None), "sock", None)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FetchFailedError("timeout")
            if sock is not None:
                sock.settimeout(min(self.limits.read_timeout, remaining))
            try:
                chunk = raw.read1(64 * 1024)
            except urllib3.exceptions.ReadTimeoutError:
                raise FetchFailedError("timeout") from None
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > self.limits.max_bytes:
                raise FetchFailedError("response-too-large")
            chunks.append(chunk)


#: Failures before anything reached the server (a header or URL that cannot be sent): they say
#: nothing about the server's health and never count against it.
_NOT_SENT = (
    requests.exceptions.InvalidHeader,
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidSchema,
    requests.exceptions.MissingSchema,
    UnicodeError,
    ValueError,
)


def _who(context: Mapping[str, Any]) -> str | None:
    """Which patient a call is about, hashed (the breaker counts a patient's failures once)."""
    patient = context.get("patientId")
    if not isinstance(patient, str):
        return None
    return hashlib.sha256(patient.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _next_link(bundle: Mapping[str, Any]) -> str | None:
    links = bundle.get("link")
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("relation") == "next":
            url = link.get("url")
            return url if isinstance(url, str) and url else None
    return None
