"""The contrast and implant safety decision table (hooks/knowledge/safety-table.json).

The table is data: each value of each factor (gadolinium allergy, iodinated allergy, kidney
category, implant) gives a tier per study and the sentences that go with it, each with its
source. ``SafetyTable.cell`` composes one cell from them: which rated study is recommended (or
none), which are offered, what the summary says, which safety lines, override reasons and PAMA
rating go with it. The loader walks every cell at start-up (``check_every_cell``), so a table
with a gap, a missing source or a summary too long for a card is refused before any request.
"""

from __future__ import annotations

import itertools
import string
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

Tier = Literal["clear", "caution", "identify", "avoid"]
AgentName = Literal["gadolinium", "iodinated"]
StudyKey = Literal["mri-protocol", "ct-neck-with-contrast"]
OrderedStudy = Literal[
    "mri-gadolinium", "mri-without", "ct-iodinated", "ct-without", "pet-ct", "us"
]
Severity = Literal["none", "mild-moderate", "severe", "unknown"]
KidneyCategory = Literal[
    "normal",
    "egfr-30-44",
    "egfr-below-30",
    "egfr-below-30-stale",
    "aki",
    "dialysis-anuric",
    "dialysis-residual",
    "transplant-normal",
]
ImplantCategory = Literal["none", "mr-conditional", "mr-unsafe", "labelling-unknown", "cochlear"]
Kind = Literal["quiet", "keep", "switch", "add", "options", "discuss", "identify"]
SUMMARY_LIMIT = 140
#: The longest evidence a safety line is filled with in the start-up check (a display).
_EVIDENCE = "x" * 60
#: The facts the summary joins, longest first, are cut to this many (the rest are in the lines).
MAX_FACTS = 2


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sourced(_Strict):
    text: str = Field(min_length=1)
    source: str = Field(min_length=1)


class AgentEntry(_Strict):
    short: str
    study: StudyKey


class StudyEntry(_Strict):
    label: str
    agent: AgentName | None
    mri: bool
    #: Which other studies a card about this order offers besides the recommended one:
    #: "caution" (those radiology decides on), "all" (every one that may be offered), "one"
    #: (the first only, added), "none".
    offer: Literal["caution", "all", "one", "none"]
    action: Literal["replace", "add"]


class AllergyEntry(_Strict):
    tier: Tier
    fact: str | None = None
    line: str | None = None
    source: str | None = None


class KidneyEntry(_Strict):
    tiers: dict[AgentName, Tier]
    fact: str | None = None
    #: What to do when kidney function alone qualifies the study left (the summary's advice).
    advice: str | None = None
    line: str | None = None
    source: str | None = None


class ImplantEntry(_Strict):
    mri: Tier
    fact: str | None = None
    line: str | None = None
    source: str | None = None
    cardiacLine: str | None = None
    cardiacSource: str | None = None


class Reason(_Strict):
    code: str
    display: str


