"""Load and validate the clinical knowledge in hooks/ once, at start-up.

Bad knowledge must stop the service from starting (fail fast), never surface as a wrong card
at request time. Every file is parsed into strict pydantic models; value sets are also validated
as FHIR R4 ValueSet resources, and every code must name the public source it was checked against.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fhir.resources.R4B.valueset import ValueSet
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cds_service.contract.errors import ConfigurationError
from cds_service.knowledge.clients import ClientProfile, ClientProfileError, load_profiles
from cds_service.knowledge.codesystems import normalise_code
from cds_service.knowledge.linear_regex import NotLinearError, compile_linear
from cds_service.knowledge.names import UncheckablePatternError, required_words
from cds_service.knowledge.rules import RuleId, mode_key_problem
from cds_service.knowledge.safety_table import SafetyTable, SafetyTableKnowledge, check_every_cell
from cds_service.knowledge.terminology import Concept, ValueSetName, ValueSets

CHECKED_AGAINST_URL = "urn:salivary-imaging-cds:extension:checked-against"
#: ValueSet concept designation: the short clinical name a card and an order note use for a
#: treatment ("IMRT"), instead of a billing descriptor a radiologist would have to decode.
SHORT_NAME_USE = "urn:salivary-imaging-cds:designation-use"

#: Value sets the reasoning reads; a knowledge folder without one of them is refused.
REQUIRED_VALUESETS = frozenset(ValueSetName)

NiradsCategory = Literal["0", "1", "2a", "2", "2b", "3", "4"]
Branch = Literal[
    "incomplete",
    "negative",
    "low-suspicion-mucosal",
    "indeterminate",
    "highly-suspicious",
    "positive",
    "recurrence",
]

Modality = Literal["MR", "MRA", "CT", "CTA", "PET-CT", "PET-MR", "US", "XR", "NM", "FL", "MG"]
Contrast = Literal["without", "with", "without-and-with", "unspecified"]


class KnowledgeError(ConfigurationError):
    """The hooks/ folder is missing, unreadable or clinically inconsistent."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WireCoding(_Strict):
    system: str
    code: str
    display: str


class ServiceConfig(_Strict):
    #: Without these the service cannot decide: fetched when missing, else 412.
    requiredPrefetch: tuple[str, ...]
    #: Used when present, fetched when missing and a FHIR server may be asked. Other keys
    #: (the Patient) are advertised for clients but never fetched: the reasoning does not use them.
    optionalPrefetch: tuple[str, ...]
    #: order-select judges the new selections; order-sign every draft being signed; patient-view
    #: has no draft orders ("none": it says what is due).
    ordersToCheck: Literal["selections", "all-drafts", "none"]
    #: Cards below this indicator are not shown (order-sign: warnings, and the standalone
    #: history card, which is shown whatever this says).
    minimumIndicator: Literal["info", "warning", "critical"]
    # How suggestions are applied and where PAMA ratings go is the client's business, not the
    # service's: hooks/clients/*.json (cds_service.knowledge.clients), chosen by the site.
    #: Show the standalone "add the clinical history" card, for an order with no reason and
    #: nothing else to say. Off at order-select (it appeared on every correct selection), on at
    #: order-sign: once per ordering session, at the end, whatever minimumIndicator says.
    standaloneHistoryCard: bool = False
    #: patient-view: days a card stays away for the patient and rule after a clinician overrode
    #: it (0: never snoozed). Opening a chart ten times a day must not mean ten cards.
    snoozeDays: int = Field(default=0, ge=0, le=365)
    #: The mode each rule ships in, by rule id or ``<rule id>:<variant>``
    #: (knowledge.rules.RULE_VARIANTS): cards on orders that are already right ship silent, and
    #: a site's rules.json switches them on. A rule not named is active.
    ruleModes: dict[str, Literal["active", "silent", "off"]] = {}
    #: A card the clinician overrode for the same draft within this many minutes (at
    #: order-select) is not shown again here; 0: always shown. The web layer looks the
    #: overrides up in the feedback store; the engine is given the answer.
    hideOverriddenMinutes: int = Field(default=0, ge=0, le=24 * 60)

    @field_validator("ruleModes")
    @classmethod
    def _known_mode_keys(
        cls, modes: dict[str, Literal["active", "silent", "off"]]
    ) -> dict[str, Literal["active", "silent", "off"]]:
        for key in modes:
            problem = mode_key_problem(key)
            if problem is not None:
                raise ValueError(problem)
        return modes


