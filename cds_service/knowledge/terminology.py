"""Value sets loaded from hooks/knowledge/valuesets: answers "is this coding in set X"."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from cds_service.knowledge.codesystems import SHORT_NAMES, normalise_code


class ValueSetName(StrEnum):
    """Every value set the reasoning reads (hooks/knowledge/valuesets/<name>.json): the one
    list that the loader requires, the reasoning names and the relevance filter derives from."""

    MALIGNANT_MAJOR_SALIVARY = "malignant-major-salivary-neoplasm"
    BENIGN_OR_UNCERTAIN_SALIVARY = "benign-or-uncertain-salivary-neoplasm"
    MAJOR_SALIVARY_TOPOGRAPHY = "major-salivary-topography"
    MALIGNANT_SALIVARY_HISTOLOGY = "malignant-salivary-histology"
    HEAD_NECK_CANCER_HISTORY = "nonspecific-head-neck-cancer-history"
    SALIVARY_GLAND_EXCISION = "salivary-gland-excision"
    NECK_DISSECTION = "neck-dissection"
    RADIOTHERAPY = "radiotherapy"
    CHEMORADIOTHERAPY = "chemoradiotherapy"
    MRI_UNSAFE_IMPLANT = "mri-unsafe-implant"
    IODINATED_CONTRAST_ALLERGY = "iodinated-contrast-allergy"
    SEVERE_KIDNEY_DISEASE = "severe-kidney-disease"
    ACUTE_KIDNEY_INJURY = "acute-kidney-injury"
    DIALYSIS = "dialysis"
    KIDNEY_TRANSPLANT = "kidney-transplant"
    EGFR = "egfr-observation"
    SALIVARY_CANCER_METASTASIS = "salivary-cancer-metastasis"


#: Value sets read on Conditions (code, bodySite, extensions), on Observations and on Procedures
#: (code). Every value set is in exactly one group (tests/test_knowledge.py checks it).
CONDITION_VALUESETS = (
    ValueSetName.MALIGNANT_MAJOR_SALIVARY,
    ValueSetName.BENIGN_OR_UNCERTAIN_SALIVARY,
    ValueSetName.MAJOR_SALIVARY_TOPOGRAPHY,
    ValueSetName.MALIGNANT_SALIVARY_HISTOLOGY,
    ValueSetName.HEAD_NECK_CANCER_HISTORY,
    ValueSetName.MRI_UNSAFE_IMPLANT,
    ValueSetName.IODINATED_CONTRAST_ALLERGY,
    ValueSetName.SEVERE_KIDNEY_DISEASE,
    ValueSetName.ACUTE_KIDNEY_INJURY,
    ValueSetName.DIALYSIS,
    ValueSetName.KIDNEY_TRANSPLANT,
    ValueSetName.SALIVARY_CANCER_METASTASIS,
)
#: Value sets read on Observations (code).
OBSERVATION_VALUESETS = (ValueSetName.EGFR,)
#: The treatments, in the order a procedure is classified.
TREATMENT_VALUESETS = (
    ValueSetName.SALIVARY_GLAND_EXCISION,
    ValueSetName.NECK_DISSECTION,
    ValueSetName.RADIOTHERAPY,
    ValueSetName.CHEMORADIOTHERAPY,
)


class Code(NamedTuple):
    """One coding as read from a FHIR resource (system and code present, display optional).

    A named tuple, not a frozen dataclass: a long record holds thousands of codings, and a
    tuple is built about five times faster."""

    system: str
    code: str
    display: str | None = None

    @property
    def label(self) -> str:
        """Short human label such as "ICD-10-CM C07" for card text."""
        return f"{SHORT_NAMES.get(self.system, self.system)} {self.code}"


@dataclass(frozen=True)
class Concept:
    """A value-set member with the public source it was checked against."""

    system: str
    code: str
    display: str
    source: str
    #: The short clinical name cards use ("IMRT"), where the display is a billing descriptor.
    short_name: str | None = None


class ValueSets:
    """Precomputed lookups over the knowledge value sets, built once at start-up."""

    def __init__(self, members: Mapping[str, Iterable[Concept]]) -> None:
        self._index: dict[str, dict[tuple[str, str], Concept]] = {
            name: {(c.system, normalise_code(c.system, c.code)): c for c in concepts}
            for name, concepts in members.items()
        }

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._index)

    def concepts(self, name: str) -> tuple[Concept, ...]:
        return tuple(self._index[name].values())

    def match(self, name: str, codes: Iterable[Code]) -> Code | None:
        """Return the first of ``codes`` that belongs to value set ``name``, else None."""
        members = self._index[name]
        for code in codes:
            if (code.system, normalise_code(code.system, code.code)) in members:
                return code
        return None

    def display(self, name: str, code: Code) -> str:
        """The knowledge's display for a member code (records often send codes without one)."""
        return self._index[name][(code.system, normalise_code(code.system, code.code))].display

    def short_name(self, name: str, code: Code) -> str | None:
        """The knowledge's short clinical name for a member code, if it has one."""
        return self._index[name][(code.system, normalise_code(code.system, code.code))].short_name

    def contains(self, name: str, codes: Iterable[Code]) -> bool:
        return self.match(name, codes) is not None
