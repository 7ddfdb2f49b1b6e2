"""Clinical context: is the patient in the post-treatment salivary-cancer scenario, and why.

Scope (shared/clinical/acr-post-treatment-salivary-imaging.txt, "Who fits this scenario"): a
malignant neoplasm of a major salivary gland AND completed definitive treatment. Not in scope:
benign tumours, other head and neck sites, untreated new cancers (initial staging), refuted or
erroneous diagnoses, procedures that were not completed. When the record is contradictory the
patient is treated as not in scope: the service then says nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from cds_service.clinical.patient_record import PatientRecord
from cds_service.fhir.records import ConditionFact, PartialDate, ProcedureFact
from cds_service.knowledge.terminology import TREATMENT_VALUESETS, Code, ValueSetName, ValueSets

#: verificationStatus values that do not establish a diagnosis. Only refuted and
#: entered-in-error are named by the issue; the tentative ones are left out too (say less).
UNUSABLE_VERIFICATION = frozenset(
    {"refuted", "entered-in-error", "unconfirmed", "provisional", "differential"}
)

#: A treatment that ended this long before the cancer was diagnosed cannot have treated it
#: (e.g. a parotidectomy for a benign tumour years before a new, untreated cancer).
TREATMENT_BEFORE_DIAGNOSIS_TOLERANCE = timedelta(days=180)

CancerBasis = Literal["diagnosis-code", "icd-o-3-topography-and-morphology", "history-code"]


@dataclass(frozen=True)
class CancerEvidence:
    condition: ConditionFact
    code: Code
    basis: CancerBasis
    #: The record's own words (text, then the coding's display), else the value set's display.
    display: str

    @property
    def date(self) -> PartialDate | None:
        return self.condition.onset or self.condition.recorded


@dataclass(frozen=True)
class TreatmentEvidence:
    procedure: ProcedureFact
    code: Code
    kind: ValueSetName
    display: str


def described(text: str | None, code: Code, vs: ValueSets, valueset: str) -> str:
    """What to call a coded finding: the record's text or display, else the knowledge's."""
    return text or code.display or vs.display(valueset, code)


def named_treatment(text: str | None, code: Code, vs: ValueSets, valueset: str) -> str:
    """What to call a treatment: the record's own words, else the knowledge's short clinical
    name ("IMRT"), never a procedure code's billing descriptor when a short name exists."""
    return text or vs.short_name(valueset, code) or code.display or vs.display(valueset, code)


@dataclass(frozen=True)
class PostTreatmentContext:
    """Why the patient is in the post-treatment salivary-cancer scenario."""

    cancer: CancerEvidence
    treatments: tuple[TreatmentEvidence, ...]

    def treatment_end(self) -> PartialDate | None:
        """When the last completed treatment ended (or started, when no end is recorded)."""
        ends = [t.procedure.performed_end or t.procedure.performed_start for t in self.treatments]
        known = [e for e in ends if e is not None]
        return max(known, key=lambda d: d.value) if known else None

    def radiotherapy_end(self) -> PartialDate | None:
        """When the last completed radiotherapy (or chemoradiotherapy) ended, if recorded."""
        ends = [
            t.procedure.performed_end or t.procedure.performed_start
            for t in self.treatments
            if t.kind in (ValueSetName.RADIOTHERAPY, ValueSetName.CHEMORADIOTHERAPY)
        ]
        known = [e for e in ends if e is not None]
        return max(known, key=lambda d: d.value) if known else None


def usable(condition: ConditionFact) -> bool:
    """A diagnosis the record stands by (not refuted, erroneous or tentative)."""
    return condition.verification_status not in UNUSABLE_VERIFICATION