class ServiceDefinition(_Strict):
    """One CDS service: its public discovery entry plus the private ``_config`` block."""

    id: str = Field(pattern=r"^[A-Za-z0-9\-_.]+$")
    hook: Literal["order-select", "order-sign", "patient-view"]
    title: str = Field(min_length=1)
    description: str = Field(min_length=1)
    usageRequirements: str | None = None
    prefetch: dict[str, str]
    config: ServiceConfig = Field(alias="_config")

    @field_validator("prefetch")
    @classmethod
    def _only_allowed_tokens(cls, templates: dict[str, str]) -> dict[str, str]:
        # CDS Hooks 2.0 "Prefetch tokens": only context fields with primitive values.
        allowed = {"context.patientId", "context.userId", "context.encounterId"}
        for key, template in templates.items():
            for token in re.findall(r"\{\{(.*?)\}\}", template):
                if token.strip() not in allowed:
                    raise ValueError(f"prefetch {key!r} uses token {token!r}, not allowed")
        return templates

    @model_validator(mode="after")
    def _config_names_prefetch_keys(self) -> ServiceDefinition:
        unknown = {*self.config.requiredPrefetch, *self.config.optionalPrefetch} - set(
            self.prefetch
        )
        if unknown:
            raise ValueError(f"_config names prefetch keys that do not exist: {sorted(unknown)}")
        if (self.hook == "patient-view") != (self.config.ordersToCheck == "none"):
            raise ValueError('ordersToCheck is "none" for patient-view, and only for it')
        if self.config.snoozeDays and self.hook != "patient-view":
            raise ValueError("snoozeDays is for patient-view: order hooks answer an order")
        return self

    def discovery_entry(self) -> dict[str, Any]:
        """The public part: what GET /cds-services shows (rule config stripped)."""
        return self.model_dump(exclude={"config"}, exclude_none=True)


class CodedOrderable(_Strict):
    system: str
    code: str
    display: str
    source: str = Field(min_length=1)
    modality: Modality
    regions: tuple[str, ...]
    regionsExact: bool
    contrast: Contrast


class ModalityPatterns(_Strict):
    modality: Modality
    patterns: tuple[str, ...]


class RegionPatterns(_Strict):
    region: str
    patterns: tuple[str, ...]


class ContrastPatterns(_Strict):
    withoutAndWith: tuple[str, ...]
    without: tuple[str, ...]
    with_: tuple[str, ...] = Field(alias="with")


class TextVocabulary(_Strict):
    ambiguousRegionPatterns: tuple[str, ...]
    #: Names of image-guided procedures (US-guided FNA...): not diagnostic imaging.
    guidedProcedurePatterns: tuple[str, ...]
    modalities: tuple[ModalityPatterns, ...]
    regions: tuple[RegionPatterns, ...]
    contrast: ContrastPatterns


class RegionRequirement(_Strict):
    anyOf: tuple[str, ...] = Field(min_length=1)
    label: str


class RecommendedProtocol(_Strict):
    description: str
    modality: Modality
    headNeckRegions: frozenset[str]
    #: Wider fields that include the neck (PET/CT skull base to mid-thigh): a past study or a
    #: pending order of such a field is head and neck imaging, though no MRI is held to it.
    fieldsIncludingNeck: frozenset[str] = frozenset()
    requiredRegions: tuple[RegionRequirement, ...]
    contrast: Contrast


class ImagingOrderKnowledge(_Strict):
    description: str
    recommendedProtocol: RecommendedProtocol
    codedOrderables: tuple[CodedOrderable, ...]
    text: TextVocabulary

    def study_keys(self) -> frozenset[tuple[str, str]]:
        """(system, comparable code) of every study the table reads: what a site may map to."""
        return frozenset((o.system, normalise_code(o.system, o.code)) for o in self.codedOrderables)


class CardLink(_Strict):
    """A link every card carries to the guidance's public text (an absolute URL, verified)."""

    label: str
    url: str = Field(pattern=r"^https://")


