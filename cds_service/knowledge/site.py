"""A site's own configuration (``CDS_SITE_DIR``): its orderable catalogue and its rule modes.

Every hospital orders with its own orderable codes, and switches new alerts on rule by rule,
silently first. The site folder says both, as data the site's CDS team reviews:

- ``orderables.json``: a FHIR R4 ConceptMap from the site's orderable code system(s) to the
  studies the service reads (LOINC, or the service's own study classes where no verified LOINC
  code exists). A draft coded with a mapped site code is read from its target; every order the
  service suggests carries the site's orderable for that study first.
- ``rules.json``: ``{"rules": {"<rule id>" | "<rule id>:<variant>": "active" | "silent" |
  "off"}}`` (variants: ``knowledge.rules.RULE_VARIANTS``). A site's modes win over the defaults
  each service ships in its ``_config.ruleModes`` (some cards ship silent).
- ``client.json``: which client the site's EHR is, ``{"profile": "generic" | "epic" | "oracle" |
  "sandbox"}`` (hooks/clients/), and any of the profile's keys overridden
  (``selectionBehavior``, ``replacementStyle``, ``pama``; see ``knowledge.clients``).

Like ``hooks/``, the folder is validated at start-up: a malformed file stops the service and the
message names the file and the place. Without a site folder the service behaves as it always
has (``NO_SITE``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fhir.resources.R4B.conceptmap import ConceptMap
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from cds_service.knowledge.clients import NO_CHOICE, ClientChoice
from cds_service.knowledge.codesystems import SHORT_NAMES, normalise_code
from cds_service.knowledge.loader import CardKnowledge, KnowledgeError, WireCoding, files_digest
from cds_service.knowledge.rules import RULE_VARIANTS, RuleId, mode_key_problem
from cds_service.knowledge.terminology import Code

ORDERABLES_FILE = "orderables.json"
RULES_FILE = "rules.json"
CLIENT_FILE = "client.json"
SITE_FILES = (ORDERABLES_FILE, RULES_FILE, CLIENT_FILE)

RuleMode = Literal["active", "silent", "off"]
#: ConceptMap equivalences the service reads an order by. Anything looser (inexact, wider,
#: narrower...) is the site saying "not quite this study": the order is read by its name.
READ_EQUIVALENCES = frozenset({"equal", "equivalent"})


class SiteError(KnowledgeError):
    """The site folder is missing, unreadable or inconsistent with the service's knowledge."""


@dataclass(frozen=True)
class SiteOrderable:
    """One of the site's own orderables, as an order the service suggests must carry it."""

    system: str
    code: str
    display: str

    def coding(self) -> dict[str, str]:
        return {"system": self.system, "code": self.code, "display": self.display}


