"""A compiled validator: most resources proven valid FHIR without fhir.resources' model_validate.

``validated`` (cds_service.fhir.records) keeps a resource only when fhir.resources accepts it, and
``model_validate`` costs ~100-170 µs a resource: the largest single cost of a call with new
resources. Here the fhir.resources / fhir_core model metadata of the types the service reads is
walked once (the elements, their JSON names, list or single, the datatypes they nest, required
elements, ``[x]`` choice groups, the primitives' patterns and bounds as fhir_core declares them)
and turned into plain closures that give one of two answers:

* ``True``: **proven valid**, fhir.resources accepts the resource;
* ``False``: **unsure**. Not invalid: the caller then asks fhir.resources, as it always did.

So the rule is one-sided: the closures may say unsure about a valid resource (it only costs time),
never valid about an invalid one (that would change what the service reads). They accept only
what they can prove from fhir_core's own checks, and say unsure for everything else:

* a key that is not an element's JSON name: unknown fields, the Python names pydantic also takes
  (``populate_by_name``), primitive extensions (``_status``), ``fhir_comments``;
* a value of any other JSON type than the element's, even where pydantic's lax mode would convert
  it (``"5"`` or ``5.0`` for an integer, ``1`` for a boolean, a JSON string for an object); a
  null, an empty list (``clean`` has removed them before; fhir.resources judges what is left);
* ``contained`` resources, base64Binary and uuid values;
* strings that are only whitespace, that hold a lone surrogate (pydantic-core cannot take them)
  or, for codes, any whitespace but single inner spaces; leap seconds; more than 9 digits of a
  second; decimals past 18 digits;
* any model class whose validation fhir.resources extends beyond fhir_core's own (its own
  ``__init__``, validators or a model configuration other than the one read here): every value of
  that class is unsure.

What a pattern is proved against is fhir_core's own pattern: a primitive whose pattern is not one
of those read here (a new fhir_core release) is unsure. tests/test_compiled_validation.py holds
the proofs to their promise against fhir.resources itself.
"""

from __future__ import annotations

import datetime
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from annotated_types import Ge, GroupedMetadata, Le, MaxLen, MinLen
from fhir_core import types as fhir_types
from fhir_core.fhirabstractmodel import FHIR_COMMENTS_FIELD_NAME, FHIRAbstractModel

#: A compiled check: True when the value is proven valid, False when unsure.
Check = Callable[[Any], bool]
Model = type[FHIRAbstractModel]

#: Decimals are proved up to this magnitude (fhir_core turns an int into text first, and Python
#: refuses to write ints of more than 4,300 digits; nothing clinical comes near this).
DECIMAL_INT_LIMIT = 10**18
#: Integers are proved within 64 bits whatever bounds fhir_core gives (it gives 32-bit ones).
INT64_LIMIT = 2**63 - 1


def _never(_value: Any) -> bool:
    """The check of what is not modelled: always unsure."""
    return False


def _utf8(text: str) -> bool:
    """Whether pydantic-core can take the string at all: a lone surrogate (``"\\ud800"``, which
    Python's json module decodes) cannot be encoded as UTF-8, and pydantic rejects it."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --- primitives --------------------------------------------------------------------------------


def _boolean(value: Any) -> bool:
    """A JSON boolean (pydantic would also take 0, 1, "true": unsure)."""
    return type(value) is bool


def _any_text(value: Any) -> bool:
    """uri, canonical, url, markdown, xhtml: fhir_core's pattern (``\\S*``, ``\\s*(\\S|\\s)*``),
    searched as pydantic searches it, matches every string; url and xhtml add none."""
    return type(value) is str and _utf8(value)


def _string(value: Any) -> bool:
    """A FHIR string: fhir_core's ``[ \\r\\n\\t\\S]+`` must find one character. A string with a
    character Python does not call whitespace has one, since every character the pattern's
    ``\\s`` (pydantic-core's Unicode White_Space) matches Python calls whitespace too (a test
    checks all of Unicode). Only-whitespace strings are unsure."""
    return type(value) is str and value != "" and not value.isspace() and _utf8(value)


#: Python's ``\s`` is ``str.isspace``: wider than pydantic-core's, so no character this takes
#: for non-space is space there. Only single ASCII spaces inside; fullmatch, so no ``$`` that
#: lets a trailing newline through as Python's ``$`` would.
_CODE = re.compile(r"[^\s]+(?: [^\s]+)*")


def _code(value: Any) -> bool:
    """A FHIR code: fhir_core's ``^[^\\s]+(\\s[^\\s]+)*$``, proved by a narrower pattern."""
    return type(value) is str and _CODE.fullmatch(value) is not None and _utf8(value)


_ID = re.compile(r"[A-Za-z0-9\-.]+")