class CardSource(_Strict):
    label: str
    url: str = Field(pattern=r"^https://")
    topic: WireCoding
    links: tuple[CardLink, ...] = ()


class OrderTemplate(_Strict):
    """An order the service may suggest: its name and codes."""

    text: str
    coding: tuple[WireCoding, ...] = Field(min_length=1)
    #: The site's own orderable for this study (from the site folder, never from cards.json):
    #: a created order carries it as its first coding and its display as ``code.text``.
    site: WireCoding | None = Field(default=None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _site_not_from_json(cls, data: Any) -> Any:
        if isinstance(data, dict) and "site" in data:
            raise ValueError("a site orderable belongs in the site folder's orderables.json")
        return data


class DatePhrases(_Strict):
    diagnosed: str
    recorded: str
    performed: str
    performedPeriod: str


class OverrideReason(_Strict):
    code: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]{0,63}$")
    display: str = Field(min_length=1, max_length=120)


class ConcernChoice(_Strict):
    """A clinical concern offered as a one-click reason for the exam (own code system)."""

    code: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]{0,63}$")
    display: str = Field(min_length=1, max_length=80)


class RuleWording(_Strict):
    indicator: Literal["info", "warning", "critical"]
    summary: str = Field(min_length=1, max_length=139)
    #: The rule's own override reasons, per variant of the problem its card names ("default"
    #: for a rule with one); which variants a rule has is declared in the cards' RULES.
    overrideReasons: dict[str, tuple[OverrideReason, ...]]
    texts: dict[str, str]
    #: Where the rule's sentences come from, when not only the ACR article (cards.json's
    #: description names that one for every rule).
    sources: tuple[str, ...] = ()


OrderKey = Literal["mri-protocol", "ct-neck-with-contrast"]


class GuidancePageTexts(_Strict):
    description: str
    #: Per rule: explanation for its guidance page where the card's is filled with dates.
    rules: dict[RuleId, tuple[str, ...]]


class CardKnowledge(_Strict):
    description: str
    source: CardSource
    orders: dict[OrderKey, OrderTemplate]
    datePhrases: DatePhrases
    contrastProblems: dict[Literal["unspecified", "without", "with"], str]
    #: Per optional prefetch key: the line a card carries when that key could not be read.
    unreadable: dict[str, str]
    common: dict[str, str]
    overrideReasonSystem: str
    #: Offered on every card (the patient is not in this scenario at all).
    commonOverrideReasons: tuple[OverrideReason, ...]
    #: Wording per rule; which texts each rule needs, and which placeholders each may use, is
    #: checked at start-up against the rule's entry in cds_service.cards.renderer.RULES.
    rules: dict[RuleId, RuleWording]
    guidancePages: GuidancePageTexts
    #: How a modality is named in a sentence ("Last MRI 2026-08-03: NI-RADS 2b").
    modalityNames: dict[str, str]
    #: How a report's branch is said, and its NI-RADS category.
    reportFindings: dict[Branch, str]
    niradsFinding: str
    #: What the history note and the evidence say of a report that concluded nothing clear.
    reportUnread: str
    #: EHR billing suffixes cut from displays before a radiologist reads them: in Epic problem
    #: names "(HCC)" flags a risk-adjustment category, and reads as hepatocellular carcinoma.
    billingSuffixes: tuple[str, ...]
    #: The clinical concern a history suggestion offers as one-click reasons (own code system).
    clinicalConcernSystem: str
    clinicalConcerns: tuple[ConcernChoice, ...] = Field(min_length=1)

    def override_reasons(self, rule_id: RuleId, variants: Iterable[str]) -> tuple[WireCoding, ...]:
        """The rule's reasons for these variants of its problem, then the common ones; each
        code once."""
        own = self.rules[rule_id].overrideReasons
        found: dict[str, OverrideReason] = {}
        for reason in (*(r for v in variants for r in own[v]), *self.commonOverrideReasons):
            found.setdefault(reason.code, reason)
        return tuple(
            WireCoding(system=self.overrideReasonSystem, code=r.code, display=r.display)
            for r in found.values()
        )


class RatingMatch(_Strict):
    modality: Modality
    requiredRegions: tuple[tuple[str, ...], ...]
    contrast: tuple[Contrast, ...] | None


