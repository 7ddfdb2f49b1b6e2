"""The compiled validator (cds_service.fhir.compiled_validation) says "valid" only where
fhir.resources accepts, decides most real resources without it, and changes no answer:
``validated`` gives what fhir.resources alone gives (``validated_by_models``), and the engine
answers every vignette the same with the reference forced."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import date
from functools import cache
from typing import Any

import pytest
from fhir.resources.R4B.observation import Observation
from fhir_core import types as fhir_types
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ConfigDict, TypeAdapter, ValidationError, field_validator

from benchmarks.validation import example_resources
from benchmarks.workload import make_request, non_imaging_calls, session_calls
from cds_service.engine import CdsEngine
from cds_service.fhir import records
from cds_service.fhir.compiled_validation import compile_validator, primitive_check
from cds_service.fhir.records import clean, proven_valid, validated, validated_by_models
from cds_service.knowledge.loader import Knowledge
from tests.conftest import SERVICE_ID, expected_outcomes, json_paths, vignette

MODELS: dict[str, type[FHIRAbstractModel]] = records._MODELS
TODAY = date(2026, 11, 24)
OUTCOMES = expected_outcomes()
#: The share of the example resources the fast path must decide on its own.
FAST_PATH_TARGET = 0.95


def accepted_by_fhir_resources(resource: dict[str, Any]) -> bool:
    """The reference: does fhir.resources accept the resource as it is?"""
    return accepted_by_fhir_resources_as(MODELS[resource["resourceType"]], resource)


def accepted_by_fhir_resources_as(model: type[FHIRAbstractModel], resource: dict[str, Any]) -> bool:
    try:
        model.model_validate(resource)
    except (ValidationError, ValueError, TypeError):
        return False
    return True


# --- 1. the example resources ------------------------------------------------------------------


@pytest.mark.parametrize("source", ["examples", "workload", "synthea"])
def test_example_resources_are_proven_valid_only_where_fhir_resources_accepts_them(
    source: str,
) -> None:
    resources = example_resources()[source]
    proven = 0
    for resource in resources:
        cleaned = clean(resource)
        if proven_valid(cleaned):
            assert accepted_by_fhir_resources(cleaned), json.dumps(resource)[:300]
            proven += 1
    share = proven / len(resources)
    print(f"{source}: {proven} of {len(resources)} resources on the fast path ({share:.1%})")
    assert share >= FAST_PATH_TARGET


def test_validated_answers_as_fhir_resources_alone_on_every_example_resource() -> None:
    for resources in example_resources().values():
        for resource in resources:
            assert validated(resource) == validated_by_models(resource)


# --- 2. mutated resources (hypothesis) ---------------------------------------------------------


def _sample_resources() -> list[dict[str, Any]]:
    """The resources mutated: each distinct example resource, and some of each Synthea type."""
    seen: dict[str, dict[str, Any]] = {}
    for resource in example_resources()["examples"] + example_resources()["synthea"][::40]:
        seen.setdefault(json.dumps(resource, sort_keys=True), resource)
    return list(seen.values())


SAMPLES = _sample_resources()


@cache
def _element_names() -> tuple[list[str], list[tuple[str, ...]]]:
    """Every element name of the R4B classes the validator compiled (primitive extensions and
    Python names too), and every ``[x]`` choice group's names."""
    records.compiled_validator()  # loads every datatype module reached
    classes: list[type[FHIRAbstractModel]] = []
    todo = list(FHIRAbstractModel.__subclasses__())
    while todo:
        klass = todo.pop()
        todo += klass.__subclasses__()
        if klass.__module__.startswith("fhir.resources.R4B."):
            classes.append(klass)
    names = {n for k in classes for name, f in k.model_fields.items() for n in (name, f.alias)}
    groups = {
        tuple(k.model_fields[name].alias or name for name in group)
        for k in classes
        for group in k.model_construct().get_one_of_many_fields().values()
    }
    return sorted(n for n in names if n), sorted(groups)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