class SafetyTableKnowledge(_Strict):
    description: str
    sources: dict[str, str]
    tierOrder: tuple[Tier, ...]
    candidates: tuple[StudyKey, ...]
    agents: dict[AgentName, AgentEntry]
    studies: dict[OrderedStudy, StudyEntry]
    procedures: dict[StudyKey, str]
    summaryNames: dict[StudyKey, str]
    allergy: dict[Severity, AllergyEntry]
    differentAgent: dict[AgentName, Sourced]
    otherClassLine: Sourced
    kidney: dict[KidneyCategory, KidneyEntry]
    implant: dict[ImplantCategory, ImplantEntry]
    summaries: dict[
        Literal[
            "switch", "add", "options", "keep", "discuss", "kidney", "identify", "identifyDiscuss"
        ],
        Sourced,
    ]
    overrideReasons: dict[Literal["allergy", "kidney", "recheck", "identify"], Reason]

    @model_validator(mode="after")
    def _no_gap(self) -> SafetyTableKnowledge:
        """Every value of every factor is in the table, and every value that is not clear
        says what it is (a fact for the summary) and why (a line), with a known source."""
        for name, values, literal in (
            ("allergy", self.allergy, Severity),
            ("kidney", self.kidney, KidneyCategory),
            ("implant", self.implant, ImplantCategory),
            ("studies", self.studies, OrderedStudy),
            ("agents", self.agents, AgentName),
        ):
            missing = set(get_args(literal)) - set(values)
            if missing:
                raise ValueError(f"{name}: no entry for {sorted(missing)}")
        if set(self.tierOrder) != set(get_args(Tier)):
            raise ValueError("tierOrder must list every tier once")
        if set(self.candidates) != set(get_args(StudyKey)) or set(self.procedures) != set(
            self.candidates
        ):
            raise ValueError("candidates and procedures must name both rated studies")
        for where, entry in self._sourced():
            for key in (s.strip() for s in entry.split(",")):
                if key not in self.sources:
                    raise ValueError(f"{where}: source {key!r} is not in sources")
        for where, text, allowed in self._texts():
            used = {name for _, name, _, _ in string.Formatter().parse(text) if name}
            if used - allowed:
                raise ValueError(f"{where}: unknown placeholders {sorted(used - allowed)}")
        for sev, a in self.allergy.items():
            if a.tier != "clear" and not (a.fact and a.line and a.source):
                raise ValueError(f"allergy.{sev}: a tier other than clear needs fact, line, source")
        for cat, k in self.kidney.items():
            if set(k.tiers) != set(get_args(AgentName)):
                raise ValueError(f"kidney.{cat}: a tier for each agent")
            if any(t != "clear" for t in k.tiers.values()) and not (k.fact and k.advice):
                raise ValueError(f"kidney.{cat}: a tier other than clear needs a fact and advice")
            if cat != "normal" and not (k.line and k.source):
                raise ValueError(f"kidney.{cat}: needs a line and its source")
        for device, i in self.implant.items():
            if i.mri in ("avoid", "identify") and not i.fact:
                raise ValueError(f"implant.{device}: a tier other than clear needs a fact")
            if i.line and not i.source:
                raise ValueError(f"implant.{device}: a line needs its source")
        return self

    def _texts(self) -> Iterator[tuple[str, str, set[str]]]:
        """Every text with the placeholders its renderer fills."""
        for sev, a in self.allergy.items():
            yield f"allergy.{sev}.line", a.line or "", {"agent", "evidence", "different_agent"}
            yield f"allergy.{sev}.fact", a.fact or "", {"agent"}
        for cat, k in self.kidney.items():
            yield f"kidney.{cat}.line", k.line or "", {"evidence"}
        for device, i in self.implant.items():
            yield f"implant.{device}.line", i.line or "", {"implant"}
            yield f"implant.{device}.cardiacLine", i.cardiacLine or "", {"implant"}
        for name, summary in self.summaries.items():
            yield f"summaries.{name}", summary.text, {"facts", "study", "advice"}
        yield "otherClassLine", self.otherClassLine.text, set()

    def _sourced(self) -> Iterator[tuple[str, str]]:
        entries: list[tuple[str, AllergyEntry | KidneyEntry | ImplantEntry]] = [
            *((f"allergy.{key}", e) for key, e in self.allergy.items()),
            *((f"kidney.{key}", e) for key, e in self.kidney.items()),
            *((f"implant.{key}", e) for key, e in self.implant.items()),
        ]
        for where, entry in entries:
            if entry.source:
                yield where, entry.source
        for name, s in self.summaries.items():
            yield f"summaries.{name}", s.source
        for agent, s in self.differentAgent.items():
            yield f"differentAgent.{agent}", s.source
        yield "otherClassLine", self.otherClassLine.source
        for key, i in self.implant.items():
            if i.cardiacLine:
                yield f"implant.{key}.cardiacLine", i.cardiacSource or ""


@dataclass(frozen=True)
class Factors:
    """One patient's safety facts, as the table's factor values."""

    gadolinium: Severity = "none"
    iodinated: Severity = "none"
    kidney: KidneyCategory = "normal"
    implant: ImplantCategory = "none"
    #: Device data was not sent: nothing may be said to prefer MRI over a CT ordered.
    devices_unknown: bool = False

    def allergy(self, agent: AgentName) -> Severity:
        return self.gadolinium if agent == "gadolinium" else self.iodinated


FactSource = Literal["gadolinium", "iodinated", "kidney", "implant"]


