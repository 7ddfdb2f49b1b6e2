"""Order understanding: realistic orderable names and codes -> (modality, regions, contrast)."""

from __future__ import annotations

import pytest

from cds_service.clinical.orders import OrderClassifier
from cds_service.engine import CdsEngine
from cds_service.fhir.records import order_fact
from cds_service.knowledge.loader import Knowledge
from cds_service.knowledge.names import NameMatcher, normalise_text
from cds_service.knowledge.terminology import Code
from tests.conftest import draft_service_request as draft

LOCAL = "http://hospital.example.org/fhir/CodeSystem/imaging-orderables"
CPT = "http://www.ama-assn.org/go/cpt"
LOINC = "http://loinc.org"

FULL = frozenset({"orbits", "face", "neck"})
NECK = frozenset({"neck"})

# (order name as an EHR shows it, modality, regions, contrast)
ORDER_NAMES: list[tuple[str, str | None, frozenset[str], str]] = [
    ("MRI NECK SOFT TISSUE W WO CONTRAST", "MR", NECK, "without-and-with"),
    ("MR FACE/NECK W+WO", "MR", frozenset({"face", "neck"}), "without-and-with"),
    ("MRI orbits face neck w/wo IV contrast", "MR", FULL, "without-and-with"),
    ("MRI ORBITS FACE NECK WITHOUT AND WITH IV CONTRAST", "MR", FULL, "without-and-with"),
    ("MRI orbit/face/neck with and without contrast", "MR", FULL, "without-and-with"),
    ("MR ORBITS, FACE AND NECK W/ & W/O CONTRAST", "MR", FULL, "without-and-with"),
    ("MRI NECK W/O CONTRAST", "MR", NECK, "without"),
    ("MRI NECK WITHOUT CONTRAST", "MR", NECK, "without"),
    ("MRI NECK NON-CONTRAST", "MR", NECK, "without"),
    ("MRI NECK W CONTRAST", "MR", NECK, "with"),
    ("MRI neck with gadolinium", "MR", NECK, "with"),
    ("MRI NECK", "MR", NECK, "unspecified"),
    ("MRI SOFT TISSUE NECK WWO", "MR", NECK, "without-and-with"),
    ("MR NECK WO/W", "MR", NECK, "without-and-with"),
    ("MRI NECK PRE AND POST CONTRAST", "MR", NECK, "without-and-with"),
    ("Magnetic resonance imaging of neck with contrast", "MR", NECK, "with"),
    ("MRI HEAD AND NECK W WO CONTRAST", "MR", frozenset({"head", "neck"}), "without-and-with"),
    ("MRI PAROTID GLANDS W WO CONTRAST", "MR", frozenset({"salivary-gland"}), "without-and-with"),
    (
        "MRI SKULL BASE FACE NECK W WO",
        "MR",
        frozenset({"skull-base", "face", "neck"}),
        "without-and-with",
    ),
    ("MRI ORBITS W WO CONTRAST", "MR", frozenset({"orbits"}), "without-and-with"),
    ("MRI BRAIN W WO CONTRAST", "MR", frozenset({"brain"}), "without-and-with"),
    ("MRI IAC W WO CONTRAST", "MR", frozenset({"internal-auditory-canal"}), "without-and-with"),
    ("MRI C-SPINE WO CONTRAST", "MR", frozenset({"cervical-spine"}), "without"),
    ("MRI TMJ BILATERAL", "MR", frozenset({"temporomandibular-joint"}), "unspecified"),
    ("MRA NECK W WO CONTRAST", "MRA", NECK, "without-and-with"),
    ("MR ANGIOGRAPHY NECK", "MRA", NECK, "unspecified"),
    ("CT SOFT TISSUE NECK W CONTRAST", "CT", NECK, "with"),
    ("CT NECK WITH IV CONTRAST", "CT", NECK, "with"),
    ("CT NECK WO CONTRAST", "CT", NECK, "without"),
    ("CT NECK W WO CONTRAST", "CT", NECK, "without-and-with"),
    ("CT MAXILLOFACIAL WO CONTRAST", "CT", frozenset({"face"}), "without"),
    ("CT SINUS WO", "CT", frozenset({"sinuses"}), "without"),
    ("CT CHEST W CONTRAST", "CT", frozenset({"chest"}), "with"),
    ("CTA NECK W CONTRAST", "CTA", NECK, "with"),
    ("CT ANGIOGRAPHY HEAD AND NECK", "CTA", frozenset({"head", "neck"}), "unspecified"),
    # The PET/CT field names the skull base only as its upper limit: not a skull-base study.
    (
        "PET/CT SKULL BASE TO MID-THIGH",
        "PET-CT",
        frozenset({"skull-base-to-mid-thigh"}),
        "unspecified",
    ),
    ("NM PET CT FDG WHOLE BODY", "PET-CT", frozenset({"skull-base-to-mid-thigh"}), "unspecified"),
    (
        "FDG PET-CT SKULL BASE TO MIDTHIGH",
        "PET-CT",
        frozenset({"skull-base-to-mid-thigh"}),
        "unspecified",
    ),
    (
        "MRI FACE NECK SKULL BASE W WO",
        "MR",
        frozenset({"face", "neck", "skull-base"}),
        "without-and-with",
    ),
    ("PET/MRI HEAD NECK", "PET-MR", frozenset({"head", "neck"}), "unspecified"),
    ("US NECK SOFT TISSUE", "US", NECK, "unspecified"),
    ("ULTRASOUND PAROTID", "US", frozenset({"salivary-gland"}), "unspecified"),
    ("US THYROID", "US", frozenset({"thyroid"}), "unspecified"),
    ("DUPLEX CAROTID BILATERAL", "US", frozenset(), "unspecified"),
    ("XR CHEST 2 VIEWS", "XR", frozenset({"chest"}), "unspecified"),
    ("X-RAY NECK SOFT TISSUE", "XR", NECK, "unspecified"),
    ("NM BONE SCAN WHOLE BODY", "NM", frozenset({"skull-base-to-mid-thigh"}), "unspecified"),
    ("FLUORO MODIFIED BARIUM SWALLOW", "FL", frozenset(), "unspecified"),
    ("MAMMO SCREENING BILATERAL", "MG", frozenset(), "unspecified"),
    ("CBC WITH DIFFERENTIAL", None, frozenset(), "unspecified"),
    ("Referral to speech therapy", None, frozenset(), "unspecified"),
    ("BASIC METABOLIC PANEL", None, frozenset(), "unspecified"),
]