DATE_LIKE = (
    r"-?[0-9]{1,5}(-[0-9]{1,2}(-[0-9]{1,2}"
    r"([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{0,12})?)?(Z|[+-][0-9]{2}:?[0-9]{2})?)?)?)?"
)
TRICKY_STRINGS = [
    *("2024-13-01", "2024-02-30", "2023-02-29", "2024-00-10", "2024-01-00", "0000", "0000-01-01"),
    *("2024-1-01", "20240101", "2024-01-01T10:00:00", "2024-01-01T10:00Z", "2024-01-01T24:00:00Z"),
    *("2024-01-01T23:59:60Z", "2024-01-01T10:00:00+15:00", "2024-01-01T10:00:00.1234567890Z"),
    *("2024-01-01T10:00:00+14:01", "2024-01-01 10:00:00Z", "2024-01-01T10:00:00z", "24:00:00"),
    *("10:00", "10:00:00Z", "23:59:60", " code", "code ", "a  b", "a\tb", "a\nb", "final\n"),
    *("", " ", "\t", "\n", "\u3000", "\u00a0", "\u00a0x", "\x1c", "\ud800", "x\udfff", "é", "-"),
    *(".", "a/b", "urn:oid:1.2.3", "urn:oid:3.1", "urn:oid:1.02", "true", "1", "1.0", "1e5"),
    *("NaN", "Infinity", "Patient/p", "http://x y", "#frag", "\u0662\u0660\u0662\u0664"),
]
tricky_strings = st.one_of(
    st.sampled_from(TRICKY_STRINGS),
    st.from_regex(DATE_LIKE, fullmatch=True),
    st.text(st.characters(categories=["Zs", "Cc", "Zl", "Zp"]), min_size=1, max_size=3),
    st.builds(lambda c, n: c * n, st.sampled_from("a9 -"), st.integers(60, 1100)),
    st.builds(lambda s: s * 600_000, st.just("ab")),
)
tricky_numbers = st.sampled_from(
    [
        *(0, -1, 1, True, False, 2**31 - 1, 2**31, -(2**31) - 1, 2**63, 2**64, 2**70, 10**18),
        *(10**19, -(10**40), 1.0, 0.5, -0.0, 1e-7, 1e300, float("inf"), float("-inf")),
        float("nan"),
    ]
)
any_value = st.one_of(
    json_values,
    tricky_strings,
    tricky_numbers,
    # fresh copies: a mutation may later change an object inside the resource
    st.sampled_from([None, {}, [], [None], [{}], [""], {"": None}]).map(copy.deepcopy),
)


def _objects(value: Any) -> list[dict[str, Any]]:
    """Every JSON object in a document, the root included."""
    found = [value] if isinstance(value, dict) else []
    children = value.values() if isinstance(value, dict) else value
    if isinstance(value, dict | list):
        for child in children:
            found += _objects(child)
    return found


def _at(document: Any, path: tuple[Any, ...]) -> Any:
    node = document
    for key in path:
        node = node[key]
    return node


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _replace(draw: st.DrawFn, resource: dict[str, Any]) -> None:
    """A value anywhere replaced: by one of another JSON type, or by anything tricky."""
    path = draw(st.sampled_from(json_paths(resource)))
    old = _at(resource, path)
    kind = _json_type(old)
    other_type = json_values.filter(lambda value: _json_type(value) != kind)
    _at(resource, path[:-1])[path[-1]] = draw(st.one_of(other_type, any_value))


def _delete(draw: st.DrawFn, resource: dict[str, Any]) -> None:
    """A field or an array item removed (a required element, a choice, a whole list entry)."""
    path = draw(st.sampled_from(json_paths(resource)))
    del _at(resource, path[:-1])[path[-1]]


def _add(draw: st.DrawFn, resource: dict[str, Any]) -> None:
    """A field added to some object: an element name of any class (maybe not this one's, or
    the Python name, or ``_status``), or any text; with any value or a copy of another's."""
    names, _ = _element_names()
    target = draw(st.sampled_from(_objects(resource)))
    key = draw(st.one_of(st.sampled_from(names), st.text(max_size=12)))
    copied = st.sampled_from([copy.deepcopy(_at(resource, p)) for p in json_paths(resource)])
    target[key] = draw(st.one_of(any_value, copied))


