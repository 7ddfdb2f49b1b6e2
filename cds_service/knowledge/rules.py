"""The rules' ids: one enum that guidance, card rendering, logs, the feedback store, the report
and the tests all use. What each rule says and how its card is built is registered in one
entry per rule in cds_service.cards (``RULES``); its wording is in hooks/knowledge/cards.json."""

from __future__ import annotations

from enum import StrEnum


class RuleId(StrEnum):
    MRI_CONTRAINDICATED = "mri-contraindicated"
    MRI_CONDITIONAL_IMPLANT = "mri-conditional-implant"
    DISCUSS_WITH_RADIOLOGY = "discuss-with-radiology"
    CONTRAST_ON_RECORD = "contrast-on-record"
    INCOMPLETE_MRI_PROTOCOL = "incomplete-mri-protocol"
    CT_NECK_WITHOUT_CONTRAST = "ct-neck-without-contrast"
    CT_NECK_CONTRAST_UNSPECIFIED = "ct-neck-contrast-unspecified"
    CT_NECK_MRI_PREFERRED = "ct-neck-mri-preferred"
    PET_TOO_EARLY = "pet-too-early"
    US_LIMITED = "us-limited"
    RECURRENCE_RESTAGING = "recurrence-restaging"
    TISSUE_CONFIRMATION_NEXT = "tissue-confirmation-next"
    REPEAT_MRI_TOO_SOON = "repeat-mri-too-soon"
    MISSING_CLINICAL_HISTORY = "missing-clinical-history"
    #: patient-view: imaging that is due and that nobody has ordered.
    BASELINE_IMAGING_DUE = "baseline-imaging-due"
    FOLLOW_UP_IMAGING_OVERDUE = "follow-up-imaging-overdue"


#: Cards of a rule that a site (or a service's ``_config.ruleModes``) may switch apart from the
#: rule, as ``<rule id>:<variant>``: the recurrence card on an order that is already the full
#: MRI protocol says nothing about the order (it is right), only where the patient stands; the
#: MRI-preferred card on a CT with contrast when that contrast is at risk (an allergy, the
#: kidneys) is about safety, not preference.
RULE_VARIANTS: frozenset[str] = frozenset(
    {
        f"{RuleId.RECURRENCE_RESTAGING}:full-protocol",
        f"{RuleId.CT_NECK_MRI_PREFERRED}:contrast-risk",
    }
)


def mode_key_problem(key: str) -> str | None:
    """Why ``key`` is no rule-mode key (a rule id or one of ``RULE_VARIANTS``); None if it is."""
    if key in {r.value for r in RuleId} or key in RULE_VARIANTS:
        return None
    return (
        f"{key!r} is neither a rule id ({', '.join(RuleId)}) nor a rule variant "
        f"({', '.join(sorted(RULE_VARIANTS))})"
    )
