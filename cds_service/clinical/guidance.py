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
from cds_service.knowledge.safety_table import (
    Cell,
    Factors,
    ImplantCategory,
    OrderedStudy,
    SafetyTable,
)
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
    #: A pacemaker or defibrillator: the device team programs its MR mode.
    cardiac: bool = False

    @property
    def rules_out_mri(self) -> bool:
        """MR Unsafe, or nothing says otherwise: MRI is not suggested."""
        return self.mr_status in ("unsafe", "unknown")

    @property
    def category(self) -> ImplantCategory:
        """The implant as the safety table reads it (a cochlear implant of unknown labelling
        is first an implant whose labelling must be identified)."""
        if self.mr_status == "unsafe":
            return "mr-unsafe"
        if self.mr_status == "unknown":
            return "labelling-unknown"
        return "cochlear" if self.cochlear else "mr-conditional"


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
class ContrastConcern:
    """The order is the rated study, and a contrast allergy or kidney function on record
    qualifies its contrast (the safety table's cell says what to do instead, if anything)."""

    order: ImagingOrder
    rule_id: Literal[RuleId.CONTRAST_ON_RECORD] = RuleId.CONTRAST_ON_RECORD


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
    | ContrastConcern
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
    """What holds for the patient across orders: scope, implant, priors, the date, and the
    safety table that decides which study may be suggested for each order."""

    context: PostTreatmentContext
    implant: Implant | None
    #: False when device data was not sent: nothing may then be said to allow MRI.
    devices_known: bool
    latest_prior: PriorStudy | None
    today: date
    table: SafetyTable
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

    @property
    def factors(self) -> Factors:
        """The patient's safety facts as the table's factor values."""
        return Factors(
            self.contrast.severity("gadolinium"),
            self.contrast.severity("iodinated"),
            self.contrast.kidney_category,
            "none" if self.implant is None else self.implant.category,
            devices_unknown=not self.devices_known,
        )

    def cell(self, order: ImagingOrder, rated: RatedProcedure | None) -> Cell | None:
        """The table's cell for this order (None: not a study the table covers)."""
        ordered = ordered_study(order)
        if ordered is None:
            return None
        procedures = self.table.k.procedures
        kept = next((key for key, pid in procedures.items() if rated and rated.id == pid), None)
        return self.table.cell(self.factors, ordered, kept)

    def alternative(self) -> OrderKey | None:
        """The one rated study to offer beside an order the table has no row for suggesting
        in its place (e.g. now, instead of a PET/CT too early): as for an ultrasound."""
        offered = self.table.cell(self.factors, "us").offered
        return offered[0] if offered else None

    def contrast_risks(self) -> tuple[str, ...]:
        """The contrast facts that leave no study to suggest (for the discuss card)."""
        risks = [
            f"a recorded reaction to {a.agent} contrast ({a.display})"
            for a in self.contrast.allergies
        ]
        if self.contrast.kidney is not None:
            risks.append(f"kidney function ({self.contrast.kidney.display})")
        return tuple(risks)


def ordered_study(order: ImagingOrder) -> OrderedStudy | None:
    """The order as the safety table's row: the study and the contrast it needs. An MRI whose
    contrast is not said is read as with gadolinium (the protocol's), a CT as without."""
    if order.modality in MRI_MODALITIES:
        return "mri-without" if order.contrast == "without" else "mri-gadolinium"
    if order.modality == "CT":
        with_contrast = order.contrast in ("with", "without-and-with")
        return "ct-iodinated" if with_contrast else "ct-without"
    if order.modality == "PET-CT":
        return "pet-ct"
    if order.modality == "US":
        return "us"
    return None


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
                    reader.cardiac(said),
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
                    reader.cardiac(said),
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
                    reader.cardiac(said),
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