@dataclass(frozen=True)
class Cell:
    """What the table says for one order of one patient."""

    ordered: OrderedStudy
    #: The rated study this order already is (kept, never offered in its place), if any.
    kept: StudyKey | None
    tiers: dict[StudyKey, Tier]
    #: The ordered study's own tier (its contrast, or MRI itself with an implant).
    ordered_tier: Tier
    #: The one-click default (bold), or None.
    recommended: StudyKey | None
    #: Offered too, never as the default.
    options: tuple[StudyKey, ...]
    kind: Kind
    #: The facts that decide the advice (in the summary), by where they come from.
    drivers: tuple[FactSource, ...]
    #: Where the safety lines come from, in order (the kidney at most once).
    lines: tuple[str, ...]
    summary: str | None
    reasons: tuple[Literal["allergy", "kidney", "recheck", "identify"], ...]
    #: "not-appropriate" when the card recommends another study instead of the ordered one.
    rating: str | None

    @property
    def offered(self) -> tuple[StudyKey, ...]:
        return ((self.recommended,) if self.recommended else ()) + self.options


class SafetyTable:
    """The table, composed cell by cell."""

    def __init__(self, k: SafetyTableKnowledge) -> None:
        self.k = k
        self._rank = {t: i for i, t in enumerate(k.tierOrder)}
        #: Cells already composed: the table is finite (7,680 cells with the device-data
        #: flag), a cell is pure, and a request asks for its order's cell several times.
        self._cells: dict[tuple[Factors, OrderedStudy, StudyKey | None], Cell] = {}

    def worst(self, *tiers: Tier) -> Tier:
        return max(tiers, key=lambda t: self._rank[t])

    def agent_tier(self, f: Factors, agent: AgentName) -> Tier:
        return self.worst(
            self.k.allergy[f.allergy(agent)].tier, self.k.kidney[f.kidney].tiers[agent]
        )

    def study_tiers(self, f: Factors, ordered: OrderedStudy) -> dict[StudyKey, Tier]:
        mri = self.worst(self.k.implant[f.implant].mri, self.agent_tier(f, "gadolinium"))
        if f.devices_unknown and not self.k.studies[ordered].mri:
            mri = self.worst(mri, "caution")
        return {"mri-protocol": mri, "ct-neck-with-contrast": self.agent_tier(f, "iodinated")}

    def cell(self, f: Factors, ordered: OrderedStudy, kept: StudyKey | None = None) -> Cell:
        """The cell; its summary, lines and reasons name the facts that change the advice from
        what it is for the same order and implant with no allergy and normal kidney function."""
        key = (f, ordered, kept)
        found = self._cells.get(key)
        if found is None:
            found = self._cells[key] = self._compose(f, ordered, kept)
        return found

    def _compose(self, f: Factors, ordered: OrderedStudy, kept: StudyKey | None) -> Cell:
        choice = self._choose(f, ordered, kept)
        tiers, ordered_tier, recommended, offers, kind = choice
        base = self._choose(
            Factors(implant=f.implant, devices_unknown=f.devices_unknown), ordered, kept
        )
        changed = [
            s
            for s in self.k.candidates
            if (base[2] == s and recommended != s)
            or (s in base[3] and s not in offers)
            or (s in offers and tiers[s] == "caution")  # offered, radiology deciding how
        ]
        if changed:  # and why no other rated study takes its place
            now = {recommended, *offers}
            changed += [s for s in self.k.candidates if s not in now and s not in changed]
        drivers = self._drivers(f, ordered, changed) if kind != "quiet" else ()
        study = self.k.studies[ordered]
        lines = self._lines(f, study, recommended, tuple(offers), drivers)
        summary = self._summary(f, kind, tuple(offers), drivers)
        reasons = self._reasons(f, drivers, kind)
        rating = "not-appropriate" if ordered_tier == "avoid" and kind == "switch" else None
        return Cell(
            ordered,
            kept,
            tiers,
            ordered_tier,
            recommended,
            tuple(offers),
            kind,
            drivers,
            lines,
            summary,
            reasons,
            rating,
        )

    def _choose(
        self, f: Factors, ordered: OrderedStudy, kept: StudyKey | None
    ) -> tuple[dict[StudyKey, Tier], Tier, StudyKey | None, list[StudyKey], Kind]:
        """The tiers, the ordered study's tier, the recommended study, the others offered and
        the kind of advice."""
        k = self.k
        study = k.studies[ordered]
        tiers = self.study_tiers(f, ordered)
        implant_tier = k.implant[f.implant].mri
        if study.mri:
            ordered_tier = self.worst(
                implant_tier, *((self.agent_tier(f, study.agent),) if study.agent else ())
            )
        elif study.agent:
            ordered_tier = self.agent_tier(f, study.agent)
        else:
            ordered_tier = "clear"
        excluded: set[StudyKey] = set()
        if f.implant == "cochlear" and not study.mri:
            excluded.add("mri-protocol")  # a CT ordered is never changed to MRI
        identify = study.mri and implant_tier == "identify"
        usable = [s for s in k.candidates if s not in excluded and tiers[s] in ("clear", "caution")]
        recommended = next((s for s in usable if tiers[s] == "clear"), None)
        if identify:
            recommended = None  # identify the labelling first: CT is the fallback, not the default
        if study.offer == "none":
            recommended, offers = None, []
        elif study.offer == "one":
            first = recommended or next(iter(usable), None)
            offers = [first] if first and first != recommended else []
        elif study.offer == "all":
            offers = [s for s in usable if s != recommended]
        else:  # caution: what radiology decides on, and CT beside a cochlear MRI
            offers = [
                s
                for s in usable
                if s != recommended
                and (tiers[s] == "caution" or identify or (f.implant == "cochlear" and study.mri))
            ]
        offers = [s for s in offers if s != kept]
        added = study.action == "add" and recommended is not None
        if recommended is not None and added:
            offers, recommended = [recommended, *offers], None  # added beside it, if needed
        if kept is not None and tiers[kept] == "clear" and recommended is not None:
            # The order is a rated study with nothing against it: a study ranked above it is
            # an option, never the default in its place.
            if recommended != kept:
                offers = [recommended, *offers]
            kind: Kind = "quiet"
            recommended = None
        elif recommended is not None:
            kind = "switch"
        elif identify:
            kind = "identify"
        elif added:
            kind = "add"
        elif offers:
            kind = "options"
        elif study.offer == "none":
            kind = "quiet"
        elif kept is not None and tiers[kept] == "caution":
            kind = "keep"  # the order is the only study left: radiology decides how
        else:
            kind = "discuss"
        if kind == "discuss":
            offers = []
        return tiers, ordered_tier, recommended, offers, kind

    # --- parts of a cell ----------------------------------------------------------------------

    def _drivers(
        self, f: Factors, ordered: OrderedStudy, changed: list[StudyKey]
    ) -> tuple[FactSource, ...]:
        """The facts that lower the ordered study, or a rated study the advice would otherwise
        recommend or offer (``changed``): the ordered study's first."""
        k = self.k
        study = k.studies[ordered]
        found: list[FactSource] = []

        def lowers(agent: AgentName) -> None:
            if k.allergy[f.allergy(agent)].tier != "clear" and agent not in found:
                found.append(agent)
            if k.kidney[f.kidney].tiers[agent] != "clear" and "kidney" not in found:
                found.append("kidney")

        if study.mri and k.implant[f.implant].mri != "clear":
            found.append("implant")
        if study.agent:
            lowers(study.agent)
        for s in changed:
            if s == "mri-protocol":
                lowers("gadolinium")
                if k.implant[f.implant].mri != "clear" and "implant" not in found:
                    found.append("implant")
            else:
                lowers("iodinated")
        return tuple(found)

    def fact(self, f: Factors, source: FactSource) -> str:
        k = self.k
        if source == "kidney":
            return k.kidney[f.kidney].fact or ""
        if source == "implant":
            return k.implant[f.implant].fact or ""
        fact = k.allergy[f.allergy(source)].fact or ""
        return fact.replace("{agent}", k.agents[source].short)

    def _summary(
        self,
        f: Factors,
        kind: Kind,
        offers: tuple[StudyKey, ...],
        drivers: tuple[FactSource, ...],
    ) -> str | None:
        """The card's summary when a contrast or kidney fact (or an implant to identify) decides
        the advice; None leaves the rule's own summary (an implant alone is its rule's text).
        A switch summary keeps ``{study}`` for the renderer (the study's name)."""
        k = self.k
        contrast = [d for d in drivers if d != "implant"]
        if kind == "quiet" or (not contrast and kind != "identify"):
            return None
        said = [d for d in drivers if d != "implant" or kind == "discuss"][:MAX_FACTS]
        facts = " and ".join(self.fact(f, d) for d in said)
        if kind == "identify":
            if "ct-neck-with-contrast" in offers or not said:
                return k.summaries["identify"].text
            return k.summaries["identifyDiscuss"].text.format(facts=facts)
        if not facts[1:2].isupper():  # "eGFR" stays as it is written
            facts = facts[:1].upper() + facts[1:]
        kidney_only = contrast == ["kidney"]
        stale = f.kidney == "egfr-below-30-stale"
        if kidney_only and (kind == "keep" or stale):
            advice = k.kidney[f.kidney].advice
            return k.summaries["kidney"].text.format(facts=facts, advice=advice)
        if kind in ("switch", "add"):
            return k.summaries[kind].text.format(facts=facts, study="{study}")
        return k.summaries[kind].text.format(facts=facts)

    def _lines(
        self,
        f: Factors,
        study: StudyEntry,
        recommended: StudyKey | None,
        offers: tuple[StudyKey, ...],
        drivers: tuple[FactSource, ...],
    ) -> tuple[str, ...]:
        """Which safety lines the card carries: every contrast reaction on record once a contrast
        study is in play, the other contrast class when it is the one offered, one kidney line,
        the implant's line (labelling to identify, MR Conditional, cochlear)."""
        k = self.k
        offered = ((recommended,) if recommended else ()) + offers
        agents: list[AgentName] = []
        if study.agent:
            agents.append(study.agent)
        for s in offered:
            agents += [a for a, e in k.agents.items() if e.study == s]
        agents += [a for a in k.agents if a in drivers]
        involved = list(dict.fromkeys(agents))
        lines: list[str] = []
        if study.mri and f.implant == "labelling-unknown":
            lines.append("implant")
        if involved:  # every contrast reaction on record, once a contrast study is in play
            lines += [f"allergy:{a}" for a in k.agents if f.allergy(a) != "none"]
        allergic = [a for a in k.agents if f.allergy(a) != "none"]
        other = [a for a in involved if f.allergy(a) == "none"]
        if allergic and any(k.agents[a].study in offered for a in other):
            lines.append("other-class")
        if f.kidney != "normal" and involved:
            lines.append("kidney")
        mri_involved = study.mri or "mri-protocol" in offered
        if mri_involved and f.implant in ("mr-conditional", "cochlear"):
            lines.append("implant")
        return tuple(lines)

    def _reasons(
        self, f: Factors, drivers: tuple[FactSource, ...], kind: Kind
    ) -> tuple[Literal["allergy", "kidney", "recheck", "identify"], ...]:
        reasons: list[Literal["allergy", "kidney", "recheck", "identify"]] = []
        if kind == "quiet":
            return ()
        if kind == "identify":
            reasons.append("identify")
        if "gadolinium" in drivers or "iodinated" in drivers:
            reasons.append("allergy")
        if "kidney" in drivers:
            reasons.append("recheck" if f.kidney == "egfr-below-30-stale" else "kidney")
        return tuple(reasons)

    # --- the whole table ----------------------------------------------------------------------

    def every_factors(self) -> Iterator[Factors]:
        for gad, iod, kidney, implant in itertools.product(
            get_args(Severity),
            get_args(Severity),
            get_args(KidneyCategory),
            get_args(ImplantCategory),
        ):
            yield Factors(gad, iod, kidney, implant)

    def every_cell(self) -> Iterator[tuple[Factors, Cell]]:
        """Every cell: ordered study x allergies x kidney x implant (the rated studies as kept)."""
        kept: dict[OrderedStudy, StudyKey | None] = {
            "mri-gadolinium": "mri-protocol",
            "ct-iodinated": "ct-neck-with-contrast",
        }
        for f in self.every_factors():
            for ordered in get_args(OrderedStudy):
                yield f, self.cell(f, ordered, kept.get(ordered))

    def summary_text(self, cell: Cell) -> str | None:
        """The cell's summary with the recommended study named (None: the rule's own)."""
        if cell.summary is None:
            return None
        shown = cell.recommended or (cell.options[0] if cell.options else None)
        name = self.k.summaryNames[shown] if shown else ""
        return cell.summary.replace("{study}", name)


def check_every_cell(table: SafetyTable) -> int:
    """Walk the whole table; raise ValueError on a cell that cannot be rendered (a summary
    over the card limit, a recommended study also offered, a discuss cell with an offer)."""
    count = 0
    for f, cell in table.every_cell():
        count += 1
        where = f"{cell.ordered} x {f}"
        summary = table.summary_text(cell)
        if summary is not None and len(summary) > SUMMARY_LIMIT:
            raise ValueError(f"{where}: summary over {SUMMARY_LIMIT} characters: {summary}")
        if cell.recommended is not None and cell.recommended in cell.options:
            raise ValueError(f"{where}: the recommended study is also an option")
        if cell.kind == "discuss" and cell.offered:
            raise ValueError(f"{where}: a discuss cell offers a study")
        if any(cell.tiers[s] in ("avoid", "identify") for s in cell.offered):
            raise ValueError(f"{where}: a study to avoid is offered")
    return count