def _id_characters(value: Any) -> bool:
    """fhir_core's id pattern ``^[A-Za-z0-9\\-.]+$``, matched whole (ASCII only)."""
    return type(value) is str and _ID.fullmatch(value) is not None


_OID = re.compile(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+")


def _oid(value: Any) -> bool:
    """fhir_core's oid pattern, matched whole."""
    return type(value) is str and _OID.fullmatch(value) is not None


#: fhir_core's string patterns, as its metadata yields them, and the check that proves each.
#: A pattern not listed (a change in fhir_core) makes its type unsure.
_PATTERNS: dict[str, Check] = {
    "[ \r\n\t\\S]+": _string,
    r"^[^\s]+(\s[^\s]+)*$": _code,
    r"^[A-Za-z0-9\-.]+$": _id_characters,
    r"\S*": _any_text,
    r"\s*(\S|\s)*": _any_text,
    r"^urn:oid:[0-2](\.(0|[1-9][0-9]*))+$": _oid,
}


def _decimal(value: Any) -> bool:
    """A JSON number fhir_core's Decimal takes: it matches its pattern against ``str(value)``
    (so ``True`` fails, and a float prints as ``1e-07``, which it allows)."""
    kind = type(value)
    if kind is int:
        if not -DECIMAL_INT_LIMIT < value < DECIMAL_INT_LIMIT:
            return False
    elif kind is not float or not math.isfinite(value):
        return False
    return fhir_types.Decimal.pattern.fullmatch(str(value)) is not None


def _integer(low: int, high: int) -> Check:
    """A JSON integer within fhir_core's bounds (a bool is an int in Python: unsure)."""

    def integer(value: Any) -> bool:
        return type(value) is int and low <= value <= high

    return integer


def _calendar_day(year: str, month: str | None, day: str | None) -> bool:
    """Whether a full date is a real day (pydantic's parser rejects 2024-02-30); a partial date
    is kept as text by fhir_core, whose pattern already bounds its month."""
    if day is None or month is None:
        return True
    try:
        datetime.date(int(year), int(month), int(day))
    except ValueError:
        return False
    return True


_DATE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?", re.ASCII)
#: fhir_core's patterns bound every part; these shapes only cut the text into its parts (and
#: keep at most 9 digits of a second).
_DATE_TIME = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T\d{2}:\d{2}:(\d{2})(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2}))?)?)?",
    re.ASCII,
)
_INSTANT = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T\d{2}:\d{2}:(\d{2})(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})", re.ASCII
)
_TIME = re.compile(r"\d{2}:\d{2}:(\d{2})(?:\.\d{1,9})?", re.ASCII)


def _date(value: Any) -> bool:
    """A FHIR date: fhir_core's pattern, and a real day when it is a full date."""
    if type(value) is not str or fhir_types.Date.pattern.fullmatch(value) is None:
        return False
    parts = _DATE.fullmatch(value)
    return parts is not None and _calendar_day(*parts.groups())


def _moment(value: Any, declared: re.Pattern[str], parts: re.Pattern[str]) -> bool:
    """A dateTime or an instant: fhir_core's pattern (``declared``), a real day, no leap second
    (fhir_core takes those through a path of its own: unsure)."""
    if type(value) is not str or declared.fullmatch(value) is None:
        return False
    found = parts.fullmatch(value)
    if found is None:
        return False
    year, month, day, second = found.groups()
    return second != "60" and _calendar_day(year, month, day)


def _date_time(value: Any) -> bool:
    """A FHIR dateTime (a time has seconds and a zone)."""
    return _moment(value, fhir_types.DateTime.pattern, _DATE_TIME)


def _instant(value: Any) -> bool:
    """A FHIR instant."""
    return _moment(value, fhir_types.Instant.pattern, _INSTANT)


def _time(value: Any) -> bool:
    """A FHIR time: fhir_core's pattern, no leap second."""
    if type(value) is not str or fhir_types.Time.pattern.fullmatch(value) is None:
        return False
    parts = _TIME.fullmatch(value)
    return parts is not None and parts.group(1) != "60"


#: Metadata classes whose validation is code of fhir_core's own (not a pattern), each with its
#: check; matched by exact class (Instant is a DateTime, with other rules).
_CODED: dict[type, Check] = {
    fhir_types.Date: _date,
    fhir_types.DateTime: _date_time,
    fhir_types.Instant: _instant,
    fhir_types.Time: _time,
    fhir_types.Decimal: _decimal,
    fhir_types.Url: _any_text,
    fhir_types.Xhtml: _any_text,
}


def _sized(check: Check, low: int, high: int | None) -> Check:
    """``check`` and a length between fhir_core's MinLen and MaxLen."""

    def sized(value: Any) -> bool:
        return check(value) and low <= len(value) and (high is None or len(value) <= high)

    return sized


