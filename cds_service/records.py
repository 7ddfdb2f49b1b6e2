"""FHIR R4 JSON -> the small, frozen facts the reasoning reads.

Each resource is first cleaned of what real clients send but FHIR forbids (nulls, ``{}``,
``[]``, empty strings), then validated with fhir.resources' R4B models. A resource that still
fails validation is skipped and counted, never guessed at: with less data the service says less.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.imagingstudy import ImagingStudy
from fhir.resources.R4B.procedure import Procedure
from fhir.resources.R4B.servicerequest import ServiceRequest
from pydantic import ValidationError

from cds_service.terminology import Code

_MODELS: dict[str, Any] = {
    "Condition": Condition,
    "Procedure": Procedure,
    "ServiceRequest": ServiceRequest,
    "Device": Device,
    "ImagingStudy": ImagingStudy,
    "DiagnosticReport": DiagnosticReport,
}
#: Statuses of a past study or report that say it was really done.
_DONE_IMAGING = {
    "ServiceRequest": {"completed"},
    "ImagingStudy": {"available"},
    "DiagnosticReport": {"final", "amended", "corrected", "appended", "preliminary"},
}
_PATIENT_REF = re.compile(r"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})$")


@dataclass(frozen=True)
class PartialDate:
    """A FHIR date/dateTime cut to its date part, keeping the precision it was sent with."""

    text: str
    value: date

    @classmethod
    def parse(cls, raw: object) -> PartialDate | None:
        if not isinstance(raw, str):
            return None
        match = re.match(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?", raw)
        if not match:
            return None
        year, month, day = (int(g) if g else 1 for g in match.groups())
        try:
            return cls(match.group(0), date(year, month, day))
        except ValueError:
            return None


@dataclass(frozen=True)
class ConditionFact:
    id: str
    codes: tuple[Code, ...]
    text: str | None
    body_site_codes: tuple[Code, ...]
    extension_codes: tuple[Code, ...]
    verification_status: str | None
    clinical_status: str | None
    onset: PartialDate | None
    recorded: PartialDate | None

    @property
    def reference(self) -> str:
        return f"Condition/{self.id}"

    @property
    def display(self) -> str:
        if self.text:
            return self.text
        return next((c.display for c in self.codes if c.display), "Condition")


@dataclass(frozen=True)
class ProcedureFact:
    id: str
    codes: tuple[Code, ...]
    text: str | None
    status: str
    performed_start: PartialDate | None
    performed_end: PartialDate | None
    reason_references: tuple[str, ...]

    @property
    def display(self) -> str:
        if self.text:
            return self.text
        return next((c.display for c in self.codes if c.display), "Procedure")


@dataclass(frozen=True)
class OrderFact:
    """A ServiceRequest: a draft order from the hook context, or a prior one from the record."""

    id: str
    codes: tuple[Code, ...]
    text: str | None
    local_displays: tuple[str, ...]
    body_site_texts: tuple[str, ...]
    status: str
    subject: str | None
    encounter: str | None
    requester: str | None
    has_reason: bool
    occurrence: PartialDate | None
    resource: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def reference(self) -> str:
        return f"ServiceRequest/{self.id}"

    @property
    def display(self) -> str:
        if self.text:
            return self.text
        if self.local_displays:
            return self.local_displays[0]
        return next((c.display for c in self.codes if c.display), "imaging order")


@dataclass(frozen=True)
class DeviceFact:
    """An implanted or attached device, by its codes and names (often only names)."""

    id: str
    status: str | None
    codes: tuple[Code, ...]
    names: tuple[str, ...]

    @property
    def display(self) -> str:
        return self.names[0] if self.names else "implanted device"


@dataclass(frozen=True)
class PriorImagingFact:
    """A study already done: a completed ServiceRequest, an ImagingStudy or a DiagnosticReport."""

    reference: str
    codes: tuple[Code, ...]
    texts: tuple[str, ...]
    date: PartialDate | None

    @property
    def display(self) -> str:
        if self.texts:
            return self.texts[0]
        return next((c.display for c in self.codes if c.display), self.reference)


@dataclass(frozen=True)
class PatientRecord:
    """The patient's history as the reasoning sees it.

    ``devices_known`` is False when the client neither sent nor nulled device data: the
    reasoning then cannot claim that nothing contraindicates MRI.
    """

    patient_id: str
    conditions: tuple[ConditionFact, ...] = ()
    procedures: tuple[ProcedureFact, ...] = ()
    devices: tuple[DeviceFact, ...] = ()
    prior_imaging: tuple[PriorImagingFact, ...] = ()
    devices_known: bool = True
    skipped: int = 0


def clean(value: Any) -> Any:
    """Drop nulls, empty strings, empty objects and empty arrays, recursively.

    FHIR forbids them, yet clients send ``"coding": [{}]``; after cleaning, such an element
    simply is not there.
    """
    if isinstance(value, dict):
        cleaned = {k: clean(v) for k, v in value.items()}
        return {k: v for k, v in cleaned.items() if v not in (None, "", {}, [])}
    if isinstance(value, list):
        items = [clean(v) for v in value]
        return [v for v in items if v not in (None, "", {}, [])]
    return value


def _codes(concept: Any) -> tuple[Code, ...]:
    if not isinstance(concept, dict):
        return ()
    return tuple(
        Code(str(c["system"]), str(c["code"]), c.get("display"))
        for c in concept.get("coding", [])
        if isinstance(c, dict) and c.get("system") and c.get("code")
    )


def _status_code(concept: Any) -> str | None:
    codes = _codes(concept)
    return codes[0].code if codes else None


def _reference(value: Any) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("reference"), str):
        return str(value["reference"])
    return None


def names_other_patient(resource: Mapping[str, Any], patient_id: str) -> bool:
    """True when the resource's subject clearly names a different patient (contradiction)."""
    ref = _reference(resource.get("subject")) or _reference(resource.get("patient"))
    if ref is None:
        return False
    match = _PATIENT_REF.search(ref)
    return match is not None and match.group(1) != patient_id


