"""The one reader of raw FHIR R4 JSON: each resource type -> the small, frozen fact the reasoning
reads (codes, names, status, dates).

The readers take the JSON as the client sent it and never raise: a field of the wrong shape, a
null, ``{}``, ``[]`` or an empty string reads as absent, exactly as if ``clean`` had removed it,
so reading before or after cleaning gives the same fact. The relevance filter and the fact
builders both use these readers (cds_service.clinical.patient_record): a field is read in one place.
Whether a resource is used at all is decided there too: it must also pass fhir.resources'
validation (``validated``, most often proven by the compiled validator that stands in for it),
or it is skipped and counted, never guessed at.
"""

from __future__ import annotations

import calendar
import copy
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

import orjson
from fhir.resources.R4B.allergyintolerance import AllergyIntolerance
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.imagingstudy import ImagingStudy
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.procedure import Procedure
from fhir.resources.R4B.servicerequest import ServiceRequest
from pydantic import ValidationError

from cds_service.fhir.compiled_validation import CompiledValidator, compile_validator
from cds_service.fhir.json_limits import MAX_RESOURCE_DEPTH, too_deep
from cds_service.knowledge.terminology import Code

_MODELS: dict[str, Any] = {
    "AllergyIntolerance": AllergyIntolerance,
    "Observation": Observation,
    "Condition": Condition,
    "Procedure": Procedure,
    "ServiceRequest": ServiceRequest,
    "Device": Device,
    "ImagingStudy": ImagingStudy,
    "DiagnosticReport": DiagnosticReport,
}
#: The resource types that can be validated: the record reads these and no other
#: (cds_service.clinical.patient_record.READ_TYPES is this set).
VALIDATED_TYPES = frozenset(_MODELS)
#: Statuses of a past study or report that say it was really done.
_DONE_IMAGING = {
    "ServiceRequest": {"completed"},
    "ImagingStudy": {"available"},
    "DiagnosticReport": {"final", "amended", "corrected", "appended", "preliminary"},
}
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


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


def shift_months(day: date, months: int) -> date:
    """``day`` moved by whole months, the day of month clamped to the month's length."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


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
    #: The order's reasons: codes (reasonCode codings), free texts, referenced resources.
    reason_codes: tuple[Code, ...] = ()
    reason_texts: tuple[str, ...] = ()
    reason_references: tuple[str, ...] = ()

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
    #: What Device.safety says (texts and displays), e.g. "MR Conditional".
    safety: tuple[str, ...] = ()

    @property
    def display(self) -> str:
        return self.names[0] if self.names else "implanted device"


@dataclass(frozen=True)
class AllergyFact:
    """An AllergyIntolerance: what the patient reacts to, by every name it is recorded under."""

    id: str
    names: tuple[str, ...]
    clinical_status: str | None
    verification_status: str | None
    #: AllergyIntolerance.criticality (low, high, unable-to-assess), when recorded.
    criticality: str | None = None
    #: Every reaction's severity (mild, moderate, severe), as recorded.
    severities: tuple[str, ...] = ()

    @property
    def display(self) -> str:
        return self.names[0] if self.names else "recorded allergy"


@dataclass(frozen=True)
class ObservationFact:
    """A numeric Observation (the engine reads eGFR results)."""

    id: str
    codes: tuple[Code, ...]
    name: str | None
    status: str | None
    value: float | None
    unit: str | None
    date: PartialDate | None


@dataclass(frozen=True)
class PriorImagingFact:
    """A study already done: a completed ServiceRequest, an ImagingStudy or a DiagnosticReport."""

    reference: str
    codes: tuple[Code, ...]
    texts: tuple[str, ...]
    date: PartialDate | None
    #: The resource's status (a report is read for its findings only when final).
    status: str | None = None
    #: A DiagnosticReport's conclusion (the impression, possibly with sections and addenda):
    #: what the radiologist concluded, read by clinical.report_reading. presentedForm (the
    #: whole report, often a PDF) is not read: findings and history never decide.
    conclusion: str | None = None
    #: Its conclusionCode texts and displays: a coded category wins over the text.
    coded_conclusion: tuple[str, ...] = ()

    @property
    def display(self) -> str:
        if self.texts:
            return self.texts[0]
        return next((c.display for c in self.codes if c.display), self.reference)


@dataclass(frozen=True)
class TissueReportFact:
    """A final pathology or cytology DiagnosticReport: tissue was examined on that day."""

    reference: str
    date: PartialDate | None


def tissue_report_names(r: Mapping[str, Any]) -> tuple[tuple[Code, ...], tuple[str, ...]]:
    """A DiagnosticReport's category codings, and its names (code text and displays)."""
    categories = tuple(c for concept in _objects(r.get("category")) for c in codes_of(concept))
    code = r.get("code")
    names = [text_of(code), *(c.display for c in codes_of(code))]
    return categories, tuple(n for n in names if n)


