"""Which raw resources can matter to the reasoning, decided on the raw JSON before any
validation. Building fhir.resources models costs ~40 µs a resource; a long history holds
thousands that cannot change the answer (labs, comorbidities, chest X-rays). Only those that
can (by their codes, names or status) are cleaned, validated and turned into facts.

The tests replay every vignette with and without this filter and compare whole responses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from cds_service.codesystems import normalise_code
from cds_service.guidance import ImplantNames
from cds_service.knowledge import Knowledge
from cds_service.orders import OrderClassifier
from cds_service.reasoning import TREATMENT_VALUESETS
from cds_service.terminology import Code

CONDITION_VALUESETS = (
    "malignant-major-salivary-neoplasm",
    "benign-or-uncertain-salivary-neoplasm",
    "major-salivary-topography",
    "malignant-salivary-histology",
    "nonspecific-head-neck-cancer-history",
)
PRIOR_STATUSES = frozenset(
    {"completed", "available", "final", "amended", "corrected", "appended", "preliminary"}
)


def _codings(concept: Any) -> Iterable[tuple[str, str]]:
    if isinstance(concept, dict):
        for coding in concept.get("coding") or []:
            if isinstance(coding, dict):
                system, code = coding.get("system"), coding.get("code")
                if isinstance(system, str) and isinstance(code, str):
                    yield system, normalise_code(system, code)


class RelevanceFilter:
    """Built once from the knowledge; ``keeps(resource)`` is a few set lookups or regexes."""

    def __init__(
        self, knowledge: Knowledge, classifier: OrderClassifier, implant_names: ImplantNames
    ) -> None:
        vs = knowledge.valuesets

        def keys(names: Iterable[str]) -> frozenset[tuple[str, str]]:
            return frozenset(
                (c.system, normalise_code(c.system, c.code)) for n in names for c in vs.concepts(n)
            )

        self._condition_codes = keys((*CONDITION_VALUESETS, knowledge.safety.implantValueSet))
        self._procedure_codes = keys(TREATMENT_VALUESETS)
        self._implant_names = implant_names
        self._classifier = classifier
        self._head_neck = knowledge.imaging.recommendedProtocol.headNeckRegions
        self._keywords = tuple(knowledge.imaging.text.headNeckKeywords)
        self._coded = classifier.coded_keys

    def keeps(self, resource: Mapping[str, Any]) -> bool:
        kind = resource.get("resourceType")
        if kind == "Condition":
            return self._condition(resource)
        if kind == "Procedure":
            return any(k in self._procedure_codes for k in _codings(resource.get("code")))
        if kind == "Device":
            return self._device(resource)
        if kind in ("ServiceRequest", "ImagingStudy", "DiagnosticReport"):
            return self._prior_imaging(resource)
        return False

    def _condition(self, resource: Mapping[str, Any]) -> bool:
        concepts = [resource.get("code")]
        concepts += resource.get("bodySite") or []
        concepts += [
            e.get("valueCodeableConcept")
            for e in resource.get("extension") or []
            if isinstance(e, dict)
        ]
        if any(k in self._condition_codes for c in concepts for k in _codings(c)):
            return True
        code = resource.get("code")
        text = code.get("text") if isinstance(code, dict) else None
        return isinstance(text, str) and self._implant_names.match(text)

    def _device(self, resource: Mapping[str, Any]) -> bool:
        names = [n.get("name") for n in resource.get("deviceName") or [] if isinstance(n, dict)]
        device_type = resource.get("type")
        if isinstance(device_type, dict):
            names.append(device_type.get("text"))
            names += [
                c.get("display") for c in device_type.get("coding") or [] if isinstance(c, dict)
            ]
        return any(isinstance(n, str) and self._implant_names.match(n) for n in names)

    def _prior_imaging(self, resource: Mapping[str, Any]) -> bool:
        if resource.get("status") not in PRIOR_STATUSES:
            return False
        kind = resource["resourceType"]
        if kind == "ImagingStudy":
            concepts = list(resource.get("procedureCode") or [])
            texts = [resource.get("description")]
        else:
            concepts = [resource.get("code")]
            code = resource.get("code")
            texts = [code.get("text")] if isinstance(code, dict) else []
        keys = [k for concept in concepts for k in _codings(concept)]
        names = [t for t in texts if isinstance(t, str)]
        if not any(k in self._coded for k in keys) and not any(
            word in name.upper() for name in names for word in self._keywords
        ):
            return False  # neither a known imaging code nor a head and neck word
        reading = self._classifier.read(None, [Code(s, c) for s, c in keys], names)
        return reading is not None and reading.covers_any(self._head_neck)