def _constrained(base: Any, metadata: GroupedMetadata) -> Check | None:
    """The check of a str or int primitive from the constraints its metadata yields (what
    pydantic applies). None: not modelled."""
    items = list(metadata)
    if base is int:
        return _bounded_integer(items)
    if base is str:
        return _patterned_text(items)
    return None


def _bounded_integer(items: list[Any]) -> Check | None:
    """An int between fhir_core's Ge and Le (within 64 bits in any case)."""
    lows = [item.ge for item in items if isinstance(item, Ge)]
    highs = [item.le for item in items if isinstance(item, Le)]
    bounds = [*lows, *highs]
    if len(bounds) != len(items) or not all(type(bound) is int for bound in bounds):
        return None
    low = max([-INT64_LIMIT, *typing.cast(list[int], lows)])
    high = min([INT64_LIMIT, *typing.cast(list[int], highs)])
    return _integer(low, high)


def _patterned_text(items: list[Any]) -> Check | None:
    """A str of one of the known patterns, within fhir_core's MinLen and MaxLen."""
    patterns = [p for item in items if isinstance(p := getattr(item, "pattern", None), str)]
    shortest = [item.min_length for item in items if isinstance(item, MinLen)]
    longest = [item.max_length for item in items if isinstance(item, MaxLen)]
    if len(patterns) != 1 or patterns[0] not in _PATTERNS:
        return None
    if 1 + len(shortest) + len(longest) != len(items):
        return None
    check = _PATTERNS[patterns[0]]
    if not shortest and not longest:
        return check
    return _sized(check, max(shortest, default=0), min(longest, default=None))


def primitive_check(annotation: Any) -> Check | None:
    """The check of a primitive element's annotation (``bool``, or ``Annotated[base, X()]``
    with X one of fhir_core's types), or None when it is not modelled (base64Binary, uuid)."""
    if annotation is bool:
        return _boolean
    if typing.get_origin(annotation) is not Annotated:
        return None
    base, *metadata = typing.get_args(annotation)
    if len(metadata) != 1:
        return None
    (meta,) = metadata
    coded = _CODED.get(type(meta))
    if coded is not None:
        return coded
    if isinstance(meta, GroupedMetadata):
        return _constrained(base, meta)
    return None


# --- elements ----------------------------------------------------------------------------------

#: The model validators fhir_core itself declares; their rules are the ones compiled here.
_FHIR_CORE_VALIDATORS = frozenset(
    {"reject_null_complex_elements", "validate_after_model_construction"}
)
#: Methods whose fhir_core code the compiled checks follow: a class redefining one is unsure.
_FOLLOWED_METHODS = (
    "__init__",
    "reject_null_complex_elements",
    "validate_after_model_construction",
    "_validate_one_of_many",
    "_validate_required_primitive_elements",
)
#: The model configuration read here (fhir_core's); others (``strict``, ``str_max_length``...)
#: would change what a value of the right JSON type means.
_READ_CONFIG = frozenset({"extra", "validate_assignment", "populate_by_name"})


def _validates_as_read(model: Model) -> bool:
    """Whether fhir.resources validates this class with fhir_core's rules alone."""
    decorators = model.__pydantic_decorators__
    subclasses = [k for k in model.__mro__ if issubclass(k, FHIRAbstractModel)][:-1]
    return (
        set(decorators.model_validators) <= _FHIR_CORE_VALIDATORS
        and not decorators.field_validators
        and not decorators.validators
        and not decorators.root_validators
        and not any(name in vars(k) for k in subclasses for name in _FOLLOWED_METHODS)
        and set(model.model_config) <= _READ_CONFIG
    )


def _wraps_as_read(wrapper: type[fhir_types.FhirBase]) -> bool:
    """Whether a datatype wrapper validates a JSON object as FhirBase does: the model class's
    ``model_validate``, and nothing else."""
    base = fhir_types.FhirBase
    return all(
        getattr(wrapper, name).__func__ is getattr(base, name).__func__
        for name in ("fhir_model_validator", "__get_pydantic_core_schema__")
    )


