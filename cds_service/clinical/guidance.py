"""Guidance decisions for each imaging order of an in-scope patient: pure functions, with evidence.

One order gets at most one primary finding, chosen by clinical priority (an implant that may
contraindicate MRI first, then an incomplete MRI, CT without contrast, PET/CT too early, CT
where MRI is preferred, ultrasound limits); a missing clinical history is folded into that card,
or makes its own info card when nothing else applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Literal

from cds_service.clinical.contrast import ContrastReader, ContrastSafety, MrStatus
from cds_service.clinical.orders import ImagingOrder, PriorStudy
from cds_service.clinical.pathway import LastReport, PathwayPosition, Recurrence
from cds_service.clinical.patient_record import PatientRecord
from cds_service.clinical.reasoning import PostTreatmentContext, described, usable
from cds_service.fhir.records import PartialDate, shift_months
from cds_service.knowledge.loader import (
    Knowledge,
    OrderKey,
    RatedProcedure,
    RatingKnowledge,
    RecommendedProtocol,
    SafetyKnowledge,
)
from cds_service.knowledge.names import NameMatcher
from cds_service.knowledge.rules import RuleId
from cds_service.knowledge.terminology import ValueSets

MRI_MODALITIES = frozenset({"MR", "MRA", "PET-MR"})
NECK_REGIONS = frozenset({"neck"})
US_REGIONS = frozenset({"neck", "salivary-gland"})


@dataclass(frozen=True)
class Implant:
    """Evidence of an implant that may contraindicate MRI, and what it says of MR safety."""

    reference: str
    display: str
    mr_status: MrStatus = "unknown"
    cochlear: bool = False

    @property
    def rules_out_mri(self) -> bool:
        """MR Unsafe, or nothing says otherwise: MRI is not suggested."""
        return self.mr_status in ("unsafe", "unknown")


@dataclass(frozen=True)
class MriContraindicated:
    order: ImagingOrder
    implant: Implant
    rule_id: Literal[RuleId.MRI_CONTRAINDICATED] = RuleId.MRI_CONTRAINDICATED


@dataclass(frozen=True)
class MriConditionalImplant:
    """The right MRI, ordered for a patient whose implant is recorded as MR Conditional."""

    order: ImagingOrder
    implant: Implant
    rule_id: Literal[RuleId.MRI_CONDITIONAL_IMPLANT] = RuleId.MRI_CONDITIONAL_IMPLANT


@dataclass(frozen=True)
class DiscussWithRadiology:
    """An implant rules out MRI and contrast for CT is unsafe to suggest: no one-click study."""

    order: ImagingOrder
    implant: Implant
    risks: tuple[str, ...]
    rule_id: Literal[RuleId.DISCUSS_WITH_RADIOLOGY] = RuleId.DISCUSS_WITH_RADIOLOGY


@dataclass(frozen=True)
class IncompleteMri:
    order: ImagingOrder
    missing_regions: tuple[str, ...]
    contrast_problem: Literal["unspecified", "without", "with"] | None
    rule_id: Literal[RuleId.INCOMPLETE_MRI_PROTOCOL] = RuleId.INCOMPLETE_MRI_PROTOCOL


@dataclass(frozen=True)
class CtNeck:
    order: ImagingOrder
    rule_id: Literal[
        RuleId.CT_NECK_WITHOUT_CONTRAST,
        RuleId.CT_NECK_CONTRAST_UNSPECIFIED,
        RuleId.CT_NECK_MRI_PREFERRED,
    ]
    #: The CT's own iodinated contrast is unsafe to suggest (an allergy, the kidneys): the
    #: MRI-preferred card is then about safety (a variant that ships active).
    contrast_risk: bool = False


@dataclass(frozen=True)
class PetTooEarly:
    order: ImagingOrder
    radiotherapy_end: PartialDate
    scan_date: date
    earliest: date
    minimum_weeks: int
    rule_id: Literal[RuleId.PET_TOO_EARLY] = RuleId.PET_TOO_EARLY

    @property
    def days(self) -> int:
        return (self.scan_date - self.radiotherapy_end.value).days


@dataclass(frozen=True)
class UsLimited:
    order: ImagingOrder
    rule_id: Literal[RuleId.US_LIMITED] = RuleId.US_LIMITED


@dataclass(frozen=True)
class RecurrenceRestaging:
    """Head and neck imaging for a patient with a recurrence on record: restaging, not
    surveillance (said as its own card when nothing else is, else as a line in that card)."""

    order: ImagingOrder
    recurrence: Recurrence
    #: The order is already the full MRI protocol: the card says nothing about the order, only
    #: where the patient stands (a variant that ships silent: knowledge.rules.RULE_VARIANTS).
    full_protocol: bool = False
    rule_id: Literal[RuleId.RECURRENCE_RESTAGING] = RuleId.RECURRENCE_RESTAGING


@dataclass(frozen=True)
class TissueConfirmationNext:
    """New surveillance imaging after a report positive for recurrence (NI-RADS 3): tissue
    confirmation and a tumour board are the guidance's next steps."""

    order: ImagingOrder
    report: LastReport
    rule_id: Literal[RuleId.TISSUE_CONFIRMATION_NEXT] = RuleId.TISSUE_CONFIRMATION_NEXT


