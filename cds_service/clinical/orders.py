"""Imaging order understanding: a ServiceRequest -> (modality, body regions, contrast).

Codes are looked up in hooks/knowledge/imaging-orders.json; text (code.text, displays of local
codings, bodySite text) is read with that file's vocabulary, because real orderables are often
local codes named like "MRI NECK SOFT TISSUE W WO CONTRAST". Where the sources disagree the
result says less: conflicting modalities give no modality, conflicting contrast gives unknown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Literal

import structlog

from cds_service.fhir.records import OrderFact, PriorImagingFact
from cds_service.knowledge.codesystems import normalise_code
from cds_service.knowledge.loader import CodedOrderable, Contrast, ImagingOrderKnowledge, Modality
from cds_service.knowledge.names import normalise_text, word_pattern
from cds_service.knowledge.terminology import Code

ContrastReading = Contrast | Literal["conflicting"]
log = structlog.get_logger("cds_service.orders")
#: Distinct order and study names whose reading each process keeps (a few hundred bytes each).
NAME_READINGS = 4096


@dataclass(frozen=True)
class StudyReading:
    """What an order, a past study or a report asks for or shows, as far as it can be read."""

    modality: Modality | None
    regions: frozenset[str]
    regions_known: bool
    possible_regions: frozenset[str]
    contrast: ContrastReading
    guided_procedure: bool

    def covers_any(self, regions: frozenset[str]) -> bool:
        """Known regions, or else the regions a code leaves open, touch ``regions``."""
        return bool((self.regions if self.regions_known else self.possible_regions) & regions)


@dataclass(frozen=True)
class ImagingOrder:
    """A draft imaging order and how it reads."""

    draft: OrderFact
    reading: StudyReading

    @property
    def reference(self) -> str:
        return self.draft.reference

    @property
    def modality(self) -> Modality | None:
        return self.reading.modality

    @property
    def regions(self) -> frozenset[str]:
        return self.reading.regions

    @property
    def regions_known(self) -> bool:
        return self.reading.regions_known

    @property
    def possible_regions(self) -> frozenset[str]:
        return self.reading.possible_regions

    @property
    def contrast(self) -> ContrastReading:
        return self.reading.contrast

    @property
    def guided_procedure(self) -> bool:
        return self.reading.guided_procedure

    def covers_any(self, regions: frozenset[str]) -> bool:
        return self.reading.covers_any(regions)


@dataclass(frozen=True)
class PriorStudy:
    """A study already done, and how it reads (read once, when the record is built)."""

    fact: PriorImagingFact
    reading: StudyReading


@dataclass(frozen=True)
class PendingOrder:
    """A head and neck imaging order not yet done (draft, active, on hold), and how it reads:
    imaging that someone has already asked for is not due."""

    fact: PriorImagingFact
    reading: StudyReading


@dataclass(frozen=True)
class TextReading:
    modality: Modality | None
    regions: frozenset[str]
    regions_ambiguous: bool
    contrast: Contrast
    #: The name says the imaging guides a procedure (a biopsy, an FNA): not a surveillance study.
    guided: bool = False


#: Longest name kept in the name cache (record texts are at most 1,024 characters anyway).
NAME_CACHE_CHARS = 1024


class OrderClassifier:
    """Reads orders with precompiled patterns and a code index built once from the knowledge.

    A site's orderable catalogue (``site_reads``: site code -> study) comes first: an order
    coded with a mapped site code is read as its study, whatever its name says (the site's CDS
    team reviewed that map); a name that reads otherwise is logged, never believed over it.
    """

    def __init__(
        self,
        knowledge: ImagingOrderKnowledge,
        site_reads: Mapping[tuple[str, str], tuple[str, str]] | None = None,
    ) -> None:
        self._coded: dict[tuple[str, str], CodedOrderable] = {
            (o.system, normalise_code(o.system, o.code)): o for o in knowledge.codedOrderables
        }
        self._site_reads = dict(site_reads or {})
        unknown = set(self._site_reads.values()) - self._coded.keys()
        if unknown:
            raise ValueError(f"site orderables map to studies not in the table: {sorted(unknown)}")
        vocab = knowledge.text
        self._ambiguous = word_pattern(vocab.ambiguousRegionPatterns)
        self._guided = word_pattern(vocab.guidedProcedurePatterns)
        self._modalities = [(m.modality, word_pattern(m.patterns)) for m in vocab.modalities]
        self._regions = [(r.region, word_pattern(r.patterns)) for r in vocab.regions]
        self._both = word_pattern(vocab.contrast.withoutAndWith)
        self._without = word_pattern(vocab.contrast.without)
        self._with = word_pattern(vocab.contrast.with_)
        #: Orderable and study names recur across patients ("MRI NECK W WO CONTRAST"): each
        #: distinct name is read once per process, the last NAME_READINGS of them kept.
        self._cached_read = lru_cache(maxsize=NAME_READINGS)(self._read_text)
        #: The same for whole orders and studies (their codes and names together): an ordering
        #: session reads the same drafts at each call, and a draft is read twice in one (before
        #: it is cleaned and validated, and after).
        self._cached_study = lru_cache(maxsize=NAME_READINGS)(self._read_study)

    @cached_property
    def coded_keys(self) -> frozenset[tuple[str, str]]:
        """(system, normalised code) of every coded orderable the table knows."""
        return frozenset(self._coded)

    @cached_property
    def known_systems(self) -> frozenset[str]:
        """Systems whose codes are read from the table (their displays are never parsed)."""
        return frozenset(system for system, _ in self._coded)

    def _named_regions(self, text: str) -> frozenset[str]:
        """The regions a normalised name names. A region named only inside the wider words of
        another is not named: "SKULL BASE TO MID THIGH" is the PET/CT field, not also the
        skull base."""
        spans = {
            region: [m.span() for m in pattern.finditer(text)] for region, pattern in self._regions
        }
        wider = [(region, span) for region, found in spans.items() for span in found]

        def inside(region: str, span: tuple[int, int]) -> bool:
            return any(
                other != region
                and start <= span[0]
                and span[1] <= end
                and end - start > span[1] - span[0]
                for other, (start, end) in wider
            )

        return frozenset(
            region
            for region, found in spans.items()
            if found and not all(inside(region, s) for s in found)
        )

    def read_text(self, text: str) -> TextReading:
        """How a name reads. Only names of at most NAME_CACHE_CHARS are kept (a name cache
        bounded by count alone once grew by 400 MB on 1 MB names); longer ones are read anew."""
        if len(text) <= NAME_CACHE_CHARS:
            return self._cached_read(text)
        return self._read_text(text)

    def _read_text(self, text: str) -> TextReading:
        ambiguous = bool(self._ambiguous.search(text.upper()))
        t = normalise_text(text)
        modality = next((m for m, pattern in self._modalities if pattern.search(t)), None)
        regions = self._named_regions(t)
        has_without, has_with = bool(self._without.search(t)), bool(self._with.search(t))
        contrast: Contrast
        if self._both.search(t) or (has_without and has_with):
            contrast = "without-and-with"
        elif has_without:
            contrast = "without"
        elif has_with:
            contrast = "with"
        else:
            contrast = "unspecified"
        guided = bool(self._guided.search(t))
        return TextReading(modality, regions, ambiguous, contrast, guided)

    def classify(self, order: OrderFact) -> ImagingOrder | None:
        """Return what the order asks for, or None when it is not a recognisable imaging order."""
        texts = [t for t in (order.text, *order.local_displays, *order.body_site_texts) if t]
        reading = self.read(order.codes, texts)
        return ImagingOrder(order, reading) if reading is not None else None

    def read(self, codes: Iterable[Code], texts: list[str]) -> StudyReading | None:
        """Read codes and names of an order, a past study or a report."""
        codes = tuple(codes)
        if self._site_reads:
            studies = [
                study
                for c in codes
                if (study := self._site_reads.get((c.system, c.code.strip()))) is not None
            ]
            if studies:
                return self._read_mapped(studies, codes, texts)
        return self._read(codes, texts)

    def _read_mapped(
        self, studies: list[tuple[str, str]], codes: tuple[Code, ...], texts: list[str]
    ) -> StudyReading | None:
        mapped = self._read([Code(system, code) for system, code in studies], [])
        if mapped is None:  # two site codes on one order mapped to different modalities
            return None
        named = self._read(
            [c for c in codes if (c.system, c.code.strip()) not in self._site_reads], texts
        )
        differs = _differences(mapped, named) if named is not None else []
        if differs:
            log.info(
                "site-map-overrides-name",
                studies=sorted(f"{system}|{code}" for system, code in studies),
                differs=differs,
            )
        return mapped

    def _read(self, codes: Iterable[Code], texts: list[str]) -> StudyReading | None:
        """How codes and names read together; kept per process when all their text together
        is at most NAME_CACHE_CHARS, else read anew. An order's are mostly a catalogue entry's;
        a past study's or report's name may be a clinician's text: kept like the names above
        (the last NAME_READINGS, in this process's memory only; README "Security")."""
        code_key, text_key = tuple(codes), tuple(texts)
        size = sum(map(len, text_key)) + sum(
            len(c.system) + len(c.code) + len(c.display or "") for c in code_key
        )
        if size <= NAME_CACHE_CHARS:
            return self._cached_study(code_key, text_key)
        return self._read_study(code_key, text_key)

    def _read_study(self, codes: tuple[Code, ...], texts: tuple[str, ...]) -> StudyReading | None:
        coded = [
            self._coded[key]
            for c in codes
            if (key := (c.system, normalise_code(c.system, c.code))) in self._coded
        ]
        readings = [self.read_text(t) for t in texts]

        modalities = {o.modality for o in coded} | {r.modality for r in readings if r.modality}
        if len(modalities) != 1:
            return None  # not imaging, or codes and text disagree on the modality: say nothing
        modality = modalities.pop()

        regions: set[str] = set()
        for o in coded:
            if o.regionsExact:
                regions.update(o.regions)
        for r in readings:
            if not r.regions_ambiguous:
                regions.update(r.regions)

        contrasts = {o.contrast for o in coded} | {r.contrast for r in readings}
        contrasts.discard("unspecified")
        contrast: ContrastReading
        if not contrasts:
            contrast = "unspecified"
        elif len(contrasts) == 1:
            contrast = contrasts.pop()
        else:
            contrast = "conflicting"

        possible = frozenset(r for o in coded if not o.regionsExact for r in o.regions)
        guided = any(r.guided for r in readings)
        return StudyReading(
            modality,
            frozenset(regions),
            bool(regions),
            possible,
            contrast,
            guided,
        )


def _differences(mapped: StudyReading, named: StudyReading) -> list[str]:
    """What a name says that its site map does not (only what the name does say)."""
    differs = []
    if named.modality != mapped.modality:
        differs.append("modality")
    if named.regions_known and named.regions != mapped.regions:
        differs.append("regions")
    if named.contrast != "unspecified" and named.contrast != mapped.contrast:
        differs.append("contrast")
    return differs