def tissue_report_fact(r: Mapping[str, Any]) -> TissueReportFact:
    return TissueReportFact(
        f"DiagnosticReport/{resource_id(r)}", _date(r, "effectiveDateTime", "issued")
    )


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


def json_copy(value: Any) -> Any:
    """A deep copy of JSON data: an orjson round trip, ~10x faster than ``copy.deepcopy``;
    ``copy.deepcopy`` for what orjson cannot write (integers past 64 bits, deep nesting)."""
    try:
        return orjson.loads(orjson.dumps(value))
    except TypeError:
        return copy.deepcopy(value)


#: Longest name, display, code or other text read from a record. Record texts are copied into
#: cards (detail, suggestion labels, the history note, reasons); a 4 MB ``Condition.code.text``
#: once made a 1.43 GB response. Real names are short; a text past this is not a name and reads
#: as absent (the service says less), never cut into something it did not say.
MAX_TEXT_CHARS = 1024
#: A report's conclusion is read for its finding, never copied into a card: it may be longer.
MAX_CONCLUSION_CHARS = 20_000


def _text(value: Any, limit: int = MAX_TEXT_CHARS) -> str | None:
    """A non-empty string of at most ``limit`` characters, else None."""
    return value if isinstance(value, str) and value and len(value) <= limit else None