@dataclass(frozen=True)
class RepeatMriTooSoon:
    """A repeat MRI well before the short interval an indeterminate report asks for."""

    order: ImagingOrder
    report: LastReport
    scan_date: date
    expected_from: date
    expected_to: date
    rule_id: Literal[RuleId.REPEAT_MRI_TOO_SOON] = RuleId.REPEAT_MRI_TOO_SOON

    @property
    def days(self) -> int:
        return (self.scan_date - self.report.date.value).days


Finding = (
    MriContraindicated
    | MriConditionalImplant
    | DiscussWithRadiology
    | IncompleteMri
    | CtNeck
    | PetTooEarly
    | UsLimited
    | RecurrenceRestaging
    | TissueConfirmationNext
    | RepeatMriTooSoon
)


@dataclass(frozen=True)
class PatientSituation:
    """What holds for the patient across orders: scope, implant, priors, the date."""

    context: PostTreatmentContext
    implant: Implant | None
    #: False when device data was not sent: nothing may then be said to allow MRI.
    devices_known: bool
    latest_prior: PriorStudy | None
    today: date
    contrast: ContrastSafety = field(default_factory=ContrastSafety)
    #: The last report and any recurrence on record (cds_service.clinical.pathway).
    pathway: PathwayPosition = field(default_factory=PathwayPosition)

    @property
    def mri_allowed(self) -> bool:
        """No implant on record rules MRI out (device data may still be unknown)."""
        return self.implant is None or not self.implant.rules_out_mri

    @property
    def mri_possible(self) -> bool:
        """Device data was sent and nothing in it rules MRI out."""
        return self.mri_allowed and self.devices_known

    def can_suggest(self, key: OrderKey) -> bool:
        """Is this study safe to suggest with one click? Not with a contrast the patient is
        recorded as allergic to; not CT with iodinated contrast at risk for the kidneys when MRI
        is ruled out (then nothing is: discuss with radiology)."""
        contrast = self.contrast
        if key == "mri-protocol":
            return self.mri_allowed and contrast.allergy("gadolinium") is None
        if contrast.allergy("iodinated") is not None:
            return False
        return not (contrast.kidney is not None and not self.mri_allowed)

    def alternative(self) -> OrderKey | None:
        """The study to add or switch to: the MRI protocol unless something on record keeps it
        from one click, else CT neck with IV contrast, else none (discuss with radiology)."""
        for key in ("mri-protocol", "ct-neck-with-contrast"):
            if self.can_suggest(key):
                return key
        return None

    def preferred(self) -> OrderKey | None:
        """Of the two rated studies, the one to recommend when a CT is being replaced: MRI
        where it is possible (or the only one left, or the kidneys are at risk), else CT neck
        with IV contrast, else none (discuss with radiology)."""
        mri, ct = self.can_suggest("mri-protocol"), self.can_suggest("ct-neck-with-contrast")
        if mri and (self.mri_possible or not ct or self.contrast.kidney is not None):
            return "mri-protocol"
        if ct:
            return "ct-neck-with-contrast"
        return None

    def contrast_risks(self) -> tuple[str, ...]:
        """Why contrast for CT is unsafe to suggest here (for the discuss card)."""
        risks = [
            f"a recorded allergy to iodinated contrast ({a.display})"
            for a in self.contrast.allergies
            if a.agent == "iodinated"
        ]
        if self.contrast.kidney is not None:
            risks.append(f"kidney function at risk ({self.contrast.kidney.display})")
        return tuple(risks)


