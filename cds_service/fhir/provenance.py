"""Is a prefetched Bundle the result of the prefetch template it is sent for?

CDS Hooks 2.0 ("Prefetch"): a prefetch value is the result of the service's template for this
call. A searchset Bundle says which query produced it in ``link[relation=self]``; when that
query is another one (the Inferno CRD kit sends ``devices`` looked up by id, with no patient), the
Bundle is not the patient's list and taking it as such would hide what the patient has (a
pacemaker on the FHIR server went unseen and an MRI was suggested). Such a Bundle is treated as
missing. Without a self link nothing can be checked and the Bundle is used, as the spec intends.

The comparison is on meaning, not bytes: the resource type, and every template parameter with
its value (``patient=123`` and ``patient=Patient/123`` alike; percent-encoding decoded); paging
and format parameters a server adds are ignored; any other parameter makes it another query.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

#: Parameters a server adds to a search's self link that do not change what it selects.
_NEUTRAL = frozenset(
    {"_count", "_format", "_page", "page", "_getpages", "_getpagesoffset", "_pretty", "_total"}
)


def self_link(bundle: Mapping[str, Any]) -> str | None:
    links = bundle.get("link")
    if not isinstance(links, list):
        return None
    for link in links:
        if isinstance(link, dict) and link.get("relation") == "self":
            url = link.get("url")
            return url if isinstance(url, str) and url.strip() else None
    return None


def _query(url: str) -> tuple[str, dict[str, set[str]]] | None:
    """(resource type, parameters) of a search URL, absolute or relative; None if not one."""
    parts = urlsplit(url.strip())
    segments = [s for s in parts.path.split("/") if s]
    if segments and segments[-1] == "_search":  # POST Type/_search
        segments = segments[:-1]
    if not segments:
        return None
    params: dict[str, set[str]] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in _NEUTRAL:
            continue
        params.setdefault(name, set()).add(_reference_id(name, unquote(value)))
    return segments[-1], params


def _reference_id(name: str, value: str) -> str:
    """``patient=Patient/123`` and ``patient=123`` name the same patient."""
    if name in ("patient", "subject") and value.startswith("Patient/"):
        return value.removeprefix("Patient/")
    return value


def render(template: str, context: Mapping[str, Any]) -> str:
    """The template with its ``{{context.x}}`` tokens filled (unencoded: compared, not sent)."""
    rendered = template
    for key, value in context.items():
        if isinstance(value, str | int):
            rendered = rendered.replace("{{context." + key + "}}", str(value))
    return rendered


def answers_template(bundle: Mapping[str, Any], template: str, context: Mapping[str, Any]) -> bool:
    """False when the Bundle's self link names another query than ``template`` for this
    call; True when it names the same one, or has no self link (nothing to check)."""
    link = self_link(bundle)
    if link is None:
        return True
    sent, wanted = _query(link), _query(render(template, context))
    return sent is not None and sent == wanted