#: A plausible value of each type a choice element can take, by the suffix of its name.
CHOICE_VALUES: dict[str, Any] = {
    "String": "text",
    "Boolean": True,
    "Integer": 1,
    "DateTime": "2024-01-01",
    "Instant": "2024-01-01T00:00:00Z",
    "Time": "10:00:00",
    "Date": "2024-01-01",
    "Period": {"start": "2024-01-01"},
    "Age": {"value": 60},
    "Range": {"low": {"value": 1}},
    "Quantity": {"value": 1},
    "CodeableConcept": {"text": "text"},
    "Reference": {"reference": "Patient/p"},
    "Ratio": {"numerator": {"value": 1}},
    "Timing": {"event": ["2024-01-01"]},
    "Uri": "http://example.org",
    "Code": "code",
}


def _second_choice(draw: st.DrawFn, resource: dict[str, Any]) -> None:
    """A second element of an ``[x]`` group present in some object (two onset[x], ...)."""
    _, groups = _element_names()
    candidates = [
        (target, name)
        for target in _objects(resource)
        for group in groups
        if any(member in target for member in group)
        for name in group
        if name not in target and any(name.endswith(suffix) for suffix in CHOICE_VALUES)
    ]
    if not candidates:
        return
    target, name = draw(st.sampled_from(candidates))
    suffix = next(s for s in sorted(CHOICE_VALUES, key=len, reverse=True) if name.endswith(s))
    target[name] = copy.deepcopy(CHOICE_VALUES[suffix])


MUTATIONS: list[Callable[[st.DrawFn, dict[str, Any]], None]] = [
    _replace,
    _replace,
    _delete,
    _add,
    _second_choice,
]


@st.composite
def mutated_resources(draw: st.DrawFn) -> dict[str, Any]:
    """An example resource with 1-3 mutations anywhere in it."""
    resource: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        if json_paths(resource):
            draw(st.sampled_from(MUTATIONS))(draw, resource)
    return resource


def _outcome(validate: Callable[[dict[str, Any]], Any], resource: dict[str, Any]) -> Any:
    """What ``validate`` returns, or the type of what it raises (both must agree on either)."""
    try:
        return validate(resource)
    except Exception as error:  # compared, not swallowed
        return type(error)


def _check_mutated(resource: dict[str, Any]) -> None:
    cleaned = clean(resource)
    if isinstance(cleaned.get("resourceType"), str) and proven_valid(cleaned):
        assert cleaned["resourceType"] in MODELS
        assert accepted_by_fhir_resources(cleaned), json.dumps(cleaned)[:400]
    assert _outcome(validated, resource) == _outcome(validated_by_models, resource)


@settings(
    max_examples=2500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(resource=mutated_resources())
def test_a_mutated_resource_is_proven_valid_only_if_fhir_resources_accepts_it(
    resource: dict[str, Any],
) -> None:
    _check_mutated(resource)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(resource=mutated_resources(), cut=st.booleans())
def test_unclean_mutated_resources_too(resource: dict[str, Any], cut: bool) -> None:
    """The compiled checks hold on their own, before ``clean`` (nulls, "", {}, [] left in)."""
    if cut:
        resource.pop("id", None)
    if proven_valid(resource):
        assert accepted_by_fhir_resources(resource), json.dumps(resource)[:400]


# --- 2b. each primitive, against fhir.resources, through an extension's value[x] ---------------

PRIMITIVE_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "valueDate": st.from_regex(DATE_LIKE, fullmatch=True),
    "valueDateTime": st.from_regex(DATE_LIKE, fullmatch=True),
    "valueInstant": st.from_regex(DATE_LIKE, fullmatch=True),
    "valueTime": st.from_regex(
        r"[0-9]{1,2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{0,12})?)?Z?", fullmatch=True
    ),
    "valueCode": st.text(st.characters(codec="utf-8"), max_size=6) | tricky_strings,
    "valueId": st.from_regex(r"[A-Za-z0-9.\-]{0,300}\n?", fullmatch=True) | tricky_strings,
    "valueString": st.text(max_size=8) | tricky_strings,
    "valueMarkdown": st.text(max_size=8) | tricky_strings,
    "valueUri": st.text(max_size=8) | tricky_strings,
    "valueUrl": st.text(max_size=8) | tricky_strings,
    "valueCanonical": st.text(max_size=8) | tricky_strings,
    "valueOid": st.from_regex(r"urn:oid:[0-9](\.[0-9]{1,3}){0,3}\n?", fullmatch=True)
    | tricky_strings,
    "valueDecimal": tricky_numbers | st.integers() | st.floats(),
    "valueInteger": tricky_numbers | st.integers(),
    "valuePositiveInt": tricky_numbers | st.integers(-3, 3),
    "valueUnsignedInt": tricky_numbers | st.integers(-3, 3),
    "valueBoolean": tricky_numbers | st.sampled_from(["true", "false"]),
}