def _object(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _objects(value: Any) -> list[Mapping[str, Any]]:
    """The JSON objects of an array (anything else in it, or a non-array, reads as none)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def codes_of(concept: Any) -> tuple[Code, ...]:
    """The codings of a CodeableConcept that have both a system and a code."""
    found = []
    for coding in _objects(_object(concept).get("coding")):
        system, code = _text(coding.get("system")), _text(coding.get("code"))
        if system and code:
            found.append(Code(system, code, _text(coding.get("display"))))
    return tuple(found)


def text_of(concept: Any) -> str | None:
    return _text(_object(concept).get("text"))


def _status_code(concept: Any) -> str | None:
    codes = codes_of(concept)
    return codes[0].code if codes else None


def _reference(value: Any) -> str | None:
    return _text(_object(value).get("reference"))


def _date(resource: Mapping[str, Any], *paths: str) -> PartialDate | None:
    """The first of ``paths`` (``a`` or ``a.b``) that holds a readable date."""
    for path in paths:
        head, _, tail = path.partition(".")
        value = resource.get(head)
        if tail:
            value = _object(value).get(tail)
        found = PartialDate.parse(value)
        if found is not None:
            return found
    return None


def resource_id(resource: Mapping[str, Any]) -> str | None:
    return _text(resource.get("id"))


def patient_of(reference: str) -> str | None:
    """The Patient id a reference names, or None when it names none that can be told.

    Read: ``Patient/p``, ``Patient/p/_history/2``, and the same at the end of an absolute URL
    (``https://ehr.example.org/fhir/Patient/p/_history/2``). Not read (None): a contained
    reference (``#x``), a ``urn:uuid:``/``urn:oid:`` (it names a Bundle entry, not a patient id),
    another resource type, a query, or anything else.
    """
    if reference.startswith(("#", "urn:")) or "?" in reference:
        return None
    segments = reference.split("/")
    if len(segments) >= 4 and segments[-2] == "_history":
        segments = segments[:-2]  # a versioned reference names the same patient
    if len(segments) < 2 or segments[-2] != "Patient":
        return None
    if len(segments) > 2 and not reference.startswith(("http://", "https://")):
        return None  # e.g. "Group/1/Patient/p": not a reference form FHIR has
    found = segments[-1]
    return found if _FHIR_ID.match(found) else None


SubjectTie = Literal["same", "other", "none"]


def subject_tie(resource: Mapping[str, Any], patient_id: str) -> SubjectTie:
    """Whether the resource's subject (or ``patient``) is the patient in context: ``same``;
    ``other`` when it names someone else or cannot be tied to a patient id; ``none`` when it
    names no subject at all."""
    field = resource.get("subject", resource.get("patient"))
    if field is None:
        return "none"
    ref = _reference(field)
    if ref is None:
        return "other"  # an identifier or display only: it cannot be tied to the patient
    return "same" if patient_of(ref) == patient_id else "other"


def validated(resource: Mapping[str, Any]) -> dict[str, Any] | None:
    """Clean and validate one resource; None when it is not valid FHIR, or nests deeper than any
    real resource does (checked first: cleaning and validation recurse). Only resources the
    reasoning keeps come here, so the depth is checked where it matters and not on the whole
    request (a walk of a 2,000-resource request would cost ~9 ms).

    The answer is fhir.resources' (``validated_by_models``), reached faster: the compiled
    validator (cds_service.fhir.compiled_validation) proves most resources valid in a tenth of
    the time, and fhir.resources decides whatever it is unsure of."""
    return _validated(resource, fast=True)


def validated_by_models(resource: Mapping[str, Any]) -> dict[str, Any] | None:
    """``validated`` with fhir.resources alone deciding: the reference the compiled validator
    is tested against."""
    return _validated(resource, fast=False)


@functools.cache
def compiled_validator() -> CompiledValidator:
    """The compiled checks of the types read, built on first use (~70 ms, most of it loading
    the datatypes' modules): a command that reads no resource does not pay it."""
    return compile_validator(_MODELS)


def proven_valid(resource: Mapping[str, Any]) -> bool:
    """Whether the compiled validator proves the cleaned resource valid (False: unsure)."""
    return compiled_validator().proven_valid(resource)


def _validated(resource: Mapping[str, Any], fast: bool) -> dict[str, Any] | None:
    if too_deep(resource, MAX_RESOURCE_DEPTH) is not None:
        return None
    cleaned = clean(resource)
    kind = cleaned.get("resourceType")
    model = _MODELS.get(kind) if isinstance(kind, str) else None  # a list is no type (nor key)
    if model is None or not isinstance(cleaned.get("id"), str):
        return None
    if fast and proven_valid(cleaned):
        return dict(cleaned)
    try:
        model.model_validate(cleaned)
    except (ValidationError, ValueError, TypeError):
        return None
    return dict(cleaned)


def condition_codes(
    c: Mapping[str, Any],
) -> tuple[tuple[Code, ...], tuple[Code, ...], tuple[Code, ...]]:
    """A Condition's codes: of its code, of its bodySite, of its extensions (ICD-O-3 histology)."""
    extension_codes = tuple(
        code
        for ext in _objects(c.get("extension"))
        for code in codes_of(ext.get("valueCodeableConcept"))
    )
    body_site_codes = tuple(code for site in _objects(c.get("bodySite")) for code in codes_of(site))
    return codes_of(c.get("code")), body_site_codes, extension_codes


def condition_fact(c: Mapping[str, Any]) -> ConditionFact | None:
    cid = resource_id(c)
    if cid is None:
        return None
    codes, body_site_codes, extension_codes = condition_codes(c)
    return ConditionFact(
        id=cid,
        codes=codes,
        text=text_of(c.get("code")),
        body_site_codes=body_site_codes,
        extension_codes=extension_codes,
        verification_status=_status_code(c.get("verificationStatus")),
        clinical_status=_status_code(c.get("clinicalStatus")),
        onset=_date(c, "onsetDateTime", "onsetPeriod.start"),
        recorded=_date(c, "recordedDate"),
    )


def procedure_fact(p: Mapping[str, Any]) -> ProcedureFact | None:
    pid = resource_id(p)
    if pid is None:
        return None
    single = _date(p, "performedDateTime")
    return ProcedureFact(
        id=pid,
        codes=codes_of(p.get("code")),
        text=text_of(p.get("code")),
        status=_text(p.get("status")) or "unknown",
        performed_start=single or _date(p, "performedPeriod.start"),
        performed_end=single or _date(p, "performedPeriod.end"),
        reason_references=tuple(
            ref for r in _objects(p.get("reasonReference")) if (ref := _reference(r)) is not None
        ),
    )


def order_fact(s: Mapping[str, Any], known_systems: frozenset[str]) -> OrderFact:
    """Build an OrderFact; displays of codings from unknown (local) systems are kept as text."""
    code = s.get("code")
    reasons = _objects(s.get("reasonCode"))
    return OrderFact(
        id=resource_id(s) or "",
        codes=codes_of(code),
        text=text_of(code),
        local_displays=tuple(
            display
            for c in _objects(_object(code).get("coding"))
            if (display := _text(c.get("display"))) and _text(c.get("system")) not in known_systems
        ),
        body_site_texts=tuple(t for b in _objects(s.get("bodySite")) if (t := text_of(b))),
        status=_text(s.get("status")) or "draft",
        subject=_reference(s.get("subject")),
        encounter=_reference(s.get("encounter")),
        requester=_reference(s.get("requester")),
        has_reason=bool(reasons or _objects(s.get("reasonReference"))),
        occurrence=_date(s, "occurrenceDateTime", "occurrencePeriod.start"),
        resource=s,
        reason_codes=tuple(c for concept in reasons for c in codes_of(concept)),
        reason_texts=tuple(t for concept in reasons if (t := text_of(concept))),
        reason_references=tuple(
            ref for r in _objects(s.get("reasonReference")) if (ref := _reference(r))
        ),
    )


def device_names(d: Mapping[str, Any]) -> tuple[tuple[Code, ...], tuple[str, ...]]:
    """A Device's type codes, and every name it goes by (names, type text, type displays)."""
    device_type = d.get("type")
    names = [n for entry in _objects(d.get("deviceName")) if (n := _text(entry.get("name")))]
    if (type_text := text_of(device_type)) is not None:
        names.append(type_text)
    codes = codes_of(device_type)
    names += [c.display for c in codes if c.display]
    return codes, tuple(names)


def device_fact(d: Mapping[str, Any]) -> DeviceFact | None:
    did = resource_id(d)
    if did is None:
        return None
    codes, names = device_names(d)
    safety = tuple(
        name
        for concept in _objects(d.get("safety"))
        for name in (text_of(concept), *(c.display for c in codes_of(concept)))
        if name
    )
    return DeviceFact(did, _text(d.get("status")), codes, names, safety)


def allergy_names(a: Mapping[str, Any]) -> tuple[str, ...]:
    """Every name an AllergyIntolerance gives its substance: code text and displays, and each
    reaction's substance text and displays."""
    concepts = [a.get("code")]
    concepts += [r.get("substance") for r in _objects(a.get("reaction"))]
    names: list[str] = []
    for concept in concepts:
        if (text := text_of(concept)) is not None:
            names.append(text)
        names += [
            display
            for c in _objects(_object(concept).get("coding"))
            if (display := _text(c.get("display")))
        ]
    return tuple(names)


def allergy_fact(a: Mapping[str, Any]) -> AllergyFact | None:
    aid = resource_id(a)
    if aid is None:
        return None
    return AllergyFact(
        aid,
        allergy_names(a),
        _status_code(a.get("clinicalStatus")),
        _status_code(a.get("verificationStatus")),
        _text(a.get("criticality")),
        tuple(
            severity
            for r in _objects(a.get("reaction"))
            if (severity := _text(r.get("severity"))) is not None
        ),
    )


def observation_fact(o: Mapping[str, Any]) -> ObservationFact | None:
    oid = resource_id(o)
    if oid is None:
        return None
    quantity = _object(o.get("valueQuantity"))
    value = quantity.get("value")
    number = (
        float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
    )
    return ObservationFact(
        oid,
        codes_of(o.get("code")),
        text_of(o.get("code")),
        _text(o.get("status")),
        number,
        _text(quantity.get("unit")) or _text(quantity.get("code")),
        _date(o, "effectiveDateTime", "effectivePeriod.end", "issued"),
    )


def prior_study_names(r: Mapping[str, Any]) -> tuple[tuple[Code, ...], tuple[str, ...]] | None:
    """A past study's codes and names, or None when the resource does not say it was done."""
    kind = _text(r.get("resourceType"))
    if kind not in _DONE_IMAGING or resource_id(r) is None:
        return None
    if _text(r.get("status")) not in _DONE_IMAGING[kind]:
        return None
    if kind == "ImagingStudy":
        codes = tuple(c for pc in _objects(r.get("procedureCode")) for c in codes_of(pc))
        return codes, tuple(t for t in [_text(r.get("description"))] if t)
    return codes_of(r.get("code")), tuple(t for t in [text_of(r.get("code"))] if t)


def pending_order_names(
    r: Mapping[str, Any], statuses: frozenset[str]
) -> tuple[tuple[Code, ...], tuple[str, ...]] | None:
    """A ServiceRequest's codes and names when its status is one of ``statuses`` (an order not
    yet done), else None."""
    if _text(r.get("resourceType")) != "ServiceRequest" or resource_id(r) is None:
        return None
    if _text(r.get("status")) not in statuses:
        return None
    return codes_of(r.get("code")), tuple(t for t in [text_of(r.get("code"))] if t)


def pending_order_fact(r: Mapping[str, Any], statuses: frozenset[str]) -> PriorImagingFact | None:
    """An order not yet done (its date: when it is for, else when it was written)."""
    found = pending_order_names(r, statuses)
    if found is None:
        return None
    codes, texts = found
    when = _date(r, "occurrenceDateTime", "occurrencePeriod.start", "authoredOn")
    return PriorImagingFact(f"ServiceRequest/{r['id']}", codes, texts, when, _text(r.get("status")))


def prior_imaging_fact(r: Mapping[str, Any]) -> PriorImagingFact | None:
    """A past study, or None when the resource does not say it was done."""
    found = prior_study_names(r)
    if found is None:
        return None
    kind = r["resourceType"]
    if kind == "ImagingStudy":
        when = _date(r, "started")
    elif kind == "DiagnosticReport":
        when = _date(r, "effectiveDateTime", "issued")
    else:
        when = _date(r, "occurrenceDateTime", "occurrencePeriod.end", "authoredOn")
    codes, texts = found
    conclusion: str | None = None
    coded: tuple[str, ...] = ()
    if kind == "DiagnosticReport":
        conclusion = _text(r.get("conclusion"), MAX_CONCLUSION_CHARS)
        said: list[str | None] = []
        for concept in _objects(r.get("conclusionCode")):
            said.append(text_of(concept))
            said += [c.display for c in codes_of(concept)]
        coded = tuple(dict.fromkeys(t for t in said if t))
    status = _text(r.get("status"))
    return PriorImagingFact(f"{kind}/{r['id']}", codes, texts, when, status, conclusion, coded)
