"""FHIR code system URIs the engine names, in one place (never as loose strings)."""

from typing import Final

ICD10CM: Final = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED: Final = "http://snomed.info/sct"
CPT: Final = "http://www.ama-assn.org/go/cpt"
LOINC: Final = "http://loinc.org"
ICDO3: Final = "http://terminology.hl7.org/CodeSystem/icd-o-3"
ICD10PCS: Final = "http://www.cms.gov/Medicare/Coding/ICD10"
#: This service's own study classes, for studies without a verified LOINC code: targets of a
#: site's orderables ConceptMap only, never put on an order (hooks/knowledge/imaging-orders.json).
STUDY_CLASS: Final = "urn:salivary-imaging-cds:study-class"

SHORT_NAMES: Final = {
    ICD10CM: "ICD-10-CM",
    SNOMED: "SNOMED CT",
    CPT: "CPT",
    LOINC: "LOINC",
    ICDO3: "ICD-O-3",
    ICD10PCS: "ICD-10-PCS",
    STUDY_CLASS: "study class",
}


def normalise_code(system: str, code: str) -> str:
    """Return the comparable form of a code.

    EHRs send ICD-10-CM both with and without the dot (C08.0, C080) and in either case;
    every other system is compared as sent, trimmed.
    """
    code = code.strip()
    if system == ICD10CM:
        return code.replace(".", "").upper()
    if system == ICDO3:
        return code.upper()
    return code