def _with_extension(element: str, value: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "o",
        "status": "final",
        "code": {"text": "eGFR"},
        "extension": [{"url": "http://example.org/x", element: value}],
    }


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), element=st.sampled_from(sorted(PRIMITIVE_VALUES)))
def test_a_primitive_is_proven_only_where_fhir_resources_takes_it(
    data: st.DataObject, element: str
) -> None:
    value = data.draw(st.one_of(PRIMITIVE_VALUES[element], any_value))
    resource = _with_extension(element, value)
    if proven_valid(resource):
        assert accepted_by_fhir_resources(resource), (element, value)


#: Values each primitive must prove (the checks are not simply "unsure").
PROVEN = [
    ("valueDate", "2024"),
    ("valueDate", "2024-02"),
    ("valueDate", "2024-02-29"),
    ("valueDateTime", "2024-02-29"),
    ("valueDateTime", "2022-06-22T12:31:08-04:00"),
    ("valueDateTime", "2017-01-01T00:00:00.1234567Z"),
    ("valueInstant", "2024-01-01T00:00:00+14:00"),
    ("valueTime", "23:59:59.5"),
    ("valueCode", "a b"),
    ("valueId", "a" * 255),
    ("valueString", " x "),
    ("valueString", "a" * 2_000_000),
    ("valueUri", "urn:uuid:c757873d-ec9a-4326-a141-556f43239520"),
    ("valueOid", "urn:oid:2.16.840.1"),
    ("valueDecimal", 1e-7),
    ("valueDecimal", 10**17),
    ("valueInteger", -(2**31)),
    ("valuePositiveInt", 1),
    ("valueUnsignedInt", 0),
    ("valueBoolean", False),
]
#: Values fhir.resources rejects (and the compiled checks must not prove).
REJECTED = [
    ("valueDate", "2024-02-30"),
    ("valueDate", "2023-02-29"),
    ("valueDate", "2024-13"),
    ("valueDate", "0000"),
    ("valueDate", "2024-01-01T00:00:00Z"),
    ("valueDateTime", "2024-01-01T10:00:00"),
    ("valueDateTime", "2024-04-31T10:00:00Z"),
    ("valueDateTime", "2024-01-01\n"),
    ("valueInstant", "2024-01-01"),
    ("valueTime", "24:00:00"),
    ("valueCode", " code"),
    ("valueCode", "code\n"),
    ("valueCode", "a  b"),
    ("valueCode", "a\u3000"),
    ("valueCode", "a\ud800"),
    ("valueId", "a" * 256),
    ("valueId", "a_b"),
    ("valueId", "ab\n"),
    ("valueString", "\u3000"),
    ("valueString", "x\udfff"),
    ("valueString", ""),
    ("valueOid", "urn:oid:3.1"),
    ("valueDecimal", True),
    ("valueInteger", 2**31),
    ("valueInteger", 2**64),
    ("valueInteger", [1]),
    ("valuePositiveInt", 0),
    ("valueUnsignedInt", -1),
    ("valueBoolean", [True]),
    ("valueCodeableConcept", [{"text": "x"}]),
    ("valueCodeableConcept", {"text": "x", "unknown": 1}),
    ("valueCodeableConcept", {"coding": [None]}),
]


