"""A FHIR server stand-in on 127.0.0.1 for the fallback tests: a real HTTP server, not a patch.

It answers the service's prefetch queries with FHIR search semantics (``Type?patient=X`` over the
resources it holds, as searchset Bundles), pages with ``Bundle.link[next]`` when ``page_size`` is
set, can be slow, refuse (401/403/500) or answer an OperationOutcome, and records every request
with its Authorization header.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response


class _QuietHandler(WSGIRequestHandler):
    """No access log: the tests read ``FhirStandIn.seen`` instead."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:  # noqa: ARG002 - the base signature
        return


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    authorization: str | None


@dataclass
class Behaviour:
    page_size: int | None = None
    delay: float = 0.0
    status: int | None = None
    outcome_types: set[str] = field(default_factory=set)
    next_link_base: str | None = None  # send next links to another base (off-server test)
    next_link_path: str | None = None  # a next link to this path on this server instead
    body: Any = None  # answer every FHIR request with this JSON (bad shapes from a server)
    #: Extra search results by resource type, whoever they belong to (a misbehaving server).
    extra: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def _patient_of(resource: Mapping[str, Any]) -> str | None:
    for key in ("subject", "patient"):
        ref = (
            resource.get(key, {}).get("reference") if isinstance(resource.get(key), dict) else None
        )
        if isinstance(ref, str) and ref.startswith("Patient/"):
            return ref.split("/", 1)[1]
    return None


class FhirStandIn:
    def __init__(self, resources: Iterable[Mapping[str, Any]] = ()) -> None:
        self.resources: list[Mapping[str, Any]] = list(resources)
        #: Static JSON documents by path (e.g. a JWKS), served before any FHIR logic.
        self.documents: dict[str, Any] = {}
        self.behaviour = Behaviour()
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_port}/fhir"

    def start(self) -> FhirStandIn:
        self._server = make_server(
            "127.0.0.1", 0, self._app, threaded=True, request_handler=_QuietHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def reset(self, behaviour: Behaviour | None = None) -> None:
        with self._lock:
            self.seen.clear()
        self.behaviour = behaviour or Behaviour()

    def _app(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        response = self._answer(request)
        return response(environ, start_response)

    def _answer(self, request: Request) -> Response:
        with self._lock:
            self.seen.append(
                Seen(request.path, dict(request.args), request.headers.get("Authorization"))
            )
        if request.path in self.documents:
            return _json(self.documents[request.path], 200)
        behaviour = self.behaviour
        if behaviour.delay:
            time.sleep(behaviour.delay)
        if behaviour.status:
            return _json({"resourceType": "OperationOutcome", "issue": []}, behaviour.status)
        if behaviour.body is not None:
            return _json(behaviour.body, 200)
        parts = request.path.strip("/").split("/")
        if len(parts) < 2 or parts[0] != "fhir":
            return _json({"resourceType": "OperationOutcome", "issue": []}, 404)
        kind = parts[1]
        if kind in behaviour.outcome_types:
            outcome = {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "processing"}],
            }
            return _json(outcome, 200)
        if len(parts) == 3:  # read
            for r in self.resources:
                if r.get("resourceType") == kind and r.get("id") == parts[2]:
                    return _json(r, 200)
            return _json({"resourceType": "OperationOutcome", "issue": []}, 404)
        patient = request.args.get("patient")
        matches = [
            r for r in self.resources if r.get("resourceType") == kind and _patient_of(r) == patient
        ]
        page = int(request.args.get("_page", "1"))
        size = behaviour.page_size or max(len(matches), 1)
        chunk = matches[(page - 1) * size : page * size] + behaviour.extra.get(kind, [])
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(matches),
            "entry": [{"resource": r, "search": {"mode": "match"}} for r in chunk],
        }
        if behaviour.next_link_path is not None and page == 1:
            origin = self.base.removesuffix("/fhir")
            bundle["link"] = [{"relation": "next", "url": origin + behaviour.next_link_path}]
        elif page * size < len(matches):
            base = behaviour.next_link_base or self.base
            bundle["link"] = [
                {"relation": "next", "url": f"{base}/{kind}?patient={patient}&_page={page + 1}"}
            ]
        return _json(bundle, 200)


def _json(body: Any, status: int) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/fhir+json")