@dataclass(frozen=True)
class OrderAdvice:
    """Everything the service has to say about one order; rendered as at most one card."""

    order: ImagingOrder
    primary: Finding | None
    missing_history: bool
    rated: RatedProcedure | None

    @property
    def rule_id(self) -> RuleId | None:
        if self.primary is not None:
            return self.primary.rule_id
        return RuleId.MISSING_CLINICAL_HISTORY if self.missing_history else None

    @property
    def variant(self) -> str | None:
        """The kind of the rule's card a mode may be set for apart from the rule, if any."""
        if isinstance(self.primary, RecurrenceRestaging) and self.primary.full_protocol:
            return "full-protocol"
        if isinstance(self.primary, CtNeck) and self.primary.contrast_risk:
            return "contrast-risk"
        return None


def find_implant(
    record: PatientRecord,
    vs: ValueSets,
    safety: SafetyKnowledge,
    names: NameMatcher,
    reader: ContrastReader,
) -> Implant | None:
    """A current implant that may contraindicate MRI, from Conditions or Device resources, with
    its MR safety as recorded (a Device's safety labelling or names; a coded Condition alone says
    nothing of it: unknown). A device with safety labelling is preferred as the evidence."""
    found: list[Implant] = []
    for condition in record.conditions:
        if not usable(condition):
            continue
        if condition.clinical_status in safety.inactiveConditionClinicalStatuses:
            continue  # e.g. a pacemaker since removed
        code = vs.match(safety.implantValueSet, condition.codes)
        if code is not None:
            name = described(condition.text, code, vs, safety.implantValueSet)
            said = tuple(n for n in (condition.text, name) if n)
            found.append(
                Implant(
                    condition.reference,
                    f"{name} ({code.label})",
                    reader.mr_status(said),
                    reader.cochlear(said),
                )
            )
        elif condition.text and names.match(condition.text):
            said = (condition.text,)
            found.append(
                Implant(
                    condition.reference,
                    condition.text,
                    reader.mr_status(said),
                    reader.cochlear(said),
                )
            )
    for device in record.devices:
        if device.status in safety.inactiveDeviceStatuses:
            continue
        if any(names.match(name) for name in device.names):
            said = (*device.names, *device.safety)
            found.append(
                Implant(
                    f"Device/{device.id}",
                    device.display,
                    reader.mr_status(said),
                    reader.cochlear(said),
                )
            )
    if not found:
        return None
    # The implant that says least in MRI's favour decides: unsafe, unknown, conditional, safe.
    # A coded Condition (status unknown) and the Device that labels the same implant MR
    # Conditional are one implant: the labelled Device speaks for it.
    labelled = [i for i in found if i.mr_status != "unknown"]
    ranked = labelled or found
    order = {"unsafe": 0, "unknown": 1, "conditional": 2, "safe": 3}
    return min(ranked, key=lambda i: order[i.mr_status])


def latest_prior_imaging(record: PatientRecord) -> PriorStudy | None:
    """The most recent completed head and neck study, from orders, studies or reports (the
    record holds only those, each read once when it was built)."""
    found = list(record.prior_studies)
    dated = [f for f in found if f.fact.date is not None]
    if not dated:
        return found[0] if found else None
    return max(dated, key=lambda f: f.fact.date.value if f.fact.date else date.min)


def rated_procedure(order: ImagingOrder, ratings: RatingKnowledge) -> RatedProcedure | None:
    """The procedure of the ACR table this order is, if it is one of them."""
    if not order.regions_known:
        return None
    for procedure in ratings.procedures:
        match = procedure.match
        if order.modality != match.modality:
            continue
        if not all(order.regions & set(group) for group in match.requiredRegions):
            continue
        if match.contrast is not None and order.contrast not in match.contrast:
            continue
        return procedure
    return None


def assess_mri(order: ImagingOrder, protocol: RecommendedProtocol) -> IncompleteMri | None:
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
    return IncompleteMri(order, missing, contrast_problem)


def _ct_neck(order: ImagingOrder, situation: PatientSituation) -> CtNeck | None:
    if not (order.regions_known and order.regions & NECK_REGIONS):
        return None
    if order.contrast == "without":
        return CtNeck(order, RuleId.CT_NECK_WITHOUT_CONTRAST)
    if order.contrast == "unspecified":
        return CtNeck(order, RuleId.CT_NECK_CONTRAST_UNSPECIFIED)
    if (
        order.contrast == "with"
        and situation.mri_possible
        and situation.can_suggest("mri-protocol")
    ):
        at_risk = not situation.can_suggest("ct-neck-with-contrast")
        return CtNeck(order, RuleId.CT_NECK_MRI_PREFERRED, at_risk)
    return None  # with contrast and MRI contraindicated or unknown; w/wo; conflicting