#: Values fhir.resources takes that the compiled checks leave to it (pydantic's lax mode
#: converts them; nothing real sends them).
CONVERTED = [
    ("valueDecimal", "1.5"),
    ("valueInteger", 1.0),
    ("valueInteger", True),
    ("valueBoolean", "yes"),
    ("valueBoolean", 1),
    ("valueString", " "),
    ("valueDateTime", "2016-12-31T23:59:60Z"),
    ("valueCodeableConcept", '{"text": "x"}'),
]


@pytest.mark.parametrize(("element", "value"), CONVERTED)
def test_a_value_pydantic_converts_is_left_to_fhir_resources(element: str, value: Any) -> None:
    resource = _with_extension(element, value)
    assert accepted_by_fhir_resources(resource)
    assert not proven_valid(resource)
    assert validated(resource) == validated_by_models(resource) == resource


@pytest.mark.parametrize(("element", "value"), PROVEN)
def test_a_valid_primitive_is_proven(element: str, value: Any) -> None:
    resource = _with_extension(element, value)
    assert accepted_by_fhir_resources(resource)
    assert proven_valid(resource)


@pytest.mark.parametrize(("element", "value"), REJECTED)
def test_an_invalid_primitive_is_not_proven(element: str, value: Any) -> None:
    resource = _with_extension(element, value)
    assert not accepted_by_fhir_resources(resource)
    assert not proven_valid(resource)


@pytest.mark.parametrize(
    "div",
    ['<div xmlns="http://www.w3.org/1999/xhtml">x</div>', "x", " ", "<div>", "\ud800", 5, None],
)
@pytest.mark.parametrize("status", ["generated", "generated ", None])
def test_a_narrative_is_proven_only_where_fhir_resources_takes_it(div: Any, status: Any) -> None:
    """Narrative.div is xhtml, to which fhir_core gives no rule of its own."""
    narrative = {k: v for k, v in {"status": status, "div": div}.items() if v is not None}
    resource = {**_with_extension("valueString", "x"), "text": narrative}
    if proven_valid(resource):
        assert accepted_by_fhir_resources(resource)
    if div == "x" and status == "generated":
        assert proven_valid(resource)


CONDITION: dict[str, Any] = {
    "resourceType": "Condition",
    "id": "c",
    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "363478007"}]},
    "subject": {"reference": "Patient/p"},
    "onsetDateTime": "2024-01-01",
}


@pytest.mark.parametrize(
    "change",
    [
        {"onsetPeriod": {"start": "2024-01-01"}},  # two of onset[x]
        {"subject": None},  # a required element missing
        {"code": [{"text": "x"}]},  # a list where one value is
        {"category": {"text": "x"}},  # one value where a list is
        {"resourceType": "Procedure"},
        {"fhir_comments": 1},
        {"contained": [{"resourceType": "Patient", "id": "x", "birthDate": "2024-02-30"}]},
        {"extension": [{"valueString": "no url"}]},
        {"note": [{"text": "x", "time": "2024-02-30T00:00:00Z"}]},
        {"stage": [{"summary": {"text": "x"}, "type": {"coding": {"code": "x"}}}]},
    ],
)
def test_an_invalid_condition_is_not_proven(change: dict[str, Any]) -> None:
    resource = {k: v for k, v in {**CONDITION, **change}.items() if v is not None}
    assert not accepted_by_fhir_resources(resource)
    assert not proven_valid(resource)
    assert validated(resource) is None


def test_every_character_a_string_or_code_check_takes_pydantic_takes() -> None:
    """The proof of ``_string`` and ``_code`` rests on one fact about the two regex engines:
    every character pydantic-core's ``\\s`` matches, Python's ``str.isspace`` calls space.
    Checked here over all of Unicode, through fhir_core's own types."""
    characters = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    string_check = primitive_check(fhir_types.StringType)
    code_check = primitive_check(fhir_types.CodeType)
    assert string_check is not None and code_check is not None
    strings = [c for c in characters if string_check(c)]
    codes = [t for c in characters for t in (c, f"a{c}b", f"a {c}") if code_check(t)]
    assert len(strings) > 1_000_000 and len(codes) > 2_000_000
    TypeAdapter(list[fhir_types.StringType]).validate_python(strings)
    TypeAdapter(list[fhir_types.CodeType]).validate_python(codes)


