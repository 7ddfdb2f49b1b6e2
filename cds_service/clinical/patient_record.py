"""Raw FHIR resources -> the PatientRecord the reasoning reads.

Each resource is read once, by the one reader of its type (cds_service.fhir.records), into a small
fact. Facts that cannot matter to the reasoning (labs, comorbidities, chest X-rays) are dropped
before the costly part: validating the resource (~28 µs each with the compiled validator, ~100 µs
with fhir.resources alone; a long history holds thousands). What decides "can matter" is derived
from the knowledge the reasoning uses (its value sets, its implant and head and neck patterns), so
the filter cannot drift from the reasoning. The tests replay every vignette with and without the
filter and compare whole responses. A resource that is not valid FHIR, or that names another
patient, is skipped and counted, never guessed at: with less data the service says less.

What a resource reads as depends only on its content and the patient in context: with a fact
cache (cds_service.fhir.fact_cache), the calls of one ordering session read the record once
(keyed by all its resources), and a resource that passed the screen is validated once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cds_service.clinical.orders import OrderClassifier, PendingOrder, PriorStudy, StudyReading
from cds_service.clinical.report_text import compile_linear
from cds_service.fhir.fact_cache import (
    ENTRY_OVERHEAD,
    FactCache,
    key_prefix,
    read_through,
    whole_record_key,
)
from cds_service.fhir.json_limits import same_content
from cds_service.fhir.records import (
    VALIDATED_TYPES,
    AllergyFact,
    ConditionFact,
    DeviceFact,
    ObservationFact,
    ProcedureFact,
    TissueReportFact,
    allergy_fact,
    allergy_names,
    codes_of,
    condition_codes,
    condition_fact,
    device_fact,
    device_names,
    observation_fact,
    pending_order_fact,
    pending_order_names,
    prior_imaging_fact,
    prior_study_names,
    procedure_fact,
    resource_id,
    subject_tie,
    text_of,
    tissue_report_fact,
    tissue_report_names,
    validated,
)
from cds_service.knowledge.codesystems import normalise_code
from cds_service.knowledge.loader import Knowledge
from cds_service.knowledge.names import NameMatcher
from cds_service.knowledge.terminology import (
    CONDITION_VALUESETS,
    OBSERVATION_VALUESETS,
    TREATMENT_VALUESETS,
    Code,
)

#: Resource types that record a study already done (a completed order, a study, a report).
PRIOR_STUDY_TYPES = frozenset({"ServiceRequest", "ImagingStudy", "DiagnosticReport"})
#: Every resource type the reasoning reads: those ``validated`` has a model for (Condition,
#: Procedure, Device, AllergyIntolerance, Observation and the prior study types).
READ_TYPES = VALIDATED_TYPES
Fact = (
    ConditionFact
    | ProcedureFact
    | DeviceFact
    | PriorStudy
    | PendingOrder
    | AllergyFact
    | ObservationFact
    | TissueReportFact
)
Screen = Callable[[Mapping[str, Any]], bool]
Reader = Callable[[Mapping[str, Any]], Fact | None]


class _Skipped:
    """A resource that could matter but is not valid FHIR or not this patient's: counted."""


SKIPPED = _Skipped()
#: What one resource reads as: its fact, SKIPPED, or None (it cannot matter).
Reading = Fact | _Skipped | None


@dataclass(frozen=True)
class PatientRecord:
    """The patient's history as the reasoning sees it.

    ``devices_known`` is False when the client neither sent nor nulled device data: the
    reasoning then cannot claim that nothing contraindicates MRI.
    """

    patient_id: str
    conditions: tuple[ConditionFact, ...] = ()
    procedures: tuple[ProcedureFact, ...] = ()
    devices: tuple[DeviceFact, ...] = ()
    prior_studies: tuple[PriorStudy, ...] = ()
    devices_known: bool = True
    skipped: int = 0
    allergies: tuple[AllergyFact, ...] = ()
    #: eGFR results (the only Observations the reasoning reads).
    observations: tuple[ObservationFact, ...] = ()
    #: False when allergy data, or kidney results, were neither sent nor nulled: unknown.
    allergies_known: bool = True
    observations_known: bool = True
    #: Head and neck imaging ordered and not yet done (draft, active, on hold).
    pending_orders: tuple[PendingOrder, ...] = ()
    #: Final pathology or cytology reports (tissue examined): clinical.pathway reads their dates.
    tissue_reports: tuple[TissueReportFact, ...] = ()