def _ct_neck(order: ImagingOrder, cell: Cell | None) -> CtNeck | None:
    if not (order.regions_known and order.regions & NECK_REGIONS):
        return None
    if order.contrast == "without":
        return CtNeck(order, RuleId.CT_NECK_WITHOUT_CONTRAST)
    if order.contrast == "unspecified":
        return CtNeck(order, RuleId.CT_NECK_CONTRAST_UNSPECIFIED)
    mri = (
        cell is not None
        and cell.tiers["mri-protocol"] == "clear"
        and "mri-protocol" in cell.offered
    )
    if order.contrast == "with" and mri:
        # The CT's own contrast at risk (the safety table does not clear it): the card is then
        # about safety (a variant that ships active), not preference.
        at_risk = cell is not None and cell.tiers["ct-neck-with-contrast"] != "clear"
        return CtNeck(order, RuleId.CT_NECK_MRI_PREFERRED, at_risk)
    # with contrast and MRI not recommended (an implant, a cochlear implant's CT, device data
    # unknown); w/wo; conflicting
    return None


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
    if report is None or report.reading is None:
        return None  # no report, or one that says nothing clear: "see the report", no card
    branch = report.reading.branch
    if branch in ("positive", "highly-suspicious") and order.modality != "PET-CT":
        if not report.tissue_next:
            return None  # tissue has been sampled since: never ask for it again
        return TissueConfirmationNext(order, report)  # PET/CT may clarify: not discouraged
    if (
        branch == "indeterminate"
        and report.modality == "MR"  # the guidance's short interval follows an MRI, not a CT
        and order.modality in MRI_MODALITIES
        and not report.reading.recommends_mri  # the radiologist asked for this MRI
        and routine_only(order, situation, knowledge)  # a symptom: imaging is needed now
    ):
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


def routine_only(order: ImagingOrder, situation: PatientSituation, knowledge: Knowledge) -> bool:
    """The order gives no reason, or only routine surveillance and the treated cancer itself.
    Any other reason (the service's own clinical concerns, a symptom code or text, a
    referenced Condition) may be a new symptom: then nothing suggests waiting."""
    draft = order.draft
    cancer = situation.context.cancer
    routine = knowledge.pathway.routineReasons.concernCodes
    concern_system = knowledge.cards.clinicalConcernSystem
    for code in draft.reason_codes:
        if code.system == concern_system and code.code in routine:
            continue
        if (code.system, code.code) == (cancer.code.system, cancer.code.code):
            continue
        return False
    if any(ref != cancer.condition.reference for ref in draft.reason_references):
        return False
    coded_texts = {c.display for c in draft.reason_codes if c.display}
    return all(t in coded_texts or t == cancer.display for t in draft.reason_texts)


def _order_finding(
    order: ImagingOrder, situation: PatientSituation, knowledge: Knowledge
) -> Finding | None:
    protocol = knowledge.imaging.recommendedProtocol
    implant = situation.implant
    cell = situation.cell(order, rated_procedure(order, knowledge.ratings))
    if order.modality in MRI_MODALITIES:
        head_neck = order.covers_any(protocol.headNeckRegions)
        if implant is not None and head_neck and implant.rules_out_mri:
            if cell is not None and not cell.offered:
                return DiscussWithRadiology(order, implant, situation.contrast_risks())
            return MriContraindicated(order, implant)
        incomplete = assess_mri(order, protocol)
        conditional = implant is not None and implant.mr_status == "conditional"
        if incomplete is None and implant is not None and head_neck and conditional:
            return MriConditionalImplant(order, implant)
        if incomplete is None and head_neck and cell is not None and cell.ordered_tier != "clear":
            return ContrastConcern(order)
        return incomplete
    if order.modality == "CT":
        neck = order.regions_known and order.regions & NECK_REGIONS
        if neck and cell is not None and cell.kind == "discuss" and implant is not None:
            return DiscussWithRadiology(order, implant, situation.contrast_risks())
        if neck and cell is not None and cell.ordered_tier != "clear":
            return ContrastConcern(order)
        return _ct_neck(order, cell)
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