def malignant_salivary_evidence(condition: ConditionFact, vs: ValueSets) -> CancerEvidence | None:
    """Evidence that this Condition is a malignant major-salivary neoplasm, else None."""
    if not usable(condition):
        return None
    everything = condition.codes + condition.body_site_codes + condition.extension_codes
    if vs.contains(ValueSetName.BENIGN_OR_UNCERTAIN_SALIVARY, everything):
        return None  # a benign code or behaviour on the same Condition contradicts malignancy
    code = vs.match(ValueSetName.MALIGNANT_MAJOR_SALIVARY, condition.codes)
    if code is not None:
        name = described(condition.text, code, vs, ValueSetName.MALIGNANT_MAJOR_SALIVARY)
        return CancerEvidence(condition, code, "diagnosis-code", name)
    topography = vs.match(
        ValueSetName.MAJOR_SALIVARY_TOPOGRAPHY, condition.codes + condition.body_site_codes
    )
    morphology = vs.match(
        ValueSetName.MALIGNANT_SALIVARY_HISTOLOGY, condition.codes + condition.extension_codes
    )
    if topography is not None and morphology is not None:
        name = described(condition.text, morphology, vs, ValueSetName.MALIGNANT_SALIVARY_HISTOLOGY)
        return CancerEvidence(condition, morphology, "icd-o-3-topography-and-morphology", name)
    return None


def _treatment(procedure: ProcedureFact, vs: ValueSets) -> TreatmentEvidence | None:
    if procedure.status != "completed":
        return None
    for kind in TREATMENT_VALUESETS:
        code = vs.match(kind, procedure.codes)
        if code is not None:
            return TreatmentEvidence(
                procedure, code, kind, named_treatment(procedure.text, code, vs, kind)
            )
    return None


def _treats(treatment: TreatmentEvidence, cancer: CancerEvidence) -> bool:
    """Could this completed procedure be the treatment of this cancer?"""
    refs = treatment.procedure.reason_references
    ref = cancer.condition.reference
    if refs and not any(r == ref or r.endswith("/" + ref) for r in refs):
        return False  # it names another reason (e.g. an oropharynx cancer)
    diagnosed = cancer.date
    performed = treatment.procedure.performed_end or treatment.procedure.performed_start
    if cancer.basis != "history-code" and diagnosed and performed:
        return performed.value >= diagnosed.value - TREATMENT_BEFORE_DIAGNOSIS_TOLERANCE
    return True


def _by_date(treatment: TreatmentEvidence) -> str:
    performed = treatment.procedure.performed_end or treatment.procedure.performed_start
    return performed.value.isoformat() if performed else ""


def find_post_treatment_context(
    record: PatientRecord, vs: ValueSets
) -> PostTreatmentContext | None:
    """Return the evidence that the patient was treated for a major-salivary cancer, else None."""
    treatments = [t for p in record.procedures if (t := _treatment(p, vs)) is not None]
    if not treatments:
        return None  # untreated (initial staging) or no completed procedure on record
    cancers = [c for cond in record.conditions if (c := malignant_salivary_evidence(cond, vs))]
    cancers.sort(key=lambda c: c.date.value.isoformat() if c.date else "", reverse=True)
    for cancer in cancers:
        own = sorted((t for t in treatments if _treats(t, cancer)), key=_by_date)
        if own:
            return PostTreatmentContext(cancer, tuple(own))
    if cancers:
        return None
    return _history_context(record, vs, treatments)


def _history_context(
    record: PatientRecord, vs: ValueSets, treatments: list[TreatmentEvidence]
) -> PostTreatmentContext | None:
    """A non-specific history code counts only with salivary-specific evidence.

    Z85.818 covers lip, oral cavity and pharynx too, so it needs a completed salivary gland
    excision beside it, and no benign or uncertain salivary tumour that would explain that
    excision instead.
    """
    established = [c for c in record.conditions if usable(c)]
    if any(vs.contains(ValueSetName.BENIGN_OR_UNCERTAIN_SALIVARY, c.codes) for c in established):
        return None
    if not any(t.kind == ValueSetName.SALIVARY_GLAND_EXCISION for t in treatments):
        return None
    for condition in established:
        code = vs.match(ValueSetName.HEAD_NECK_CANCER_HISTORY, condition.codes)
        if code is not None:
            name = described(condition.text, code, vs, ValueSetName.HEAD_NECK_CANCER_HISTORY)
            cancer = CancerEvidence(condition, code, "history-code", name)
            own = sorted((t for t in treatments if _treats(t, cancer)), key=_by_date)
            if any(t.kind == ValueSetName.SALIVARY_GLAND_EXCISION for t in own):
                return PostTreatmentContext(cancer, tuple(own))
    return None
