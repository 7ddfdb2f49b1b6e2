"""The safety facts of the record, as the decision table's factor values: each contrast
allergy with its severity, one kidney category, and the MR safety of implants; pure functions,
with evidence.

Sources: the ACR Manual on Contrast Media and the ACR-NKF consensus statements on iodinated (2020)
and on gadolinium-based contrast (2021), as hooks/knowledge/contrast-safety.json and
safety-table.json cite them. Severity comes from the reactions' severity, else the allergy's
criticality, else it is unknown (radiology reviews it). Kidney function: a recent acute kidney
injury first; then dialysis (anuric only when the record says so); then the latest recent eGFR,
which outranks an older chronic kidney disease code (after a kidney transplant too); then such a
code; then an older eGFR below 30 (stale: recheck before contrast).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from cds_service.clinical.patient_record import PatientRecord
from cds_service.clinical.reasoning import described, usable
from cds_service.fhir.records import ObservationFact
from cds_service.knowledge.codesystems import normalise_code
from cds_service.knowledge.loader import ContrastSafetyKnowledge
from cds_service.knowledge.names import NameMatcher
from cds_service.knowledge.safety_table import KidneyCategory, Severity
from cds_service.knowledge.terminology import ValueSets

Agent = Literal["gadolinium", "iodinated"]
MrStatus = Literal["unsafe", "conditional", "safe", "unknown"]
#: Allergy and condition statuses that say the finding no longer holds.
INACTIVE = frozenset({"inactive", "resolved", "remission"})
#: Allergy verification statuses that do not establish it (say less: as for diagnoses).
UNESTABLISHED = frozenset({"refuted", "entered-in-error"})
FINAL_RESULTS = frozenset({"final", "amended", "corrected"})
_SEVERITY_RANK = {"none": 0, "mild-moderate": 1, "unknown": 2, "severe": 3}


@dataclass(frozen=True)
class ContrastAllergy:
    agent: Agent
    reference: str
    display: str
    severity: Severity = "unknown"


@dataclass(frozen=True)
class KidneyRisk:
    """The kidney category other than normal, and the eGFR or Condition that says it."""

    reference: str
    display: str
    category: KidneyCategory = "egfr-below-30"


@dataclass(frozen=True)
class ContrastSafety:
    allergies: tuple[ContrastAllergy, ...] = ()
    kidney: KidneyRisk | None = None

    def allergy(self, agent: Agent) -> ContrastAllergy | None:
        return next((a for a in self.allergies if a.agent == agent), None)

    def severity(self, agent: Agent) -> Severity:
        allergy = self.allergy(agent)
        return "none" if allergy is None else allergy.severity

    @property
    def kidney_category(self) -> KidneyCategory:
        return "normal" if self.kidney is None else self.kidney.category


#: A reaction's severity as the table reads it (AllergyIntolerance.reaction.severity).
_REACTION = {"mild": "mild-moderate", "moderate": "mild-moderate", "severe": "severe"}
#: AllergyIntolerance.criticality, when no reaction gives a severity.
_CRITICALITY = {"high": "severe", "low": "mild-moderate"}


def severity_of(severities: tuple[str, ...], criticality: str | None) -> Severity:
    """The worst reaction recorded, else the criticality, else unknown (never assumed mild)."""
    read = {_REACTION[s] for s in severities if s in _REACTION}
    if "severe" in read:
        return "severe"
    if read:
        return "mild-moderate"
    found = _CRITICALITY.get(criticality or "")
    return "severe" if found == "severe" else "mild-moderate" if found else "unknown"


class ContrastReader:
    """Built once from the knowledge (its name matchers compiled once)."""

    def __init__(self, knowledge: ContrastSafetyKnowledge, vs: ValueSets) -> None:
        self._k = knowledge
        self._vs = vs
        self._agents = {
            agent: (entry.label, NameMatcher(entry.patterns))
            for agent, entry in knowledge.agents.items()
        }
        self._egfr_names = NameMatcher(knowledge.egfrNamePatterns)
        self._egfr_codes = frozenset(
            (c.system, normalise_code(c.system, c.code))
            for c in vs.concepts(knowledge.egfrValueSet)
        )
        self._conditional = NameMatcher(knowledge.mrConditionalPatterns)
        self._safe = NameMatcher(knowledge.mrSafePatterns)
        self._unsafe = NameMatcher(knowledge.mrUnsafePatterns)
        self._cochlear = NameMatcher(knowledge.cochlearPatterns)
        self._cardiac = NameMatcher(knowledge.cardiacDevicePatterns)
        self._anuria = NameMatcher(knowledge.anuriaPatterns)

    def agent_label(self, agent: Agent) -> str:
        return self._agents[agent][0]

    def assess(self, record: PatientRecord, today: date) -> ContrastSafety:
        return ContrastSafety(self._allergies(record), self._kidney(record, today))

    def _allergies(self, record: PatientRecord) -> tuple[ContrastAllergy, ...]:
        found: dict[Agent, ContrastAllergy] = {}
        for allergy in record.allergies:
            if allergy.clinical_status in INACTIVE:
                continue
            if allergy.verification_status in UNESTABLISHED:
                continue
            for agent, (_, names) in self._agents.items():
                if any(names.match(n) for n in allergy.names):
                    severity = severity_of(allergy.severities, allergy.criticality)
                    known = found.get(agent)
                    if known is None or _SEVERITY_RANK[severity] > _SEVERITY_RANK[known.severity]:
                        found[agent] = ContrastAllergy(
                            agent, f"AllergyIntolerance/{allergy.id}", allergy.display, severity
                        )
        for condition in record.conditions:
            if "iodinated" in found or not usable(condition):
                continue
            if condition.clinical_status in INACTIVE:
                continue
            code = self._vs.match(self._k.iodinatedAllergyValueSet, condition.codes)
            if code is not None:
                name = described(condition.text, code, self._vs, self._k.iodinatedAllergyValueSet)
                found["iodinated"] = ContrastAllergy(
                    "iodinated", condition.reference, f"{name} ({code.label})"
                )
        return tuple(found[a] for a in ("gadolinium", "iodinated") if a in found)

    def _kidney(self, record: PatientRecord, today: date) -> KidneyRisk | None:
        """The one kidney category, with its evidence (None: normal, or nothing on record)."""
        k, vs = self._k, self._vs
        since = today - timedelta(days=k.egfrWithinDays)
        current = [c for c in record.conditions if usable(c) and c.clinical_status not in INACTIVE]

        def coded(valueset: str, recent: bool = False) -> KidneyRisk | None:
            for condition in current:
                code = vs.match(valueset, condition.codes)
                if code is None:
                    continue
                when = condition.onset or condition.recorded
                if recent and when is not None and when.value < since:
                    continue  # an acute kidney injury long ago is not a recent one
                name = described(condition.text, code, vs, valueset)
                return KidneyRisk(condition.reference, f"{name} ({code.label})")
            return None

        aki = coded(k.acuteKidneyInjuryValueSet, recent=True)
        if aki is not None:
            return KidneyRisk(aki.reference, aki.display, "aki")
        dialysis = coded(k.dialysisValueSet)
        if dialysis is not None:
            anuric = any(c.text and self._anuria.match(c.text) for c in current)
            category: KidneyCategory = "dialysis-anuric" if anuric else "dialysis-residual"
            return KidneyRisk(dialysis.reference, dialysis.display, category)
        results = self._egfr_results(record, today)
        recent = [o for o in results if o.date is not None and since <= o.date.value]
        if recent:
            latest = max(recent, key=lambda o: o.date.value if o.date else date.min)
            assert latest.value is not None
            if latest.value < k.egfrBelow:
                return self._egfr_risk(latest, "egfr-below-30")
            if latest.value < k.egfrCautionBelow:
                return self._egfr_risk(latest, "egfr-30-44")
            if coded(k.kidneyTransplantValueSet) is not None:
                return self._egfr_risk(latest, "transplant-normal")
            return None  # a recent eGFR of 45 or more outranks an older kidney code
        severe = coded(k.severeKidneyValueSet)
        if severe is not None:
            return KidneyRisk(severe.reference, severe.display, "egfr-below-30")
        if results:
            latest = max(results, key=lambda o: o.date.value if o.date else date.min)
            if latest.value is not None and latest.value < k.egfrBelow:
                return self._egfr_risk(latest, "egfr-below-30-stale")
        return None

    def _egfr_results(self, record: PatientRecord, today: date) -> list[ObservationFact]:
        return [
            o
            for o in record.observations
            if o.status in FINAL_RESULTS
            and o.value is not None
            and o.date is not None
            and o.date.value <= today
            and (
                any(
                    (c.system, normalise_code(c.system, c.code)) in self._egfr_codes
                    for c in o.codes
                )
                or (o.name is not None and self._egfr_names.match(o.name))
            )
        ]

    @staticmethod
    def _egfr_risk(result: ObservationFact, category: KidneyCategory) -> KidneyRisk:
        unit = f" {result.unit}" if result.unit else ""
        assert result.value is not None
        assert result.date is not None
        return KidneyRisk(
            f"Observation/{result.id}",
            f"eGFR {result.value:g}{unit} on {result.date.text}",
            category,
        )

    def mr_status(self, names: tuple[str, ...]) -> MrStatus:
        """What a device's safety labelling and names say of MRI (Unsafe wins over the rest)."""
        if any(self._unsafe.match(n) for n in names):
            return "unsafe"
        if any(self._conditional.match(n) for n in names):
            return "conditional"
        if any(self._safe.match(n) for n in names):
            return "safe"
        return "unknown"

    def cochlear(self, names: tuple[str, ...]) -> bool:
        return any(self._cochlear.match(n) for n in names)

    def cardiac(self, names: tuple[str, ...]) -> bool:
        """A pacemaker or defibrillator (its MR mode is programmed by the device team)."""
        return any(self._cardiac.match(n) for n in names)
