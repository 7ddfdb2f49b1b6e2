"""Replay a hook request, or a FHIR Bundle plus a draft order, and print the cards readably.

Used from the command line (``salivary-cds replay``) and by the tests. The request goes through
the same CdsEngine as the HTTP endpoint, or to a running service when a URL is given.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests

from cds_service.contract.errors import CdsError, InputFileError
from cds_service.engine import CdsEngine
from cds_service.fhir import build as fhir_build
from cds_service.knowledge.loader import ServiceDefinition

#: The public URL in-process answers link their cards' guidance pages under: the address
#: ``salivary-cds serve`` listens on by default (a running service uses its own URL).
LOCAL_PUBLIC_URL = "http://127.0.0.1:8080"


class ReplayError(InputFileError):
    """The input file cannot be turned into a hook request."""


def load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReplayError(f"{path}: cannot read JSON ({exc})") from exc


def draft_order(
    patient_id: str, text: str | None, cpt: str | None, draft: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The draft ServiceRequest to replay: a file's, or one made from a name and/or CPT code."""
    if draft is not None:
        if draft.get("resourceType") != "ServiceRequest" or not draft.get("id"):
            raise ReplayError("--draft must hold a ServiceRequest with an id")
        return dict(draft)
    if not text and not cpt:
        raise ReplayError("replaying a Bundle needs --order-text, --order-cpt or --draft")
    return fhir_build.draft_order(patient_id, "replay-draft-1", text=text, cpt=cpt)


def _template_type(template: str) -> str:
    match = re.match(r"^([A-Za-z]+)", template)
    return match.group(1) if match else ""


def request_from_bundle(
    service: ServiceDefinition,
    bundle: Mapping[str, Any],
    order: Mapping[str, Any] | None,
    order_text: str | None = None,
    order_cpt: str | None = None,
    user_id: str = "Practitioner/replay",
) -> dict[str, Any]:
    """Build a complete hook request from a Bundle of the patient's record.

    Each prefetch key gets the Bundle's resources of its template's type, as a searchset.
    """
    resources = [
        e["resource"]
        for e in bundle.get("entry") or []
        if isinstance(e, dict) and isinstance(e.get("resource"), dict)
    ]
    patients = [r for r in resources if r.get("resourceType") == "Patient"]
    if len(patients) != 1 or not patients[0].get("id"):
        raise ReplayError("the Bundle must hold exactly one Patient with an id")
    patient_id = str(patients[0]["id"])
    draft = draft_order(patient_id, order_text, order_cpt, order)
    prefetch: dict[str, Any] = {}
    for key, template in service.prefetch.items():
        kind = _template_type(template)
        if "?" not in template:
            prefetch[key] = patients[0] if kind == "Patient" else None
            continue
        matching = [r for r in resources if r.get("resourceType") == kind]
        prefetch[key] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(matching),
            "entry": [{"resource": r} for r in matching],
        }
    return {
        "hook": service.hook,
        "hookInstance": "replay-00000000-0000-4000-8000-000000000000",
        "context": {
            "userId": user_id,
            "patientId": patient_id,
            "selections": [f"ServiceRequest/{draft['id']}"],
            "draftOrders": {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": draft}],
            },
        },
        "prefetch": prefetch,
    }


def run_local(engine: CdsEngine, service_id: str, request: Any) -> tuple[int, dict[str, Any]]:
    """Answer through the in-process engine, as the HTTP endpoint would."""
    try:
        outcome = engine.evaluate(service_id, request, guidance_base=LOCAL_PUBLIC_URL)
        return 200, outcome.response.to_json()
    except CdsError as exc:
        return exc.status, exc.to_json()


def run_remote(
    base_url: str, service_id: str, request: Any, timeout: float = 10.0
) -> tuple[int, Any]:
    """POST to a running service; the answer is returned whatever its status."""
    url = f"{base_url.rstrip('/')}/cds-services/{service_id}"
    try:
        response = requests.post(url, json=request, timeout=timeout)
    except requests.RequestException as exc:
        raise ReplayError(f"cannot reach {url}: {type(exc).__name__}") from exc
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, {"error": "not-json", "message": response.text[:500]}


def _action_target(action: Mapping[str, Any]) -> str:
    if action.get("resourceId"):
        return str(action["resourceId"])
    resource = action.get("resource", {})
    if action.get("type") == "update" and resource.get("id"):
        return f"{resource.get('resourceType')}/{resource['id']}"
    return str(resource.get("code", {}).get("text", ""))


def format_response(status: int, body: Any) -> str:
    """Human-readable text of a CDS Hooks response or error."""
    if status != 200:
        return f"HTTP {status}: {json.dumps(body, indent=2)}"
    cards = body.get("cards", [])
    if not cards:
        return "No cards: the service has no advice here."
    blocks: list[str] = []
    for number, card in enumerate(cards, 1):
        lines = [f"[{number}] {card['indicator'].upper()}: {card['summary']}"]
        if card.get("detail"):
            lines.append(textwrap.indent(card["detail"], "    "))
        source = card.get("source", {})
        lines.append(f"    Source: {source.get('label', '')} {source.get('url', '')}".rstrip())
        for suggestion in card.get("suggestions", []):
            mark = " (recommended)" if suggestion.get("isRecommended") else ""
            lines.append(f"    Suggestion{mark}: {suggestion['label']}")
            for action in suggestion.get("actions", []):
                target = _action_target(action)
                lines.append(f"      - {action['type']} {target}: {action['description']}")
        reasons = [r["display"] for r in card.get("overrideReasons", [])]
        if reasons:
            lines.append("    Override reasons: " + "; ".join(reasons))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
