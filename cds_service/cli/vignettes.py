"""Clinical vignettes as data: fhir_examples/vignettes.json -> complete hook requests, and the
golden responses they must get.

Each vignette is a short declarative entry: the patient, resources in a compact form (codes by
name such as ``"ICD-10-CM C07"``, dates relative to the file's fixed "today" such as
``"today-2y9m18d"``), the draft orders, and the expected rule ids. Codes are looked up in the
service's knowledge and in fhir_examples/background-codes.json, so a display is never copied.
``salivary-cds vignettes`` writes the request files and the golden responses; with ``--check``
it fails when the committed files differ from what the data and the engine produce now.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from cds_service.cli.replay import LOCAL_PUBLIC_URL
from cds_service.contract.errors import CdsError, InputFileError
from cds_service.engine import CdsEngine, snooze_key
from cds_service.fhir import build as fb
from cds_service.fhir.records import shift_months
from cds_service.knowledge.clients import DEFAULT_PROFILE
from cds_service.knowledge.loader import Knowledge
from cds_service.knowledge.rules import RuleId

_RELATIVE = re.compile(r"^today(?:([+-])(?:(\d+)y)?(?:(\d+)m)?(?:(\d+)w)?(?:(\d+)d)?)?$")


def packaged_examples_dir() -> Path:
    """fhir_examples/ as an installed wheel holds it (``cds_service/_examples``)."""
    return Path(__file__).resolve().parents[1] / "_examples"


def default_examples_dir() -> Path:
    """The installed wheel's copy of fhir_examples/, else the repository's (editable installs):
    so ``vignettes --check`` and ``cards --html`` work from any folder."""
    packaged = packaged_examples_dir()
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "fhir_examples"


def resolve_date(text: str, today: date) -> str:
    """``today``, ``today-2y9m18d``, ``today+6w``: years and months first, then weeks and days."""
    match = _RELATIVE.match(text)
    if match is None:
        raise InputFileError(f"{text!r} is not a date relative to today (e.g. 'today-2y3m4d')")
    sign, years, months, weeks, days = match.groups()
    factor = -1 if sign == "-" else 1
    moved = shift_months(today, factor * (12 * int(years or 0) + int(months or 0)))
    moved += timedelta(days=factor * (7 * int(weeks or 0) + int(days or 0)))
    return moved.isoformat()


class Codebook:
    """Codes by name ("ICD-10-CM C07"): system from the file's system table, display from the
    knowledge or from background-codes.json (each checked against its named source)."""

    def __init__(self, systems: Mapping[str, str], displays: Mapping[tuple[str, str], str]):
        self._systems = dict(systems)
        self._displays = dict(displays)

    @classmethod
    def of(cls, knowledge: Knowledge, systems: Mapping[str, str], background: Path) -> Codebook:
        displays: dict[tuple[str, str], str] = {}
        for name in knowledge.valuesets.names:
            displays.update(
                {(c.system, c.code): c.display for c in knowledge.valuesets.concepts(name)}
            )
        displays.update({(o.system, o.code): o.display for o in knowledge.imaging.codedOrderables})
        for order in knowledge.cards.orders.values():
            displays.update({(c.system, c.code): c.display for c in order.coding})
        for entry in json.loads(background.read_text(encoding="utf-8"))["codes"]:
            displays[(entry["system"], entry["code"])] = entry["display"]
        return cls(systems, displays)

    def coding(self, ref: str | Mapping[str, Any]) -> fb.Coding:
        """``"SYSTEM CODE"`` with the checked display; ``{"code": ..., "display": ...}`` with the
        display given (a local orderable's name), or ``"display": null`` for none."""
        name = ref if isinstance(ref, str) else str(ref["code"])
        short, _, code = name.rpartition(" ")
        if short not in self._systems:
            raise InputFileError(f"code {name!r}: unknown code system {short!r}")
        system = self._systems[short]
        if isinstance(ref, Mapping) and "display" in ref:
            return fb.coding(system, code, ref["display"])
        try:
            return fb.coding(system, code, self._displays[(system, code)])
        except KeyError:
            raise InputFileError(f"code {name!r} is in no checked code list") from None

    def codings(self, refs: Sequence[str | Mapping[str, Any]]) -> list[fb.Coding]:
        return [self.coding(r) for r in refs]


@dataclass(frozen=True)
class Vignette:
    name: str
    description: str
    service: str
    request: dict[str, Any]
    #: Per expected card: its rule id and text its summary or detail must mention.
    cards: tuple[dict[str, Any], ...]
    #: PAMA ratings expected as [draft reference, rating].
    pama: tuple[tuple[str, str], ...]
    #: patient-view: the rules whose card a clinician overrode for this patient lately.
    overridden: tuple[RuleId, ...] = ()
    #: The client profile the vignette is answered for (hooks/clients/; "generic" by default).
    client: str = DEFAULT_PROFILE
    #: Rules expected to decide a card in silent mode (recorded, not shown).
    silent: tuple[str, ...] = ()


class VignetteBook:
    """The vignettes of one data file, built into hook requests."""

    def __init__(self, data: Mapping[str, Any], knowledge: Knowledge, codebook: Codebook) -> None:
        self.today = date.fromisoformat(data["today"])
        self.services: dict[str, str] = data["services"]
        #: Each service's search prefetch keys, in its order: every vignette fills them all.
        self._search_keys = {
            hook: [k for k, t in knowledge.services[sid].prefetch.items() if "?" in t]
            for hook, sid in self.services.items()
        }
        self._codes = codebook
        self._templates: dict[str, Any] = data.get("templates", {})
        self.vignettes = {v["name"]: self._vignette(v) for v in data["vignettes"]}

    @classmethod
    def load(cls, knowledge: Knowledge, examples: Path | None = None) -> VignetteBook:
        root = examples or default_examples_dir()
        source = root / "vignettes.json"
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except OSError as exc:
            raise InputFileError(
                f"{source} cannot be read ({exc.strerror or exc}): --examples names the folder "
                "holding vignettes.json (a checkout's fhir_examples/)"
            ) from None
        except ValueError as exc:
            raise InputFileError(f"{source}: not valid JSON ({exc})") from None
        codebook = Codebook.of(knowledge, data["systems"], root / "background-codes.json")
        return cls(data, knowledge, codebook)

    # --- one vignette ------------------------------------------------------------------------

    def _dates(self, value: Any) -> Any:
        """Every 'today...' string in the entry, resolved to an ISO date."""
        if isinstance(value, str) and value.startswith("today"):
            return resolve_date(value, self.today)
        if isinstance(value, dict):
            return {k: self._dates(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._dates(v) for v in value]
        return value

    def _vignette(self, raw: Mapping[str, Any]) -> Vignette:
        entry = self._dates(dict(raw))
        for template in entry.get("use", []):
            for key, resources in self._dates(self._templates[template]).items():
                entry[key] = [*resources, *entry.get(key, [])]
        pid, gender, birth = entry["patient"]
        hook = entry.get("hook", "order-select")
        readers: dict[str, Callable[[str, dict[str, Any]], fb.Resource]] = {
            "conditions": self._condition,
            "procedures": self._procedure,
            "serviceRequests": self._order,
            "devices": self._device,
            "imagingStudies": self._study,
            "diagnosticReports": self._report,
            "allergies": self._allergy,
            "observations": self._lab_result,
        }
        #: Bundles sent without Bundle.type, as some clients do ("draftOrders" or a prefetch key).
        untyped = set(entry.get("untypedBundles", []))
        prefetch: dict[str, Any] = {"patient": fb.patient(pid, gender, birth)}
        #: Searchsets the client sent only the first page of (a ``next`` link to the rest).
        paged = set(entry.get("morePages", []))
        for key in self._search_keys[hook]:
            resources = [readers[key](pid, r) for r in entry.get(key, [])]
            prefetch[key] = fb.searchset(resources, typed=key not in untyped)
            if key in paged:
                prefetch[key]["link"] = fb.next_page_link(key, pid)
        drafts = [self._order(pid, d) for d in entry.get("drafts", [])]
        request = fb.hook_request(
            hook,
            pid,
            drafts,
            prefetch,
            selections=entry.get("selections"),
            untyped_drafts="draftOrders" in untyped,
        )
        expected = entry.get("expected", {})
        return Vignette(
            name=entry["name"],
            description=entry["description"],
            service=self.services[hook],
            request=request,
            cards=tuple(expected.get("cards", ())),
            pama=tuple(tuple(p) for p in expected.get("pama", ())),
            overridden=tuple(RuleId(r) for r in entry.get("overridden", ())),
            client=entry.get("client", DEFAULT_PROFILE),
            silent=tuple(expected.get("silent", ())),
        )

    def _condition(self, pid: str, r: dict[str, Any]) -> fb.Resource:
        if "fhir" in r:
            return self._verbatim(pid, r)
        return fb.condition(
            pid,
            r["id"],
            self._codes.codings(r["code"]),
            text=r.get("text"),
            onset=r.get("onset"),
            recorded=r.get("recorded"),
            clinical=r.get("clinical", "active"),
            verification=r.get("verification", "confirmed"),
            category=r.get("category", "problem-list-item"),
            body_site=self._codes.codings(r["bodySite"]) if "bodySite" in r else None,
            histology=self._codes.coding(r["histology"]) if "histology" in r else None,
        )

    def _procedure(self, pid: str, r: dict[str, Any]) -> fb.Resource:
        if "fhir" in r:
            return self._verbatim(pid, r)
        period = r.get("period")
        return fb.procedure(
            pid,
            r["id"],
            self._codes.codings(r["code"]),
            text=r.get("text"),
            status=r.get("status", "completed"),
            performed=r.get("performed"),
            period=(period[0], period[1]) if period else None,
            reason=r.get("reason"),
        )

    def _order(self, pid: str, r: dict[str, Any]) -> fb.Resource:
        if "fhir" in r:
            return self._verbatim(pid, r)
        return fb.service_request(
            pid,
            r["id"],
            codings=self._codes.codings(r["code"]) if "code" in r else None,
            text=r.get("text"),
            status=r.get("status", "draft"),
            encounter=r.get("encounter", "enc-1"),
            requester=r.get("requester", "Practitioner/dr-okafor"),
            authored=r.get("authored", self.today.isoformat()),
            reason=r.get("reason"),
            occurrence=r.get("occurrence"),
        )

    def _device(self, pid: str, r: dict[str, Any]) -> fb.Resource:
        return fb.device(pid, r["id"], r["name"], r.get("status", "active"), r.get("safety"))

    def _allergy(self, pid: str, r: dict[str, Any]) -> fb.Resource:
        return fb.allergy(
            pid,
            r["id"],
            r["substance"],
            r.get("clinical", "active"),
            r.get("severity"),
            r.get("criticality"),
        )

    def _lab_result(self, pid: str, r: dict[str, Any]) -> fb.Resource:
        value, unit = r["value"]
        return fb.lab_result(pid, r["id"], self._codes.codings(r["code"]), value, unit, r["date"])

    def _study(self, pid: str, r: dict[str, Any]) -> fb.Resource:
        return fb.imaging_study(pid, r["id"], r["description"], r["started"])

    def _report(self, pid: str, r: dict[str, Any]) -> fb.Resource:
        if "fhir" in r:
            return self._verbatim(pid, r)
        return fb.diagnostic_report(
            pid,
            r["id"],
            r["text"],
            r["effective"],
            r.get("status", "final"),
            r.get("conclusion"),
        )

    def _verbatim(self, _pid: str, r: dict[str, Any]) -> fb.Resource:
        resource: fb.Resource = r["fhir"]
        return resource

    # --- what the examples folder holds ----------------------------------------------------

    def files(self) -> Iterator[tuple[str, Any]]:
        """(relative path, JSON) of every request file the data produces."""
        for name, v in self.vignettes.items():
            yield f"{name}.json", v.request
        yield (
            "bundles/parotid_mec_record.json",
            self.record_bundle(
                "parotid_mec_after_parotidectomy_and_imrt_local_mri_neck", "parotid-mec-record"
            ),
        )

    def record_bundle(self, name: str, bundle_id: str) -> dict[str, Any]:
        """A vignette's record as a plain FHIR Bundle (for ``salivary-cds replay --order-text``)."""
        prefetch = self.vignettes[name].request["prefetch"]
        resources = [prefetch["patient"]] + [
            e["resource"]
            for key in ("conditions", "procedures", "serviceRequests")
            for e in prefetch[key]["entry"]
        ]
        return {
            "resourceType": "Bundle",
            "id": bundle_id,
            "type": "collection",
            "entry": [
                {
                    "fullUrl": f"{fb.EXAMPLE_FHIR_BASE}/{r['resourceType']}/{r['id']}",
                    "resource": r,
                }
                for r in resources
            ],
        }


def sequential_uuids() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"00000000-0000-4000-8000-{next(counter):012d}"


class RecordedOverrides:
    """A vignette's overrides as the engine's snooze sees them: the rules a clinician overrode
    for this patient within the snooze window (the feedback store's answer, as data)."""

    def __init__(self, patient_id: str, rules: Sequence[RuleId]) -> None:
        self._keys = {snooze_key(patient_id, r) for r in rules}

    def key(self, patient_id: str, rule: RuleId) -> str:
        return snooze_key(patient_id, rule)

    def snoozed(self, service_id: str, key: str, rule: RuleId, days: int) -> bool:
        del service_id, rule, days  # the vignette says the override is recent
        return key in self._keys


def golden_response(engine: CdsEngine, vignette: Vignette, today: date) -> dict[str, Any]:
    """The whole response, with uuids counted from 1 and a fixed date, as goldens store it;
    answered for the vignette's client profile (named in the golden unless generic)."""
    client = {} if vignette.client == DEFAULT_PROFILE else {"client": vignette.client}
    if vignette.client != engine.client_profile:
        engine = engine.for_client(vignette.client)
    snooze = None
    if vignette.overridden:
        snooze = RecordedOverrides(vignette.request["context"]["patientId"], vignette.overridden)
    try:
        outcome = engine.evaluate(
            vignette.service,
            vignette.request,
            sequential_uuids(),
            today,
            guidance_base=LOCAL_PUBLIC_URL,
            snooze=snooze,
        )
    except CdsError as exc:
        return {
            "service": vignette.service,
            **client,
            "status": exc.status,
            "response": exc.to_json(),
        }
    golden: dict[str, Any] = {
        "service": vignette.service,
        **client,
        "rules": [str(r) for r in outcome.rules],
    }
    if outcome.snoozed_rules:
        golden["snoozed"] = [str(r) for r in outcome.snoozed_rules]
    golden["response"] = outcome.response.to_json()
    return golden


def dump(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def expected_files(book: VignetteBook, engine: CdsEngine) -> Iterator[tuple[str, str]]:
    """(relative path, text) of every file under fhir_examples/ that the data determines."""
    for path, value in book.files():
        yield path, dump(value)
    for name, vignette in book.vignettes.items():
        yield f"golden/{name}.json", dump(golden_response(engine, vignette, book.today))


def write_examples(book: VignetteBook, engine: CdsEngine, root: Path) -> list[str]:
    """Write the files; return those that changed."""
    changed = []
    for path, text in expected_files(book, engine):
        target = root / path
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed


def drift(book: VignetteBook, engine: CdsEngine, root: Path) -> list[str]:
    """Files under ``root`` that differ from what the data and the engine produce now."""
    stale = []
    for path, text in expected_files(book, engine):
        target = root / path
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            stale.append(path)
    return stale
