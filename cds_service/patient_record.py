"""Raw FHIR resources -> the PatientRecord the reasoning reads.

Each resource is read once, by the one reader of its type (cds_service.records), into a small
fact. Facts that cannot matter to the reasoning (labs, comorbidities, chest X-rays) are dropped
before the costly part: validating the resource with fhir.resources (~40-90 µs each; a long
history holds thousands). What decides "can matter" is derived from the knowledge the reasoning
uses (its value sets, its implant and head and neck patterns), so the filter cannot drift from
the reasoning. The tests replay every vignette with and without the filter and compare whole
responses. A resource that is not valid FHIR, or that names another patient, is skipped and
counted, never guessed at: with less data the service says less.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cds_service.codesystems import normalise_code
from cds_service.knowledge import Knowledge
from cds_service.names import NameMatcher
from cds_service.orders import OrderClassifier, PriorStudy, StudyReading
from cds_service.records import (
    ConditionFact,
    DeviceFact,
    ProcedureFact,
    codes_of,
    condition_codes,
    condition_fact,
    device_fact,
    device_names,
    names_other_patient,
    prior_imaging_fact,
    prior_study_names,
    procedure_fact,
    text_of,
    validated,
)
from cds_service.terminology import CONDITION_VALUESETS, TREATMENT_VALUESETS, Code

#: Resource types that record a study already done (a completed order, a study, a report).
PRIOR_STUDY_TYPES = frozenset({"ServiceRequest", "ImagingStudy", "DiagnosticReport"})


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
    ) -> None:
        vs = knowledge.valuesets

        def members(names: Iterable[str]) -> frozenset[tuple[str, str]]:
            return frozenset(
                (c.system, normalise_code(c.system, c.code)) for n in names for c in vs.concepts(n)
            )

        self._condition_codes = members(CONDITION_VALUESETS)
        self._procedure_codes = members(TREATMENT_VALUESETS)
        self._implant_names = implant_names
        self._classifier = classifier
        imaging = knowledge.imaging
        self._head_neck = imaging.recommendedProtocol.headNeckRegions
        self._head_neck_names = NameMatcher(
            [p for r in imaging.text.regions if r.region in self._head_neck for p in r.patterns]
        )
        self._filter = filter_irrelevant

    # --- what can matter: read with the same extractors as the facts, before validation ---

    def _condition_matters(self, raw: Mapping[str, Any]) -> bool:
        if any(k in self._condition_codes for codes in condition_codes(raw) for k in _keys(codes)):
            return True
        text = text_of(raw.get("code"))
        return text is not None and self._implant_names.match(text)

    def _procedure_matters(self, raw: Mapping[str, Any]) -> bool:
        return any(k in self._procedure_codes for k in _keys(codes_of(raw.get("code"))))

    def _device_matters(self, raw: Mapping[str, Any]) -> bool:
        return any(self._implant_names.match(name) for name in device_names(raw)[1])

    def _prior_reading(self, raw: Mapping[str, Any]) -> StudyReading | None:
        """How a past study reads, when it was done and is head and neck imaging (else None)."""
        found = prior_study_names(raw)
        if found is None:
            return None
        codes, texts = found
        if self._filter and not (
            any(k in self._classifier.coded_keys for k in _keys(codes))
            or any(self._head_neck_names.could_match(t) for t in texts)
        ):
            return None  # neither a known imaging code nor a head and neck word
        reading = self._classifier.read(codes, list(texts))
        if reading is None or not reading.covers_any(self._head_neck):
            return None
        return reading

    # --- the record ----------------------------------------------------------------------

    def build(
        self, patient_id: str, resources: Iterable[Mapping[str, Any]], devices_known: bool = True
    ) -> PatientRecord:
        conditions: list[ConditionFact] = []
        procedures: list[ProcedureFact] = []
        devices: list[DeviceFact] = []
        priors: list[PriorStudy] = []
        skipped = 0
        seen: set[tuple[str, str]] = set()
        for raw in resources:
            kind = raw.get("resourceType")
            reading: StudyReading | None = None
            if kind == "Condition":
                if self._filter and not self._condition_matters(raw):
                    continue
            elif kind == "Procedure":
                if self._filter and not self._procedure_matters(raw):
                    continue
            elif kind == "Device":
                if self._filter and not self._device_matters(raw):
                    continue
            elif kind in PRIOR_STUDY_TYPES:
                reading = self._prior_reading(raw)  # read once: the record keeps it
                if reading is None:
                    continue
            else:
                continue  # not a kind the reasoning reads
            if validated(raw) is None or names_other_patient(raw, patient_id):
                skipped += 1
                continue
            key = (str(kind), str(raw["id"]))
            if key in seen:  # the same resource from two prefetch keys or pages
                continue
            seen.add(key)
            # Validated resources have an id, so each reader returns its fact.
            if kind == "Condition" and (condition := condition_fact(raw)):
                conditions.append(condition)
            elif kind == "Procedure" and (procedure := procedure_fact(raw)):
                procedures.append(procedure)
            elif kind == "Device" and (device := device_fact(raw)):
                devices.append(device)
            elif reading is not None and (prior := prior_imaging_fact(raw)):
                priors.append(PriorStudy(prior, reading))
        return PatientRecord(
            patient_id,
            tuple(conditions),
            tuple(procedures),
            tuple(devices),
            tuple(priors),
            devices_known,
            skipped,
        )