class RatedProcedure(_Strict):
    id: str
    name: str
    category: Literal["Usually Appropriate", "May Be Appropriate", "Usually Not Appropriate"]
    radiation: str
    pama: Literal["appropriate", "not-appropriate", "no-criteria-apply"]
    #: The rated study's procedure codes: the PAMA rating rates a procedure code.
    cpt: tuple[str, ...] = Field(min_length=1)
    match: RatingMatch


class RatingOverrides(_Strict):
    description: str
    rules: tuple[RuleId, ...]
    #: A rule listed here counts only for orders with one of these CPT codes.
    codes: dict[RuleId, tuple[str, ...]] = {}
    #: What the card's comparison table says of the order as placed while the rule counts.
    shownAs: dict[RuleId, str]

    @model_validator(mode="after")
    def _said_for_every_rule(self) -> RatingOverrides:
        if set(self.shownAs) != set(self.rules) or not set(self.codes) <= set(self.rules):
            raise ValueError("shownAs must name every rule, and codes only listed rules")
        return self


class UnratedOrders(_Strict):
    """What the comparison table says of an order the ACR table does not rate."""

    description: str
    category: str = Field(min_length=1)
    #: By modality; ``otherRadiation`` for any other.
    radiation: dict[str, str]
    otherRadiation: str