@pytest.fixture(scope="module")
def classifier(knowledge: Knowledge) -> OrderClassifier:
    return OrderClassifier(knowledge.imaging)


def test_the_name_table_is_large_and_varied() -> None:
    assert len(ORDER_NAMES) >= 40
    assert sum(1 for _, modality, _, _ in ORDER_NAMES if modality != "MR") >= 20


@pytest.mark.parametrize(("name", "modality", "regions", "contrast"), ORDER_NAMES)
def test_order_names_are_understood(
    classifier: OrderClassifier,
    name: str,
    modality: str | None,
    regions: frozenset[str],
    contrast: str,
) -> None:
    reading = classifier.read_text(name)
    assert (reading.modality, reading.regions, reading.contrast) == (modality, regions, contrast)


def test_names_only_under_a_local_code_are_read_from_the_display(
    classifier: OrderClassifier,
) -> None:
    order = order_fact(
        draft([{"system": LOCAL, "code": "IMG1", "display": "MRI NECK W WO CONTRAST"}]),
        classifier.known_systems,
    )
    result = classifier.classify(order)
    assert result is not None
    assert (result.modality, result.regions, result.contrast) == ("MR", NECK, "without-and-with")


def test_cpt_70543_alone_does_not_tell_the_regions(classifier: OrderClassifier) -> None:
    order = order_fact(draft([{"system": CPT, "code": "70543"}]), classifier.known_systems)
    result = classifier.classify(order)
    assert result is not None
    assert result.modality == "MR"
    assert not result.regions_known
    assert result.possible_regions == FULL
    assert result.contrast == "without-and-with"


def test_cpt_display_is_not_parsed_as_the_full_protocol(classifier: OrderClassifier) -> None:
    display = (
        "Magnetic resonance (eg, proton) imaging, orbit, face, and/or neck; without contrast "
        "material(s), followed by contrast material(s) and further sequences"
    )
    order = order_fact(
        draft([{"system": CPT, "code": "70543", "display": display}]), classifier.known_systems
    )
    result = classifier.classify(order)
    assert result is not None and not result.regions_known


def test_and_or_in_free_text_is_ambiguous(classifier: OrderClassifier) -> None:
    reading = classifier.read_text("MRI orbit, face, and/or neck w wo")
    assert reading.regions_ambiguous


def test_cpt_with_neck_only_text_reads_neck(classifier: OrderClassifier) -> None:
    order = order_fact(
        draft([{"system": CPT, "code": "70543"}], "MRI NECK W WO CONTRAST"),
        classifier.known_systems,
    )
    result = classifier.classify(order)
    assert result is not None and result.regions == NECK and result.regions_known


def test_loinc_full_protocol(classifier: OrderClassifier) -> None:
    order = order_fact(draft([{"system": LOINC, "code": "46310-9"}]), classifier.known_systems)
    result = classifier.classify(order)
    assert result is not None
    assert (result.modality, result.regions, result.contrast) == ("MR", FULL, "without-and-with")