#: A procedure name longer than this is not read for a biopsy.
_MAX_NAME = 500


def _any_of(patterns: Iterable[str]) -> str:
    """One pattern that matches where any of ``patterns`` does (each kept in its own group)."""
    return "|".join(f"(?:{p})" for p in patterns)


def _keys(codes: Iterable[Code]) -> Iterable[tuple[str, str]]:
    return ((c.system, normalise_code(c.system, c.code)) for c in codes)


class RecordBuilder:
    """Built once from the knowledge; ``build`` turns one call's resources into a record.

    ``filter_irrelevant=False`` validates every resource the reasoning could read (the tests
    compare both ways); past studies are always read first, to keep head and neck imaging only.
    """

    def __init__(
        self,
        knowledge: Knowledge,
        classifier: OrderClassifier,
        implant_names: NameMatcher,
        filter_irrelevant: bool = True,
        fact_cache: FactCache | None = None,
        knowledge_version: str = "",
    ) -> None:
        """``fact_cache``: where readings are kept between calls (None: every call reads every
        resource); its keys name the knowledge in force (``knowledge_version``: hooks/ and the
        site folder) and the filter mode, so a cache can never answer for other knowledge."""
        vs = knowledge.valuesets

        def members(names: Iterable[str]) -> frozenset[tuple[str, str]]:
            return frozenset(
                (c.system, normalise_code(c.system, c.code)) for n in names for c in vs.concepts(n)
            )

        self._condition_codes = members(CONDITION_VALUESETS)
        self._procedure_codes = members(TREATMENT_VALUESETS)
        #: A biopsy or FNA is kept by its name (clinical.pathway: tissue sampled after a report).
        sampling = knowledge.pathway.tissueSampling
        # Each list as one alternation: one RE2 call a name instead of one a pattern.
        self._sampling_names = compile_linear(_any_of(sampling.procedurePatterns))
        self._tissue_report_names = compile_linear(_any_of(sampling.reportPatterns))
        self._tissue_report_codes = frozenset((c.system, c.code) for c in sampling.reportCategories)
        self._tissue_report_statuses = knowledge.pathway.reportStatuses
        self._implant_names = implant_names
        self._classifier = classifier
        self._coded_studies = classifier.coded_keys
        imaging = knowledge.imaging
        protocol = imaging.recommendedProtocol
        # Past studies and pending orders: a PET/CT skull base to mid-thigh images the neck too.
        self._head_neck = protocol.headNeckRegions | protocol.fieldsIncludingNeck
        self._head_neck_names = NameMatcher(
            [p for r in imaging.text.regions if r.region in self._head_neck for p in r.patterns]
        )
        contrast = knowledge.contrast
        self._allergy_names = NameMatcher([p for a in contrast.agents.values() for p in a.patterns])
        #: Conditions read by their text alone: an implant, or anuria (dialysis without urine).
        self._condition_names = NameMatcher([*implant_names.patterns, *contrast.anuriaPatterns])
        self._egfr_codes = members(OBSERVATION_VALUESETS)
        self._egfr_names = NameMatcher(contrast.egfrNamePatterns)
        self._pending_statuses = knowledge.pathway.dueImaging.pendingStatuses
        self._filter = filter_irrelevant
        self._cache = fact_cache
        self._cache_namespace = f"record:{knowledge_version}:{filter_irrelevant}"
        #: Per resource type: whether it can matter (read before validation), and its reader.
        self._screens: dict[str, tuple[Screen, Reader]] = {
            "Condition": (self._condition_matters, condition_fact),
            "Procedure": (self._procedure_matters, procedure_fact),
            "Device": (self._device_matters, device_fact),
            "AllergyIntolerance": (self._allergy_matters, allergy_fact),
            "Observation": (self._observation_matters, observation_fact),
        }

    # --- what can matter: read with the same extractors as the facts, before validation ---

    def _condition_matters(self, raw: Mapping[str, Any]) -> bool:
        if any(k in self._condition_codes for codes in condition_codes(raw) for k in _keys(codes)):
            return True
        text = text_of(raw.get("code"))
        return text is not None and self._condition_names.match(text)

    def _procedure_matters(self, raw: Mapping[str, Any]) -> bool:
        codes = codes_of(raw.get("code"))
        if any(k in self._procedure_codes for k in _keys(codes)):
            return True
        names = [text_of(raw.get("code")), *(c.display for c in codes)]
        return any(
            n and len(n) <= _MAX_NAME and self._sampling_names.search(n.lower()) for n in names
        )

    def _device_matters(self, raw: Mapping[str, Any]) -> bool:
        return any(self._implant_names.match(name) for name in device_names(raw)[1])

    def _allergy_matters(self, raw: Mapping[str, Any]) -> bool:
        return any(self._allergy_names.match(name) for name in allergy_names(raw))

    def _observation_matters(self, raw: Mapping[str, Any]) -> bool:
        code = raw.get("code")
        if any(k in self._egfr_codes for k in _keys(codes_of(code))):
            return True
        name = text_of(code)
        return name is not None and self._egfr_names.match(name)

    def _tissue_report(self, raw: Mapping[str, Any]) -> bool:
        """A final report of examined tissue: a pathology or cytology category (HL7 v2-0074),
        or a name that says so ("Surgical pathology report", "FNA cytology")."""
        status = raw.get("status")  # any JSON value: a list is unhashable
        if not isinstance(status, str) or status not in self._tissue_report_statuses:
            return False
        if resource_id(raw) is None:
            return False
        categories, names = tissue_report_names(raw)
        if any((c.system, c.code) in self._tissue_report_codes for c in categories):
            return True
        said = [n.lower() for n in names if len(n) <= _MAX_NAME]
        return any(self._tissue_report_names.search(n) for n in said)

    def _prior_reading(
        self, found: tuple[tuple[Code, ...], tuple[str, ...]] | None
    ) -> StudyReading | None:
        """How a past study or a pending order reads (``found``: its codes and names), when it
        is head and neck imaging (else None)."""
        if found is None:
            return None
        codes, texts = found
        if self._filter and not (
            any(k in self._coded_studies for k in _keys(codes))
            or any(self._head_neck_names.could_match(t) for t in texts)
        ):
            return None  # neither a known imaging code nor a head and neck word
        reading = self._classifier.read(codes, list(texts))
        if reading is None or not reading.covers_any(self._head_neck):
            return None
        return reading

    # --- the record ----------------------------------------------------------------------

    def build(
        self,
        patient_id: str,
        resources: Iterable[Mapping[str, Any]],
        devices_known: bool = True,
        allergies_known: bool = True,
        observations_known: bool = True,
    ) -> PatientRecord:
        """Resources of the patient in context only (the subject is read as a reference:
        another patient's, or one that cannot be tied to this patient, is skipped and counted).
        The same resource twice (two prefetch keys, two pages) counts once; the same id with
        different content is contradictory: it is left out and counted, so the service says
        less."""
        resources = tuple(resources)
        if self._cache is None:
            return self._build(
                patient_id, resources, devices_known, allergies_known, observations_known, b""
            )
        self._cache.sweep()
        prefix = key_prefix(self._cache_namespace, patient_id)
        flags = b"%d%d%d" % (devices_known, allergies_known, observations_known)
        key, size = whole_record_key(prefix + flags, resources)
        return self._cache.get_or_compute(
            key,
            lambda: self._build(
                patient_id, resources, devices_known, allergies_known, observations_known, prefix
            ),
            size=size + ENTRY_OVERHEAD,
        )

    def _build(
        self,
        patient_id: str,
        resources: tuple[Mapping[str, Any], ...],
        devices_known: bool,
        allergies_known: bool,
        observations_known: bool,
        prefix: bytes,
    ) -> PatientRecord:
        """The record, each resource read from the fact cache when it holds the reading
        (``prefix``: the cache keys' for this patient; empty without a cache)."""
        kept: dict[tuple[str, str], Fact] = {}
        first_seen: dict[tuple[str, str], Mapping[str, Any]] = {}
        contradictory: set[tuple[str, str]] = set()
        skipped = 0
        for raw in resources:
            kind, rid = raw.get("resourceType"), raw.get("id")
            if not isinstance(kind, str) or kind not in READ_TYPES:
                continue  # not a kind the reasoning reads
            if isinstance(rid, str):
                key = (kind, rid)
                earlier = first_seen.setdefault(key, raw)
                if earlier is not raw and not same_content(earlier, raw):
                    contradictory.add(key)
                if key in kept or key in contradictory:
                    continue
            reading = self._reading(kind, raw, patient_id, prefix)
            if reading is None:
                continue  # cannot matter
            if isinstance(reading, _Skipped):
                skipped += 1
                continue
            kept[(kind, str(rid))] = reading
        skipped += sum(1 for key in contradictory if kept.pop(key, None) is not None)
        facts = list(kept.values())
        return PatientRecord(
            patient_id,
            tuple(f for f in facts if isinstance(f, ConditionFact)),
            tuple(f for f in facts if isinstance(f, ProcedureFact)),
            tuple(f for f in facts if isinstance(f, DeviceFact)),
            tuple(f for f in facts if isinstance(f, PriorStudy)),
            devices_known,
            skipped,
            tuple(f for f in facts if isinstance(f, AllergyFact)),
            tuple(f for f in facts if isinstance(f, ObservationFact)),
            allergies_known,
            observations_known,
            tuple(f for f in facts if isinstance(f, PendingOrder)),
            tuple(f for f in facts if isinstance(f, TissueReportFact)),
        )

    def _reading(
        self, kind: str, raw: Mapping[str, Any], patient_id: str, prefix: bytes
    ) -> Reading:
        """What the resource reads as for this patient. The screen comes first and costs less
        than a content key: most resources cannot matter, and they are neither hashed nor
        kept. What passed is validated and tied to the patient once per content (the fact
        cache, under ``prefix``: the cache keys' for this patient)."""
        fact = self._read(kind, raw)
        if fact is None:
            return None
        return read_through(self._cache, prefix, raw, lambda: self._checked(fact, raw, patient_id))

    def _checked(self, fact: Fact, raw: Mapping[str, Any], patient_id: str) -> Reading:
        """The fact of a resource that is valid FHIR and this patient's; else SKIPPED."""
        if validated(raw) is None or subject_tie(raw, patient_id) != "same":
            return SKIPPED
        return fact

    def _read(self, kind: str, raw: Mapping[str, Any]) -> Fact | None:
        """The resource's fact, or None when it cannot matter (screened before validation)."""
        if kind in PRIOR_STUDY_TYPES:
            reading = self._prior_reading(prior_study_names(raw))  # read once, the record keeps it
            prior = prior_imaging_fact(raw) if reading is not None else None
            if prior and reading:
                return PriorStudy(prior, reading)
            if kind == "DiagnosticReport" and self._tissue_report(raw):
                return tissue_report_fact(raw)
            statuses = self._pending_statuses
            reading = self._prior_reading(pending_order_names(raw, statuses))
            pending = pending_order_fact(raw, statuses) if reading is not None else None
            return PendingOrder(pending, reading) if pending and reading else None
        matters, read = self._screens[kind]
        if self._filter and not matters(raw):
            return None
        return read(raw)