@dataclass(frozen=True)
class SiteCatalogue:
    """The site's orderables: how each reads, and which one to suggest for a study."""

    #: (site system, site code) -> the study (system, code) it is read as.
    reads: Mapping[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    #: (study system, study code) -> the site orderable suggested for it (the first mapped
    #: ``equivalent`` in file order).
    orderables: Mapping[tuple[str, str], SiteOrderable] = field(default_factory=dict)

    def study_of(self, code: Code) -> tuple[str, str] | None:
        return self.reads.get((code.system, code.code.strip()))

    def orderable_for(self, codings: Iterable[tuple[str, str]]) -> SiteOrderable | None:
        """The site orderable for the first of ``codings`` (a suggested study's codes) it has."""
        return next((o for c in codings if (o := self.orderables.get(c)) is not None), None)


class _RulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str | None = None
    rules: dict[str, RuleMode]

    @field_validator("rules")
    @classmethod
    def _known_keys(cls, rules: dict[str, RuleMode]) -> dict[str, RuleMode]:
        for key in rules:
            problem = mode_key_problem(key)
            if problem is not None:
                raise ValueError(problem)
        return rules


@dataclass(frozen=True)
class Site:
    """A site's configuration, validated; ``NO_SITE`` when there is none."""

    root: Path | None
    catalogue: SiteCatalogue
    #: By rule id, or ``<rule id>:<variant>`` for one kind of a rule's cards.
    rule_modes: Mapping[str, RuleMode]
    #: sha256 of the site's files (part of the knowledge version); "" without a site folder.
    digest: str
    #: Which client the site's EHR is (client.json): a profile and its overrides.
    client: ClientChoice = NO_CHOICE

    def mode(
        self,
        rule: RuleId,
        variant: str | None = None,
        defaults: Mapping[str, RuleMode] | None = None,
    ) -> RuleMode:
        """The mode of ``rule`` (of its ``variant`` of card, if any): the site's own setting for
        the variant, then for the rule; else the service's shipped default (``defaults``, from
        its ``_config.ruleModes``) for the variant, then for the rule; else active."""
        keys = (*((f"{rule}:{variant}",) if variant else ()), str(rule))
        for modes in (self.rule_modes, defaults or {}):
            for key in keys:
                if key in modes:
                    return modes[key]
        return "active"


NO_SITE = Site(None, SiteCatalogue(), {}, "")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object naming a key twice is refused: JSON readers disagree on which one wins, and a
    site's reviewer would read the first while the service used the last."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"the key {key!r} appears twice in one object")
        found[key] = value
    return found


def _read_json(path: Path) -> Any:
    """A site file's JSON: duplicate keys and nesting past 64 levels are refused, naming it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicate_keys)
    except RecursionError:
        raise SiteError(f"{path}: nests too deeply to be a site file") from None
    except (OSError, ValueError) as exc:
        raise SiteError(f"{path}: cannot read JSON ({exc})") from exc
    if _deeper_than(data, _MAX_DEPTH):
        raise SiteError(f"{path}: nests deeper than {_MAX_DEPTH} levels")
    return data


#: No site file nests deeper (a ConceptMap is ~6 levels); deeper is refused, never recursed.
_MAX_DEPTH = 64


def _deeper_than(data: Any, limit: int) -> bool:
    """Whether JSON ``data`` nests deeper than ``limit`` (iteratively: no recursion)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > limit:
                return True
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
    return False


def load_catalogue(path: Path, studies: Set[tuple[str, str]]) -> SiteCatalogue:
    """Read a site's orderables ConceptMap; ``studies`` are the (system, code) pairs the service
    reads (hooks/knowledge/imaging-orders.json), the only targets it can read an order by."""
    raw = _read_json(path)
    try:
        ConceptMap.model_validate(raw)
    except ValidationError as exc:
        raise SiteError(f"{path}: not a valid FHIR R4 ConceptMap: {exc}") from exc
    reads: dict[tuple[str, str], tuple[str, str]] = {}
    orderables: dict[tuple[str, str], SiteOrderable] = {}
    for g, group in enumerate(raw.get("group") or []):
        where = f"{path}: group[{g}]"
        source, target = group.get("source"), group.get("target")
        if not source or not target:
            raise SiteError(f"{where}: needs both source (the site's system) and target")
        if source in SHORT_NAMES:
            raise SiteError(
                f"{where}: source {source} is a standard code system the service reads itself; "
                "map the site's own orderable codes (one CPT code covers several orderables)"
            )
        for e, element in enumerate(group.get("element") or []):
            code, display = element.get("code"), element.get("display")
            here = f"{where}.element[{e}] ({code})"
            if not code:
                raise SiteError(f"{where}.element[{e}]: needs the site's orderable code")
            if not display:
                raise SiteError(f"{here}: needs the site's display (suggested orders carry it)")
            for t, mapped in enumerate(element.get("target") or []):
                if mapped.get("equivalence") not in READ_EQUIVALENCES:
                    continue
                study = (target, normalise_code(target, mapped.get("code") or ""))
                if study not in studies:
                    raise SiteError(
                        f"{here}.target[{t}]: {target} {mapped.get('code')!r} is not a study "
                        "the service reads (hooks/knowledge/imaging-orders.json codedOrderables)"
                    )
                key = (source, code.strip())
                if reads.get(key, study) != study:
                    raise SiteError(f"{here}: mapped as equivalent to two different studies")
                reads[key] = study
                orderables.setdefault(study, SiteOrderable(source, code.strip(), display))
    return SiteCatalogue(reads, orderables)


def load_rule_modes(path: Path) -> dict[str, RuleMode]:
    raw = _read_json(path)
    try:
        return dict(_RulesFile.model_validate(raw).rules)
    except ValidationError as exc:
        known = ", ".join(RuleId)
        variants = ", ".join(sorted(RULE_VARIANTS))
        raise SiteError(
            f"{path}: {exc}\nrule ids: {known}; variants: {variants}; modes: active, silent, off"
        ) from exc


def knowledge_version(declared: str, hooks_digest: str, site: Site) -> str:
    """``<declared>+<hash>``: the version hooks/ declares, and 10 hex digits of the hash of
    hooks/ and the site folder together (any edit to either changes it)."""
    both = hashlib.sha256(f"{hooks_digest}:{site.digest}".encode()).hexdigest()
    return f"{declared}+{both[:10]}"


def with_site_orderables(
    cards: CardKnowledge, catalogue: SiteCatalogue
) -> tuple[CardKnowledge, tuple[str, ...]]:
    """The card knowledge whose suggested orders carry the site's orderables, and the order
    keys the site has no orderable for (those keep the standard codes only)."""
    orders = {}
    missing = []
    for key, template in cards.orders.items():
        found = catalogue.orderable_for(
            (c.system, normalise_code(c.system, c.code)) for c in template.coding
        )
        if found is None:
            missing.append(key)
            orders[key] = template
        else:
            site = WireCoding(system=found.system, code=found.code, display=found.display)
            orders[key] = template.model_copy(update={"site": site})
    return cards.model_copy(update={"orders": orders}), tuple(missing)


def load_site(root: Path | None, studies: Set[tuple[str, str]]) -> Site:
    """Read and validate the site folder; ``NO_SITE`` when ``root`` is None."""
    if root is None:
        return NO_SITE
    if not root.is_dir():
        raise SiteError(f"site folder {root} does not exist")
    unknown = sorted(p.name for p in root.glob("*.json") if p.name not in SITE_FILES)
    if unknown:
        raise SiteError(
            f"{root}: {', '.join(unknown)} is not a site file the service reads "
            f"(known: {', '.join(SITE_FILES)})"
        )
    for name in SITE_FILES:  # a site file that is there but not a readable file is an error
        path = root / name
        if (path.exists() or path.is_symlink()) and not path.is_file():
            raise SiteError(f"{path}: not a regular file (a directory or a broken link)")
    present = [root / name for name in SITE_FILES if (root / name).is_file()]
    catalogue = (
        load_catalogue(root / ORDERABLES_FILE, studies)
        if (root / ORDERABLES_FILE).is_file()
        else SiteCatalogue()
    )
    modes = load_rule_modes(root / RULES_FILE) if (root / RULES_FILE).is_file() else {}
    client = NO_CHOICE
    if (root / CLIENT_FILE).is_file():
        try:
            client = ClientChoice.model_validate(_read_json(root / CLIENT_FILE))
        except ValidationError as exc:
            raise SiteError(f"{root / CLIENT_FILE}: {exc}") from exc
    return Site(root, catalogue, modes, files_digest(root, present), client)
