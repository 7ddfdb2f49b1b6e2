"""Whether a search Bundle is the whole answer: an incomplete one must never read as "none".

A server that could not finish a search says so inside the Bundle: an OperationOutcome entry
with an issue of severity ``error`` or ``fatal`` (FHIR R4 "Search" 3.1.1.4.5: ``search.mode``
``outcome``), or a ``next`` link to the pages not sent. Read as "complete, none found", a devices
search whose pacemaker is on page 2 lets the service say "switch to MRI"; an allergy search that
failed lets it suggest contrast. Such a Bundle is "could not be read", exactly as a failed fetch:
the card says less, and says what it could not check. Informational and warning outcomes
(servers add them to complete answers) do not make a Bundle incomplete.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_FAILED = frozenset({"error", "fatal"})


def searchset_error(bundle: Mapping[str, Any]) -> bool:
    """Does an entry of ``bundle`` hold an OperationOutcome with an error or fatal issue?"""
    entries = bundle.get("entry")
    for entry in entries if isinstance(entries, list) else []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or resource.get("resourceType") != "OperationOutcome":
            continue
        issues = resource.get("issue")
        if not isinstance(issues, list) or not issues:
            return True  # an outcome that says nothing readable: not a complete answer
        if any(isinstance(i, dict) and i.get("severity") in _FAILED for i in issues):
            return True
        if any(not isinstance(i, dict) or not isinstance(i.get("severity"), str) for i in issues):
            return True
    return False


def has_next_page(bundle: Mapping[str, Any]) -> bool:
    """Does ``bundle`` link to a next page (results it did not send)?"""
    links = bundle.get("link")
    return any(
        isinstance(link, dict) and link.get("relation") == "next"
        for link in (links if isinstance(links, list) else [])
    )


def incomplete(bundle: Mapping[str, Any]) -> str | None:
    """Why a prefetched Bundle is not the whole answer (None when it is)."""
    if searchset_error(bundle):
        return "incomplete-searchset"
    if has_next_page(bundle):
        return "unfollowed-next-link"
    return None