def _pet_too_early(
    order: ImagingOrder, situation: PatientSituation, safety: SafetyKnowledge
) -> PetTooEarly | None:
    ended = situation.context.radiotherapy_end()
    if ended is None:
        return None
    draft = order.draft
    scan = draft.occurrence.value if draft.occurrence else situation.today
    weeks = safety.petMinimumWeeksAfterRadiotherapy
    earliest = ended.value + timedelta(weeks=weeks)
    if not ended.value <= scan < earliest:
        return None
    return PetTooEarly(order, ended, scan, earliest, weeks)


def primary_finding(
    order: ImagingOrder, situation: PatientSituation, knowledge: Knowledge
) -> Finding | None:
    """The one thing most worth saying about this order, if any: what is wrong with the
    order itself first; else where the patient stands after the last report."""
    found = _order_finding(order, situation, knowledge)
    return found if found is not None else _pathway_finding(order, situation, knowledge)


def _pathway_finding(
    order: ImagingOrder, situation: PatientSituation, knowledge: Knowledge
) -> Finding | None:
    pathway = situation.pathway
    if pathway.recurrence is not None:
        protocol = knowledge.imaging.recommendedProtocol
        full = (
            order.modality == protocol.modality
            and order.contrast == protocol.contrast
            and order.covers_any(protocol.headNeckRegions)
            and assess_mri(order, protocol) is None
        )
        return RecurrenceRestaging(order, pathway.recurrence, full)
    report = pathway.last_report
    if report is None:
        return None
    if report.reading.branch == "positive" and order.modality != "PET-CT":
        return TissueConfirmationNext(order, report)  # PET/CT may clarify: not discouraged
    if report.reading.branch == "indeterminate" and order.modality in MRI_MODALITIES:
        k = knowledge.pathway
        draft = order.draft
        scan = draft.occurrence.value if draft.occurrence else situation.today
        reported = report.date.value
        if reported <= scan < reported + timedelta(weeks=k.repeatTooSoonWeeks):
            low, high = k.indeterminateFollowUpMonths
            return RepeatMriTooSoon(
                order, report, scan, shift_months(reported, low), shift_months(reported, high)
            )
    return None


def _order_finding(
    order: ImagingOrder, situation: PatientSituation, knowledge: Knowledge
) -> Finding | None:
    protocol = knowledge.imaging.recommendedProtocol
    implant = situation.implant
    if order.modality in MRI_MODALITIES:
        head_neck = order.covers_any(protocol.headNeckRegions)
        if implant is not None and head_neck and implant.rules_out_mri:
            if not situation.can_suggest("ct-neck-with-contrast"):
                return DiscussWithRadiology(order, implant, situation.contrast_risks())
            return MriContraindicated(order, implant)
        incomplete = assess_mri(order, protocol)
        conditional = implant is not None and implant.mr_status == "conditional"
        if incomplete is None and implant is not None and head_neck and conditional:
            return MriConditionalImplant(order, implant)
        return incomplete
    if order.modality == "CT":
        if (
            implant is not None
            and implant.rules_out_mri
            and order.regions_known
            and order.regions & NECK_REGIONS
            and not situation.can_suggest("ct-neck-with-contrast")
        ):
            return DiscussWithRadiology(order, implant, situation.contrast_risks())
        return _ct_neck(order, situation)
    if order.modality == "PET-CT":
        return _pet_too_early(order, situation, knowledge.safety)
    if order.modality == "US" and not order.guided_procedure and order.covers_any(US_REGIONS):
        return UsLimited(order)
    return None


def advise(
    situation: PatientSituation,
    orders: list[ImagingOrder],
    knowledge: Knowledge,
    *,
    standalone_history: bool,
) -> list[OrderAdvice]:
    """Advice for each order that concerns this scenario (head and neck or rated imaging). A
    missing reason is folded into an order's card; alone it is advice only where the service
    shows the standalone history card (``standalone_history``)."""
    advice: list[OrderAdvice] = []
    head_neck = knowledge.imaging.recommendedProtocol.headNeckRegions
    for order in orders:
        rated = rated_procedure(order, knowledge.ratings)
        if rated is None and not order.covers_any(head_neck):
            continue  # e.g. chest X-ray: not this scenario's imaging
        if order.guided_procedure:
            continue  # an FNA or biopsy under imaging: not a diagnostic study to advise on
        primary = primary_finding(order, situation, knowledge)
        missing_history = not order.draft.has_reason
        if primary is not None or (missing_history and standalone_history):
            advice.append(OrderAdvice(order, primary, missing_history, rated))
    return advice