def validated(resource: Mapping[str, Any]) -> dict[str, Any] | None:
    """Clean and validate one resource with fhir.resources; None when it is not valid FHIR."""
    cleaned = clean(resource)
    model = _MODELS.get(cleaned.get("resourceType", ""))
    if model is None or not isinstance(cleaned.get("id"), str):
        return None
    try:
        model.model_validate(cleaned)
    except (ValidationError, ValueError, TypeError):
        return None
    return dict(cleaned)


def condition_fact(c: Mapping[str, Any]) -> ConditionFact:
    extension_codes = tuple(
        code
        for ext in c.get("extension", [])
        if isinstance(ext, dict)
        for code in _codes(ext.get("valueCodeableConcept"))
    )
    onset = PartialDate.parse(c.get("onsetDateTime")) or PartialDate.parse(
        c.get("onsetPeriod", {}).get("start")
    )
    return ConditionFact(
        id=c["id"],
        codes=_codes(c.get("code")),
        text=c.get("code", {}).get("text"),
        body_site_codes=tuple(code for site in c.get("bodySite", []) for code in _codes(site)),
        extension_codes=extension_codes,
        verification_status=_status_code(c.get("verificationStatus")),
        clinical_status=_status_code(c.get("clinicalStatus")),
        onset=onset,
        recorded=PartialDate.parse(c.get("recordedDate")),
    )


def procedure_fact(p: Mapping[str, Any]) -> ProcedureFact:
    period = p.get("performedPeriod", {})
    single = PartialDate.parse(p.get("performedDateTime"))
    return ProcedureFact(
        id=p["id"],
        codes=_codes(p.get("code")),
        text=p.get("code", {}).get("text"),
        status=p["status"],
        performed_start=single or PartialDate.parse(period.get("start")),
        performed_end=single or PartialDate.parse(period.get("end")),
        reason_references=tuple(
            ref for r in p.get("reasonReference", []) if (ref := _reference(r)) is not None
        ),
    )