def _without_none(annotation: Any) -> Any:
    """``X`` from ``X | None`` / ``Optional[X]`` (a null itself is never proven)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _list_of(item: Check) -> Check:
    """A non-empty JSON array of proven items."""

    def array(value: Any) -> bool:
        if type(value) is not list or not value:
            return False
        for entry in value:  # noqa: SIM110 - faster than all() over a generator, on the hot path
            if not item(entry):
                return False
        return True

    return array


def _exactly(text: str) -> Check:
    """A resource's ``resourceType``: its class's own name (fhir_core rejects any other)."""

    def same(value: Any) -> bool:
        return type(value) is str and value == text

    return same


#: One ``[x]`` group: its JSON names, and whether one of them is required.
Choice = tuple[tuple[str, ...], bool]


def _object_check(fields: dict[str, Check], required: list[str], choices: list[Choice]) -> Check:
    """A JSON object whose every key is a proven element, with every required element and at
    most (or, when required, exactly) one element of each choice group. The containers are
    filled after this closure is made, so recursive datatypes (Extension, Identifier) work."""
    field_of = fields.get

    def element(value: Any) -> bool:
        if type(value) is not dict:
            return False
        for key, item in value.items():
            check = field_of(key)
            if check is None or not check(item):
                return False
        for key in required:
            if key not in value:
                return False
        for names, needed in choices:
            present = 0
            for name in names:
                if name in value:
                    present += 1
            if present > 1 or (needed and not present):
                return False
        return True

    return element


class _Compiler:
    """Compiles model classes into checks, each class once (datatypes nest recursively)."""

    def __init__(self) -> None:
        self.checks: dict[Model, Check] = {}
        #: ``Class.element`` names that are always unsure (not modelled), for the docs and tests.
        self.unsure: set[str] = set()

    def element(self, model: Model) -> Check:
        found = self.checks.get(model)
        if found is not None:
            return found
        if not _validates_as_read(model):
            self.checks[model] = _never
            self.unsure.add(f"{model.__name__}.*")
            return _never
        fields: dict[str, Check] = {}
        required: list[str] = []
        choices: list[Choice] = []
        self.checks[model] = check = _object_check(fields, required, choices)
        if not self._fill(model, fields, required, choices):
            self.checks[model] = _never
            self.unsure.add(f"{model.__name__}.*")
            return _never
        return check

    def _fill(
        self, model: Model, fields: dict[str, Check], required: list[str], choices: list[Choice]
    ) -> bool:
        """Fill the element's containers from the model; False when its rules are not read."""
        aliases: dict[str, str] = {}
        for name, info in model.model_fields.items():
            alias = info.alias or name
            aliases[name] = alias
            if name.endswith("__ext") or name == FHIR_COMMENTS_FIELD_NAME:
                continue  # primitive extensions and comments: unsure everywhere
            field_check = self._field(info.annotation)
            if field_check is None:
                self.unsure.add(f"{model.__name__}.{alias}")
                continue
            fields[alias] = field_check
            if info.is_required():
                required.append(alias)
        if model.has_resource_base():
            fields["resourceType"] = _exactly(model.get_resource_type())
        instance = model.model_construct()
        for name, _extension in instance.get_required_fields():
            if name not in aliases.values():
                return False
            required.append(name)
        for names in instance.get_one_of_many_fields().values():
            if not names or not set(names) <= set(aliases):
                return False
            extra = model.model_fields[names[0]].json_schema_extra
            needed = isinstance(extra, dict) and extra.get("one_of_many_required") is True
            choices.append((tuple(aliases[name] for name in names), needed))
        return True

    def _field(self, annotation: Any) -> Check | None:
        inner = _without_none(annotation)
        if typing.get_origin(inner) is list:
            (item,) = typing.get_args(inner)
            item_check = self._value(_without_none(item))
            return None if item_check is None else _list_of(item_check)
        return self._value(inner)

    def _value(self, annotation: Any) -> Check | None:
        """A datatype (fhir.resources' ``XType`` wrapper of a model class) or a primitive."""
        if isinstance(annotation, type) and issubclass(annotation, fhir_types.FhirBase):
            if issubclass(annotation, fhir_types.FhirElementOrResourceBase):
                return None  # contained resources: any resource type
            if not _wraps_as_read(annotation):
                return None
            return self.element(annotation.get_model_klass())
        return primitive_check(annotation)


@dataclass(frozen=True)
class CompiledValidator:
    """The compiled checks of some resource types, by resourceType."""

    checks: Mapping[str, Check]
    #: ``Class.element`` names whose values are always unsure (``Class.*``: the whole class),
    #: besides primitive extensions (``_status``) and ``fhir_comments``, unsure everywhere.
    unsure: frozenset[str]

    def proven_valid(self, resource: Mapping[str, Any]) -> bool:
        """True when fhir.resources is proven to accept the (cleaned) resource; False when
        unsure: then ask fhir.resources. The checks recurse as the resource nests: call it after
        the depth check (``validated`` does)."""
        kind = resource.get("resourceType")
        if type(kind) is not str:
            return False
        check = self.checks.get(kind)
        return check is not None and check(resource)


def compile_validator(models: Mapping[str, Model]) -> CompiledValidator:
    """Compile the checks of ``models`` (resourceType -> fhir.resources class): ~70 ms the first
    time in a process (loading the datatypes' modules), a few ms after."""
    compiler = _Compiler()
    checks = {kind: compiler.element(model) for kind, model in models.items()}
    return CompiledValidator(checks, frozenset(compiler.unsure))
