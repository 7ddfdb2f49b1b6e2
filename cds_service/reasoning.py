"""Clinical context and guidance decisions: pure functions over facts, returning evidence.

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

from cds_service.knowledge import RecommendedProtocol
from cds_service.orders import ImagingOrder
from cds_service.records import ConditionFact, PartialDate, PatientRecord, ProcedureFact
from cds_service.terminology import Code, ValueSets

#: verificationStatus values that do not establish a diagnosis. Only refuted and
#: entered-in-error are named by the issue; the tentative ones are left out too (say less).
UNUSABLE_VERIFICATION = frozenset(
    {"refuted", "entered-in-error", "unconfirmed", "provisional", "differential"}
)

TREATMENT_VALUESETS = (
    "salivary-gland-excision",
    "neck-dissection",
    "radiotherapy",
    "chemoradiotherapy",
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

    @property
    def date(self) -> PartialDate | None:
        return self.condition.onset or self.condition.recorded


@dataclass(frozen=True)
class TreatmentEvidence:
    procedure: ProcedureFact
    code: Code
    kind: str


@dataclass(frozen=True)
class PostTreatmentContext:
    """Why the patient is in the post-treatment salivary-cancer scenario."""

    cancer: CancerEvidence
    treatments: tuple[TreatmentEvidence, ...]


@dataclass(frozen=True)
class IncompleteMriFinding:
    """A selected head and neck MRI that is not the full protocol, and what it lacks."""

    order: ImagingOrder
    missing_regions: tuple[str, ...]
    contrast_problem: Literal["unspecified", "without", "with"] | None

    rule_id = "incomplete-mri-protocol"


def _usable(condition: ConditionFact) -> bool:
    return condition.verification_status not in UNUSABLE_VERIFICATION


def malignant_salivary_evidence(condition: ConditionFact, vs: ValueSets) -> CancerEvidence | None:
    """Evidence that this Condition is a malignant major-salivary neoplasm, else None."""
    if not _usable(condition):
        return None
    everything = condition.codes + condition.body_site_codes + condition.extension_codes
    if vs.contains("benign-or-uncertain-salivary-neoplasm", everything):
        return None  # a benign code or behaviour on the same Condition contradicts malignancy
    code = vs.match("malignant-major-salivary-neoplasm", condition.codes)
    if code is not None:
        return CancerEvidence(condition, code, "diagnosis-code")
    topography = vs.match("major-salivary-topography", condition.codes + condition.body_site_codes)
    morphology = vs.match(
        "malignant-salivary-histology", condition.codes + condition.extension_codes
    )
    if topography is not None and morphology is not None:
        return CancerEvidence(condition, morphology, "icd-o-3-topography-and-morphology")
    return None


def _treatment(procedure: ProcedureFact, vs: ValueSets) -> TreatmentEvidence | None:
    if procedure.status != "completed":
        return None
    for kind in TREATMENT_VALUESETS:
        code = vs.match(kind, procedure.codes)
        if code is not None:
            return TreatmentEvidence(procedure, code, kind)
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
    usable = [c for c in record.conditions if _usable(c)]
    if any(vs.contains("benign-or-uncertain-salivary-neoplasm", c.codes) for c in usable):
        return None
    if not any(t.kind == "salivary-gland-excision" for t in treatments):
        return None
    for condition in usable:
        code = vs.match("nonspecific-head-neck-cancer-history", condition.codes)
        if code is not None:
            cancer = CancerEvidence(condition, code, "history-code")
            own = sorted((t for t in treatments if _treats(t, cancer)), key=_by_date)
            if any(t.kind == "salivary-gland-excision" for t in own):
                return PostTreatmentContext(cancer, tuple(own))
    return None


def assess_mri(order: ImagingOrder, protocol: RecommendedProtocol) -> IncompleteMriFinding | None:
    """Hold a selected MRI against the recommended protocol; None when it is fine or unknown."""
    if order.modality != protocol.modality:
        return None
    if order.regions_known:
        if not order.regions & protocol.headNeckRegions:
            return None  # e.g. MRI brain: another question, not this rule's
        missing = tuple(
            req.label for req in protocol.requiredRegions if not order.regions & set(req.anyOf)
        )
    else:
        if not order.possible_regions & protocol.headNeckRegions:
            return None  # nothing tells us this MRI is of the head and neck
        missing = ()  # CPT 7054x alone: the regions are unknown, so nothing is claimed missing
    contrast_problem: Literal["unspecified", "without", "with"] | None = None
    if order.contrast in ("without", "with"):
        contrast_problem = order.contrast
    elif order.contrast == "unspecified" and order.regions_known:
        contrast_problem = "unspecified"
    if not missing and contrast_problem is None:
        return None
    return IncompleteMriFinding(order, missing, contrast_problem)


Finding = IncompleteMriFinding


def guidance(
    context: PostTreatmentContext | None, orders: list[ImagingOrder], protocol: RecommendedProtocol
) -> list[Finding]:
    """The findings for the selected orders; none for a patient outside the scenario."""
    if context is None:
        return []
    return [f for order in orders if (f := assess_mri(order, protocol)) is not None]