def test_the_primitives_not_modelled_are_unsure() -> None:
    """base64Binary and uuid are not modelled; no annotation of another shape is guessed at."""
    assert primitive_check(fhir_types.Base64BinaryType) is None
    assert primitive_check(fhir_types.UuidType) is None
    assert primitive_check(str) is None
    integer = primitive_check(fhir_types.IntegerType)
    assert integer is not None and integer(1) and not integer(True)


class _ValidatedOtherwise(Observation):
    """A class that adds a rule of its own: the compiled checks cannot know it."""

    @field_validator("status")
    @classmethod
    def _never_final(cls, value: str) -> str:
        if value == "final":
            raise ValueError("no final observation")
        return value


class _Strict(Observation):
    """A class validated in strict mode: a date is no longer a string."""

    model_config = ConfigDict(strict=True)


@pytest.mark.parametrize("model", [_ValidatedOtherwise, _Strict])
def test_a_class_validated_otherwise_than_fhir_core_is_unsure(
    model: type[FHIRAbstractModel],
) -> None:
    resource = {**_with_extension("valueDate", "2024-01-01"), "issued": "2024-01-01T10:00:00Z"}
    assert proven_valid(resource)
    assert not accepted_by_fhir_resources_as(model, resource)
    compiled = compile_validator({"Observation": model})
    assert not compiled.proven_valid(resource)
    assert f"{model.__name__}.*" in compiled.unsure


def test_what_is_always_unsure_is_named() -> None:
    unsure = records.compiled_validator().unsure
    assert "ServiceRequest.contained" in unsure
    assert "Attachment.data" in unsure
    assert not any(name.endswith(".*") for name in unsure)  # no class left out whole


# --- 4. the engine, end to end -----------------------------------------------------------------


def _requests() -> list[tuple[str, dict[str, Any]]]:
    calls = [(OUTCOMES[name]["service"], vignette(name)) for name in sorted(OUTCOMES)]
    calls += [(SERVICE_ID, make_request(kind)) for kind in ("typical", "large", "negative")]
    return calls + session_calls(5) + non_imaging_calls()


def _answers(knowledge: Knowledge) -> list[Any]:
    """Every request's answer from a new engine (no cache shared with another run), every
    resource validated (relevance filter off), uuids deterministic."""
    engine = CdsEngine(knowledge, filter_irrelevant=False)
    return [
        engine.evaluate(service, copy.deepcopy(body), lambda: "u", TODAY).response.to_json()
        for service, body in _requests()
    ]


def test_every_answer_is_the_same_with_fhir_resources_alone(
    knowledge: Knowledge, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[bool] = []

    def counted(resource: dict[str, Any]) -> bool:
        answer = records.compiled_validator().proven_valid(resource)
        asked.append(answer)
        return answer

    monkeypatch.setattr(records, "proven_valid", counted)
    fast = _answers(knowledge)
    print(f"engine: {sum(asked)} of {len(asked)} resources and drafts on the fast path")
    assert sum(asked) >= FAST_PATH_TARGET * len(asked) > 0  # the fast path decided

    def unsure(_resource: dict[str, Any]) -> bool:
        asked.append(False)
        return False

    asked.clear()
    monkeypatch.setattr(records, "proven_valid", unsure)
    reference = _answers(knowledge)
    assert asked  # fhir.resources decided every resource
    assert fast == reference
    assert any(answer["cards"] for answer in fast)


def test_a_resource_type_that_is_not_a_string_is_no_resource() -> None:
    """A list or object as resourceType once raised TypeError (an unhashable key) in
    ``validated``: it is simply not a resource the service reads."""
    from cds_service.fhir.records import validated

    for kind in (["Condition"], {"a": 1}, 5):
        assert validated({"resourceType": kind, "id": "x"}) is None