class RatingKnowledge(_Strict):
    description: str
    pamaNoCriteria: Literal["no-criteria-apply"]
    #: While one of these rules' cards is shown for an order, its rating is not-appropriate.
    notAppropriateWhen: RatingOverrides
    unrated: UnratedOrders
    procedures: tuple[RatedProcedure, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_procedure_per_code(self) -> RatingKnowledge:
        codes = [code for p in self.procedures for code in p.cpt]
        if len(codes) != len(set(codes)):
            raise ValueError("a CPT code is listed for two rated procedures")
        return self


class ContrastAgent(_Strict):
    label: str
    patterns: tuple[str, ...] = Field(min_length=1)


class ContrastSafetyKnowledge(_Strict):
    """Allergies, kidney function and implant MR safety (hooks/knowledge/contrast-safety.json)."""

    description: str
    agents: dict[Literal["gadolinium", "iodinated"], ContrastAgent]
    iodinatedAllergyValueSet: ValueSetName
    severeKidneyValueSet: ValueSetName
    acuteKidneyInjuryValueSet: ValueSetName
    dialysisValueSet: ValueSetName
    kidneyTransplantValueSet: ValueSetName
    egfrValueSet: ValueSetName
    egfrNamePatterns: tuple[str, ...] = Field(min_length=1)
    egfrBelow: float = Field(gt=0, le=120)
    egfrCautionBelow: float = Field(gt=0, le=120)
    egfrWithinDays: int = Field(gt=0, le=3650)
    anuriaPatterns: tuple[str, ...] = Field(min_length=1)
    mrConditionalPatterns: tuple[str, ...] = Field(min_length=1)
    mrSafePatterns: tuple[str, ...] = Field(min_length=1)
    mrUnsafePatterns: tuple[str, ...] = Field(min_length=1)
    cochlearPatterns: tuple[str, ...] = Field(min_length=1)
    cardiacDevicePatterns: tuple[str, ...] = Field(min_length=1)

    def gated_patterns(self) -> dict[str, tuple[str, ...]]:
        """Every pattern read behind a derived pre-check, by where it is written."""
        found = {f"agents.{k}": a.patterns for k, a in self.agents.items()}
        found.update(
            egfrNamePatterns=self.egfrNamePatterns,
            mrConditionalPatterns=self.mrConditionalPatterns,
            mrSafePatterns=self.mrSafePatterns,
            mrUnsafePatterns=self.mrUnsafePatterns,
            cochlearPatterns=self.cochlearPatterns,
            anuriaPatterns=self.anuriaPatterns,
            cardiacDevicePatterns=self.cardiacDevicePatterns,
        )
        return found


class SafetyKnowledge(_Strict):
    description: str
    implantValueSet: ValueSetName
    implantTextPatterns: tuple[str, ...] = Field(min_length=1)
    inactiveDeviceStatuses: frozenset[str]
    inactiveConditionClinicalStatuses: frozenset[str]
    petMinimumWeeksAfterRadiotherapy: int = Field(gt=0, le=52)


class NiradsReading(_Strict):
    """How a NI-RADS statement is found in a report (the label governs the number), and what
    each category means. Words are matched as tokens of the lower-cased text."""

    #: The label's spellings, as tokens ("ni - rads", "nirads").
    labels: tuple[str, ...] = Field(min_length=1)
    #: Site words per site ("primary", "neck"), as tokens.
    sites: dict[str, tuple[str, ...]]
    #: Tokens skipped between the label and the number ("category", ":", "(").
    fillers: frozenset[str]
    versions: frozenset[str]
    #: Between two categories, they are alternatives ("2b vs 3"): the report is not sure.
    alternatives: frozenset[str]
    #: Before the label in the same clause, or right after the number: a prior study.
    historyBefore: frozenset[str]
    historyAfter: frozenset[str]
    negations: frozenset[str]
    #: Which category is higher when primary and neck differ (the higher drives management).
    rank: dict[NiradsCategory, int]
    branches: dict[NiradsCategory, Branch]


class WordingReading(_Strict):
    """The guidance's branches from conclusion wording (RE2 patterns, lower-cased text)."""

    clauseSplit: str
    hedges: tuple[str, ...] = Field(min_length=1)
    negations: tuple[str, ...] = Field(min_length=1)
    positive: tuple[str, ...] = Field(min_length=1)
    highlySuspicious: tuple[str, ...] = Field(min_length=1)
    negative: tuple[str, ...] = Field(min_length=1)
    #: Tissue has confirmed it ("biopsy-proven recurrence"): no more asking for a biopsy.
    proven: tuple[str, ...] = Field(min_length=1)
    #: A clause about the past ("status post", "history of", "in 2023"): it never makes the
    #: reading worse (its positive and hedged phrases are not read).
    historical: tuple[str, ...] = Field(min_length=1)
    #: The radiologist recommends an MRI.
    recommendsMri: tuple[str, ...] = Field(min_length=1)


class ReportSections(_Strict):
    """Section headers inside a conclusion and which kinds of section decide."""

    description: str
    header: str
    kinds: dict[Literal["impression", "supersedes", "recommendation"], tuple[str, ...]]


class RecurrenceEvidence(_Strict):
    cancerClinicalStatuses: frozenset[str]
    metastasisValueSet: ValueSetName
    metastasisVerificationStatuses: frozenset[str]
    metastasisClinicalStatuses: frozenset[str]


class AccKnowledge(_Strict):
    """Adenoid cystic carcinoma, whose hallmark is perineural spread: by morphology code or name."""

    morphologyCodes: tuple[WireCoding, ...] = Field(min_length=1)
    #: Where the codes were checked (shared/clinical/codes.md names the public sources).
    source: str
    textPattern: str
    #: Which gland the cancer is in: by its ICD-10-CM code, else by name (RE2 patterns).
    glandCodes: dict[str, tuple[WireCoding, ...]]
    glandPatterns: dict[str, tuple[str, ...]]
    #: The nerves its perineural spread follows, per gland ("default" when none is recorded).
    nerves: dict[str, str]
    nervesSource: str
    lungSource: str

    @model_validator(mode="after")
    def _every_gland_named(self) -> AccKnowledge:
        if "default" not in self.nerves:
            raise ValueError("acc.nerves needs a 'default' (the gland not recorded)")
        missing = (set(self.glandCodes) | set(self.glandPatterns)) - set(self.nerves)
        if missing:
            raise ValueError(f"acc.nerves names no nerves for {sorted(missing)}")
        return self


class RoutineReasons(_Strict):
    description: str
    concernCodes: frozenset[str] = Field(min_length=1)


class TissueSampling(_Strict):
    description: str
    procedurePatterns: tuple[str, ...] = Field(min_length=1)
    #: A DiagnosticReport of examined tissue: by category (HL7 v2-0074), else by name.
    reportCategories: tuple[WireCoding, ...] = Field(min_length=1)
    reportPatterns: tuple[str, ...] = Field(min_length=1)
    source: str


class DueImagingKnowledge(_Strict):
    """When imaging is due and nobody ordered it (patient-view): the windows, as data."""

    description: str
    #: The baseline study: from this many weeks after the last treatment ended...
    baselineFromWeeks: int = Field(gt=0, le=52)
    #: ...until this many months after it (later, the record more likely misses outside imaging).
    baselineUntilMonths: int = Field(gt=0, le=24)
    #: The follow-up after an indeterminate report: overdue from this many weeks after it...
    followUpFromWeeks: int = Field(gt=0, le=52)
    #: ...and no longer said this many months after it.
    followUpUntilMonths: int = Field(gt=0, le=24)
    #: The modalities of the studies that count (head and neck CT, MRI, PET/CT).
    studyModalities: frozenset[str] = Field(min_length=1)
    #: ServiceRequest statuses of an order still pending (FHIR R4 request-status).
    pendingStatuses: frozenset[str] = Field(min_length=1)
    sources: tuple[str, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _windows_open(self) -> DueImagingKnowledge:
        if self.baselineFromWeeks * 7 >= self.baselineUntilMonths * 28:
            raise ValueError("dueImaging: the baseline window closes before it opens")
        if self.followUpFromWeeks * 7 >= self.followUpUntilMonths * 28:
            raise ValueError("dueImaging: the follow-up window closes before it opens")
        return self


class PathwayKnowledge(_Strict):
    """After the surveillance study: reading the last report, recurrence, the next steps."""

    description: str
    reportStatuses: frozenset[str]
    reportModalities: frozenset[str]
    #: A conclusion or coded text longer than this is not read (no radiologist writes it).
    maxReportChars: int = Field(gt=0, le=100_000)
    sections: ReportSections
    nirads: NiradsReading
    wording: WordingReading
    recurrence: RecurrenceEvidence
    indeterminateFollowUpMonths: tuple[int, int]
    repeatTooSoonWeeks: int = Field(gt=0, le=26)
    acc: AccKnowledge
    dueImaging: DueImagingKnowledge
    tissueSampling: TissueSampling
    routineReasons: RoutineReasons

    @model_validator(mode="after")
    def _patterns_compile(self) -> PathwayKnowledge:
        linear = [
            self.sections.header,
            self.wording.clauseSplit,
            *self.wording.hedges,
            *self.wording.negations,
            *self.wording.positive,
            *self.wording.highlySuspicious,
            *self.wording.negative,
            *self.wording.proven,
            *self.wording.historical,
            *self.wording.recommendsMri,
            *self.tissueSampling.procedurePatterns,
            *self.tissueSampling.reportPatterns,
            *(p for patterns in self.acc.glandPatterns.values() for p in patterns),
        ]
        # Report text and the histology pattern: RE2 only, linear time on any input.
        for pattern in [*linear, self.acc.textPattern]:
            try:
                compile_linear(pattern, ignore_case=True)
            except NotLinearError as exc:
                raise ValueError(str(exc)) from exc
        if set(self.nirads.rank) != set(self.nirads.branches):
            raise ValueError("every NI-RADS category needs a rank and a branch")
        low, high = self.indeterminateFollowUpMonths
        if not 0 < low <= high <= 12:
            raise ValueError("indeterminateFollowUpMonths: 0 < low <= high <= 12 months")
        return self


@dataclass(frozen=True)
class Knowledge:
    """Everything the engine knows, validated; shared read-only by all requests."""

    services: dict[str, ServiceDefinition]
    valuesets: ValueSets
    imaging: ImagingOrderKnowledge
    cards: CardKnowledge
    ratings: RatingKnowledge
    safety: SafetyKnowledge
    contrast: ContrastSafetyKnowledge
    pathway: PathwayKnowledge
    #: The contrast and implant safety decision table (hooks/knowledge/safety-table.json).
    table: SafetyTableKnowledge
    #: The version hooks/knowledge/version.json declares (people edit it with the knowledge).
    declared_version: str = "unversioned"
    #: sha256 of every file under hooks/: the version says exactly which knowledge was in force.
    digest: str = ""
    #: Client profiles by name (hooks/clients/*.json); "generic" is always there.
    clients: Mapping[str, ClientProfile] = field(default_factory=dict)


class VersionFile(_Strict):
    description: str
    version: str = Field(pattern=r"^[0-9A-Za-z][0-9A-Za-z.\-]{0,39}$")


def files_digest(root: Path, paths: Iterable[Path]) -> str:
    """sha256 over the files' paths (relative to ``root``) and bytes, in path order."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def default_hooks_dir() -> Path:
    """hooks/ inside an installed wheel, else the repository's hooks/ (editable installs)."""
    packaged = Path(__file__).resolve().parents[1] / "_hooks"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "hooks"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise KnowledgeError(f"{path}: cannot read JSON ({exc})") from exc


def _load_valueset(path: Path) -> tuple[str, list[Concept]]:
    raw = _read_json(path)
    try:
        ValueSet.model_validate(raw)
    except ValidationError as exc:
        raise KnowledgeError(f"{path}: not a valid FHIR ValueSet: {exc}") from exc
    concepts: list[Concept] = []
    includes = raw.get("compose", {}).get("include", [])
    if not includes:
        raise KnowledgeError(f"{path}: ValueSet has no compose.include")
    for include in includes:
        sources = [
            ext.get("valueString")
            for ext in include.get("extension", [])
            if ext.get("url") == CHECKED_AGAINST_URL
        ]
        if not sources or not sources[0]:
            raise KnowledgeError(
                f"{path}: include for {include.get('system')} does not say which public source "
                "its codes were checked against"
            )
        if not include.get("concept"):
            raise KnowledgeError(f"{path}: include for {include.get('system')} lists no concept")
        for concept in include["concept"]:
            if not concept.get("display"):
                raise KnowledgeError(f"{path}: code {concept.get('code')} has no display")
            short = [
                d.get("value")
                for d in concept.get("designation", [])
                if d.get("use", {}).get("system") == SHORT_NAME_USE
                and d.get("use", {}).get("code") == "short-clinical-name"
            ]
            concepts.append(
                Concept(
                    include["system"],
                    concept["code"],
                    concept["display"],
                    sources[0],
                    short[0] if short else None,
                )
            )
    return str(raw["id"]), concepts


def _check_patterns(
    imaging: ImagingOrderKnowledge, safety: SafetyKnowledge, contrast: ContrastSafetyKnowledge
) -> None:
    text = imaging.text
    groups = [
        *(p for patterns in contrast.gated_patterns().values() for p in patterns),
        *safety.implantTextPatterns,
        *text.guidedProcedurePatterns,
        *text.ambiguousRegionPatterns,
        *(p for m in text.modalities for p in m.patterns),
        *(p for r in text.regions for p in r.patterns),
        *text.contrast.withoutAndWith,
        *text.contrast.without,
        *text.contrast.with_,
    ]
    for pattern in groups:
        try:
            compile_linear(pattern)  # applied to client text: RE2 (linear time) or refused
        except NotLinearError as exc:
            raise KnowledgeError(f"imaging-orders.json: bad pattern {pattern!r}: {exc}") from exc
    # Patterns read behind a fast pre-check derived from them: each needs a word to check for.
    head_neck = imaging.recommendedProtocol.headNeckRegions
    gated = [
        *((f"contrast-safety.json: {k}", v) for k, v in contrast.gated_patterns().items()),
        ("mri-safety.json: implantTextPatterns", safety.implantTextPatterns),
        (
            "imaging-orders.json: head and neck region patterns",
            tuple(p for r in text.regions if r.region in head_neck for p in r.patterns),
        ),
    ]
    for where, patterns in gated:
        for pattern in patterns:
            try:
                required_words(pattern)
            except UncheckablePatternError as exc:
                raise KnowledgeError(f"{where}: {exc}") from exc


def _check_override_reasons(cards: CardKnowledge) -> None:
    """Every rule has its own reasons, none empty or listed twice; a code means one thing
    wherever it is used (one display)."""
    displays: dict[str, str] = {r.code: r.display for r in cards.commonOverrideReasons}
    for rule_id, rule in cards.rules.items():
        if not rule.overrideReasons:
            raise KnowledgeError(f"cards.json: {rule_id} has no override reasons of its own")
        for variant, reasons in rule.overrideReasons.items():
            where = f"cards.json: {rule_id} overrideReasons.{variant}"
            codes = [r.code for r in reasons]
            if not codes:
                raise KnowledgeError(f"{where} is empty")
            if len(codes) != len(set(codes)):
                raise KnowledgeError(f"{where} lists a reason twice")
            for reason in reasons:
                if displays.setdefault(reason.code, reason.display) != reason.display:
                    raise KnowledgeError(
                        f"{where}: {reason.code} is displayed differently elsewhere"
                    )


def _check_protocol_is_rated(protocol: RecommendedProtocol, ratings: RatingKnowledge) -> None:
    """The recommended MRI protocol and its row in the ACR table must describe one study."""
    required = {frozenset(r.anyOf) for r in protocol.requiredRegions}
    for procedure in ratings.procedures:
        match = procedure.match
        if match.modality == protocol.modality:
            same = {frozenset(g) for g in match.requiredRegions} == required and (
                match.contrast == (protocol.contrast,)
            )
            if not same:
                raise KnowledgeError(
                    f"ratings.json: {procedure.id} does not match imaging-orders.json's "
                    "recommendedProtocol (regions or contrast differ)"
                )
            return
    raise KnowledgeError("ratings.json: the recommended protocol has no rating")


def _check_safety_table(table: SafetyTableKnowledge, ratings: RatingKnowledge) -> None:
    """The table names rated procedures, and every one of its cells can be rendered."""
    rated = {p.id for p in ratings.procedures}
    unknown = set(table.procedures.values()) - rated
    if unknown:
        raise KnowledgeError(
            f"safety-table.json: procedures not in ratings.json: {sorted(unknown)}"
        )
    try:
        check_every_cell(SafetyTable(table))
    except ValueError as exc:
        raise KnowledgeError(f"safety-table.json: {exc}") from exc


def load_knowledge(hooks_dir: Path | None = None) -> Knowledge:
    """Read and validate hooks/; raise KnowledgeError naming the first problem found."""
    root = hooks_dir or default_hooks_dir()
    if not root.is_dir():
        raise KnowledgeError(f"knowledge folder {root} does not exist")
    try:
        services: dict[str, ServiceDefinition] = {}
        for path in sorted((root / "services").glob("*.json")):
            service = ServiceDefinition.model_validate(_read_json(path))
            if service.id in services:
                raise KnowledgeError(f"{path}: duplicate service id {service.id}")
            services[service.id] = service
        if not services:
            raise KnowledgeError(f"{root}/services holds no service definition")
        members = dict(
            _load_valueset(p) for p in sorted((root / "knowledge" / "valuesets").glob("*.json"))
        )
        missing = REQUIRED_VALUESETS - members.keys()
        if missing:
            raise KnowledgeError(f"value sets missing: {sorted(missing)}")
        imaging = ImagingOrderKnowledge.model_validate(
            _read_json(root / "knowledge" / "imaging-orders.json")
        )
        cards = CardKnowledge.model_validate(_read_json(root / "knowledge" / "cards.json"))
        ratings = RatingKnowledge.model_validate(_read_json(root / "knowledge" / "ratings.json"))
        safety = SafetyKnowledge.model_validate(_read_json(root / "knowledge" / "mri-safety.json"))
        contrast = ContrastSafetyKnowledge.model_validate(
            _read_json(root / "knowledge" / "contrast-safety.json")
        )
        pathway = PathwayKnowledge.model_validate(_read_json(root / "knowledge" / "pathway.json"))
        table = SafetyTableKnowledge.model_validate(
            _read_json(root / "knowledge" / "safety-table.json")
        )
        version = VersionFile.model_validate(_read_json(root / "knowledge" / "version.json"))
        clients = load_profiles(root / "clients")
    except ValidationError as exc:
        raise KnowledgeError(f"{root}: {exc}") from exc
    except ClientProfileError as exc:
        raise KnowledgeError(str(exc)) from exc
    _check_override_reasons(cards)
    _check_patterns(imaging, safety, contrast)
    _check_protocol_is_rated(imaging.recommendedProtocol, ratings)
    _check_safety_table(table, ratings)
    return Knowledge(
        services,
        ValueSets(members),
        imaging,
        cards,
        ratings,
        safety,
        contrast,
        pathway,
        table,
        declared_version=version.version,
        digest=files_digest(root, (p for p in root.rglob("*") if p.is_file())),
        clients=clients,
    )