def test_conflicting_contrast_is_unknown(classifier: OrderClassifier) -> None:
    order = order_fact(
        draft([{"system": CPT, "code": "70543"}], "MRI NECK WO CONTRAST"), classifier.known_systems
    )
    result = classifier.classify(order)
    assert result is not None and result.contrast == "conflicting"


def test_conflicting_modality_gives_no_reading(classifier: OrderClassifier) -> None:
    order = order_fact(
        draft([{"system": CPT, "code": "70491"}], "MRI NECK W WO CONTRAST"),
        classifier.known_systems,
    )
    assert classifier.classify(order) is None


def test_a_non_imaging_order_gives_no_reading(classifier: OrderClassifier) -> None:
    order = order_fact(draft(text="CBC WITH DIFFERENTIAL"), classifier.known_systems)
    assert classifier.classify(order) is None


def test_icd10_style_codes_are_not_mistaken_for_orders(engine: CdsEngine) -> None:
    order = order_fact(
        draft([{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C07"}]),
        engine.classifier.known_systems,
    )
    assert engine.classifier.classify(order) is None


def test_normalisation_rewrites_shorthand() -> None:
    assert normalise_text("MR FACE/NECK W+WO").split() == ["MR", "FACE", "NECK", "W", "AND", "WO"]
    assert "WO" in normalise_text("MRI neck w/o contrast").split()
    assert normalise_text("with and without").split() == ["W", "AND", "WO"]


@pytest.mark.parametrize(
    ("name", "contrast"),
    [
        ("CBC WITH DIFFERENTIAL", "unspecified"),
        ("MRI NECK WITH FACIAL NERVE PROTOCOL", "unspecified"),
        ("MRI NECK WO GADOLINIUM", "without"),
        ("CT NECK W", "with"),
        ("MRI NECK W WO", "without-and-with"),
    ],
)
def test_with_means_contrast_only_where_it_says_so(
    classifier: OrderClassifier, name: str, contrast: str
) -> None:
    assert classifier.read_text(name).contrast == contrast


def test_the_head_and_neck_pre_check_admits_every_head_and_neck_name(
    knowledge: Knowledge,
) -> None:
    head_neck = knowledge.imaging.recommendedProtocol.headNeckRegions
    gate = NameMatcher(
        [p for r in knowledge.imaging.text.regions if r.region in head_neck for p in r.patterns]
    )
    for name, _, regions, _ in ORDER_NAMES:
        if regions & head_neck:
            assert gate.could_match(name), name


def test_an_order_is_read_once_per_process_and_kept_within_bounds(knowledge: Knowledge) -> None:
    """Codes and names read together are kept like names (issue 32), within the same bounds:
    at most NAME_READINGS, and only when all their text is at most NAME_CACHE_CHARS."""
    from cds_service.clinical.orders import NAME_CACHE_CHARS, NAME_READINGS

    fresh = OrderClassifier(knowledge.imaging)
    codes = [Code("http://www.ama-assn.org/go/cpt", "70543", "MRI orbit face neck w/o & w/dye")]
    first = fresh.read(codes, ["MRI NECK SOFT TISSUE W WO CONTRAST"])
    assert fresh.read(list(codes), ["MRI NECK SOFT TISSUE W WO CONTRAST"]) is first
    assert first is not None and first.modality == "MR"
    info = fresh._cached_study.cache_info()
    assert (info.hits, info.misses, info.maxsize) == (1, 1, NAME_READINGS)
    long_name = "MRI NECK W WO CONTRAST " + "X" * NAME_CACHE_CHARS  # read, not kept
    assert (reading := fresh.read(codes, [long_name])) is not None and reading.modality == "MR"
    assert fresh._cached_study.cache_info().currsize == 1


def test_a_name_is_read_once_per_process_and_kept_within_bounds(knowledge: Knowledge) -> None:
    from cds_service.clinical.orders import NAME_READINGS

    fresh = OrderClassifier(knowledge.imaging)
    first = fresh.read_text("MRI NECK SOFT TISSUE W WO CONTRAST")
    assert fresh.read_text("MRI NECK SOFT TISSUE W WO CONTRAST") is first
    assert first.modality == "MR"
    assert first.contrast == "without-and-with"
    info = fresh._cached_read.cache_info()
    assert (info.hits, info.misses, info.maxsize) == (1, 1, NAME_READINGS)
    long_name = "MRI NECK W WO CONTRAST " + "X" * 2000  # past NAME_CACHE_CHARS: read, not kept
    assert fresh.read_text(long_name).modality == "MR"
    assert fresh._cached_read.cache_info().currsize == 1
