"""GET /guidance, /guidance/<rule>, /guidance/<rule>/<variant>: the pages the cards link to.

Static HTML built once per knowledge version (``cards.guidance_page``) from hooks/knowledge
alone: no patient data, no authentication (a clinician's browser opens them from the card),
cacheable by any cache (``Cache-Control: public``, an ETag of the knowledge version, 304 on a
matching ``If-None-Match``).
"""

from __future__ import annotations

from flask import Blueprint, Response, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import NotFound

from cds_service.cards.guidance_page import GUIDANCE_PATH, GuidancePage
from cds_service.web.runtime import runtime

blueprint = Blueprint("guidance", __name__)

#: A day: the pages change only with the knowledge version, which changes the ETag.
MAX_AGE_SECONDS = 86_400
#: Nothing on the page runs or loads: inline style only.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


def _served(page: GuidancePage) -> ResponseReturnValue:
    version = runtime().engine.guidance.version
    response = Response(page.html, mimetype="text/html")
    response.set_etag(version)
    response.cache_control.public = True
    response.cache_control.max_age = MAX_AGE_SECONDS
    response.headers["Content-Security-Policy"] = _CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response.make_conditional(request)


@blueprint.get(GUIDANCE_PATH)
def index() -> ResponseReturnValue:
    return _served(runtime().engine.guidance.index)


@blueprint.get(f"{GUIDANCE_PATH}/<rule>")
@blueprint.get(f"{GUIDANCE_PATH}/<rule>/<variant>")
def page(rule: str, variant: str | None = None) -> ResponseReturnValue:
    found = runtime().engine.guidance.get(request.path)
    if found is None:
        raise NotFound(f"No guidance page {rule}{'/' + variant if variant else ''}")
    return _served(found)