def order_fact(s: Mapping[str, Any], known_systems: frozenset[str]) -> OrderFact:
    """Build an OrderFact; displays of codings from unknown (local) systems are kept as text."""
    code = s.get("code", {})
    codings = [c for c in code.get("coding", []) if isinstance(c, dict)]
    local_displays = tuple(
        str(c["display"])
        for c in codings
        if c.get("display") and c.get("system") not in known_systems
    )
    return OrderFact(
        id=s["id"],
        codes=_codes(code),
        text=code.get("text"),
        local_displays=local_displays,
        body_site_texts=tuple(str(b["text"]) for b in s.get("bodySite", []) if b.get("text")),
        status=s["status"],
        subject=_reference(s.get("subject")),
        encounter=_reference(s.get("encounter")),
        requester=_reference(s.get("requester")),
        has_reason=bool(s.get("reasonCode") or s.get("reasonReference")),
        occurrence=PartialDate.parse(s.get("occurrenceDateTime"))
        or PartialDate.parse(s.get("occurrencePeriod", {}).get("start")),
        resource=s,
    )


def device_fact(d: Mapping[str, Any]) -> DeviceFact:
    names = [str(n["name"]) for n in d.get("deviceName", []) if n.get("name")]
    device_type = d.get("type", {})
    if device_type.get("text"):
        names.append(str(device_type["text"]))
    names += [str(c["display"]) for c in device_type.get("coding", []) if c.get("display")]
    return DeviceFact(d["id"], d.get("status"), _codes(device_type), tuple(names))


def prior_imaging_fact(r: Mapping[str, Any]) -> PriorImagingFact | None:
    """A past study, or None when the resource does not say it was done."""
    kind = r["resourceType"]
    if r.get("status") not in _DONE_IMAGING[kind]:
        return None
    if kind == "ImagingStudy":
        codes = tuple(c for pc in r.get("procedureCode", []) for c in _codes(pc))
        texts = tuple(t for t in [r.get("description")] if t)
        when = PartialDate.parse(r.get("started"))
    elif kind == "DiagnosticReport":
        codes = _codes(r.get("code"))
        texts = tuple(t for t in [r.get("code", {}).get("text")] if t)
        when = PartialDate.parse(r.get("effectiveDateTime")) or PartialDate.parse(r.get("issued"))
    else:
        codes = _codes(r.get("code"))
        texts = tuple(t for t in [r.get("code", {}).get("text")] if t)
        when = (
            PartialDate.parse(r.get("occurrenceDateTime"))
            or PartialDate.parse(r.get("occurrencePeriod", {}).get("end"))
            or PartialDate.parse(r.get("authoredOn"))
        )
    return PriorImagingFact(f"{kind}/{r['id']}", codes, texts, when)


def build_record(
    patient_id: str,
    resources: Iterable[Mapping[str, Any]],
    devices_known: bool = True,
    keep: Callable[[Mapping[str, Any]], bool] | None = None,
) -> PatientRecord:
    """Turn the patient's raw resources into a PatientRecord, skipping invalid or foreign ones.

    ``keep`` (see cds_service.relevance) drops, before validation, resources that cannot matter.
    """
    conditions: list[ConditionFact] = []
    procedures: list[ProcedureFact] = []
    devices: list[DeviceFact] = []
    priors: list[PriorImagingFact] = []
    skipped = 0
    seen: set[tuple[str, str]] = set()
    for raw in resources:
        if raw.get("resourceType") not in _MODELS or (keep is not None and not keep(raw)):
            continue
        resource = validated(raw)
        if resource is None or names_other_patient(resource, patient_id):
            skipped += 1
            continue
        key = (resource["resourceType"], resource["id"])
        if key in seen:  # the same resource from two prefetch keys or pages
            continue
        seen.add(key)
        kind = resource["resourceType"]
        if kind == "Condition":
            conditions.append(condition_fact(resource))
        elif kind == "Procedure":
            procedures.append(procedure_fact(resource))
        elif kind == "Device":
            devices.append(device_fact(resource))
        else:
            prior = prior_imaging_fact(resource)
            if prior is not None:
                priors.append(prior)
    return PatientRecord(
        patient_id,
        tuple(conditions),
        tuple(procedures),
        tuple(devices),
        tuple(priors),
        devices_known,
        skipped,
    )
