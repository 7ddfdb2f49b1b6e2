"""Is a study safe to suggest with one click? Contrast allergies, kidney function and the MR
safety of implants, read from the record: pure functions, with evidence.

Sources: the ACR Manual on Contrast Media and the ACR-NKF consensus statements on iodinated and
on gadolinium-based contrast (2020), as hooks/knowledge/contrast-safety.json cites them. Only what
they say is said: a recorded allergy keeps that contrast from the recommended suggestion; an eGFR
below 30 mL/min/1.73 m² (within the last 90 days) or dialysis marks the patient at risk from
iodinated contrast, and makes radiology choose a group II gadolinium-based agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from cds_service.clinical.patient_record import PatientRecord
from cds_service.clinical.reasoning import described, usable
from cds_service.knowledge.codesystems import normalise_code
from cds_service.knowledge.loader import ContrastSafetyKnowledge
from cds_service.knowledge.names import NameMatcher
from cds_service.knowledge.terminology import ValueSets

Agent = Literal["gadolinium", "iodinated"]
MrStatus = Literal["unsafe", "conditional", "safe", "unknown"]
#: Allergy and condition statuses that say the finding no longer holds.
INACTIVE = frozenset({"inactive", "resolved", "remission"})
#: Allergy verification statuses that do not establish it (say less: as for diagnoses).
UNESTABLISHED = frozenset({"refuted", "entered-in-error"})
FINAL_RESULTS = frozenset({"final", "amended", "corrected"})


@dataclass(frozen=True)
class ContrastAllergy:
    agent: Agent
    reference: str
    display: str


@dataclass(frozen=True)
class KidneyRisk:
    """Why kidney function puts the patient at risk from contrast (an eGFR or a Condition)."""

    reference: str
    display: str


@dataclass(frozen=True)
class ContrastSafety:
    allergies: tuple[ContrastAllergy, ...] = ()
    kidney: KidneyRisk | None = None

    def allergy(self, agent: Agent) -> ContrastAllergy | None:
        return next((a for a in self.allergies if a.agent == agent), None)


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
                if agent not in found and any(names.match(n) for n in allergy.names):
                    found[agent] = ContrastAllergy(
                        agent, f"AllergyIntolerance/{allergy.id}", allergy.display
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
        for condition in record.conditions:
            if not usable(condition) or condition.clinical_status in INACTIVE:
                continue
            code = self._vs.match(self._k.severeKidneyValueSet, condition.codes)
            if code is not None:
                name = described(condition.text, code, self._vs, self._k.severeKidneyValueSet)
                return KidneyRisk(condition.reference, f"{name} ({code.label})")
        since = today - timedelta(days=self._k.egfrWithinDays)
        results = [
            o
            for o in record.observations
            if o.status in FINAL_RESULTS
            and o.value is not None
            and o.date is not None
            and since <= o.date.value <= today
            and (
                any(
                    (c.system, normalise_code(c.system, c.code)) in self._egfr_codes
                    for c in o.codes
                )
                or (o.name is not None and self._egfr_names.match(o.name))
            )
        ]
        if not results:
            return None  # no recent result: nothing is claimed about kidney function
        latest = max(results, key=lambda o: o.date.value if o.date else date.min)
        if latest.value is None or latest.date is None or latest.value >= self._k.egfrBelow:
            return None
        unit = f" {latest.unit}" if latest.unit else ""
        return KidneyRisk(
            f"Observation/{latest.id}", f"eGFR {latest.value:g}{unit} on {latest.date.text}"
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
