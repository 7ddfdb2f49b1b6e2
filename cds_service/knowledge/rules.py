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
