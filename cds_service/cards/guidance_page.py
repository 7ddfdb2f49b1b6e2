"""The guidance pages a card links to: one static HTML page per rule (and per variant of a rule's
problem), built once per knowledge version from hooks/knowledge alone.

Why: a card must be short enough to act on without scrolling (summary, one sentence of why, the
safety lines, a two-row comparison, one line of why this patient, the buttons). What a clinician
may still want to read — the rule's explanation, the scenario's full ACR table, where the patient
stands after the last report, the sources — is the same for every patient, so it lives on a page
the service serves at ``/guidance/<rule>`` (``/guidance/<rule>/<variant>``).

No patient data, by construction: a page is built from the card knowledge and the ACR table
only, and only from texts that have no placeholder (a text with a placeholder is filled with
record data on a card, so it is never used here). Nothing about a request reaches this module.
"""

from __future__ import annotations

import html
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from markdown_it import MarkdownIt

from cds_service.knowledge.loader import CardKnowledge, RatingKnowledge
from cds_service.knowledge.rules import RuleId

GUIDANCE_PATH = "/guidance"
DEFAULT_VARIANT = "default"

#: Texts of a rule that are not explanation: button labels, action descriptions, alternative
#: summaries and the line folded into other cards.
_NOT_EXPLANATION = ("Label", "Description")
_NOT_EXPLANATION_NAMES = frozenset({"lead"})
#: A problem variant's own explanation; the other variants' are left off its page.
_VARIANT_TEXTS: Mapping[str, frozenset[str]] = {
    "regions": frozenset({"contrastProblem"}),
    "without": frozenset({"regionsProblem"}),
    "with": frozenset({"regionsProblem"}),
    "unspecified": frozenset({"regionsProblem"}),
}
#: The pathway after the last report, told on every page (placeholder-free texts only).
_PATHWAY_RULES = (RuleId.TISSUE_CONFIRMATION_NEXT, RuleId.RECURRENCE_RESTAGING)

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d1d1f; }
main { max-width: 48rem; margin: 0 auto; padding: 1rem 1.25rem 2rem; background: #fff; }
h1 { font-size: 1.3rem; } h2 { font-size: 1.05rem; margin-top: 1.5rem; }
table { border-collapse: collapse; width: 100%; font-size: .95rem; }
th, td { border: 1px solid #ccc; padding: .3rem .5rem; text-align: left; vertical-align: top; }
footer { margin-top: 2rem; font-size: .85rem; color: #555; }
"""


def guidance_path(rule: RuleId, variant: str = DEFAULT_VARIANT) -> str:
    """The page's path on the service: ``/guidance/<rule>`` or ``/guidance/<rule>/<variant>``."""
    base = f"{GUIDANCE_PATH}/{rule}"
    return base if variant == DEFAULT_VARIANT else f"{base}/{variant}"


def _placeholder_free(text: str) -> bool:
    return not any(field for _, field, _, _ in string.Formatter().parse(text))


@dataclass(frozen=True)
class GuidancePage:
    path: str
    title: str
    html: str


class GuidancePages:
    """Every guidance page of one knowledge version, built once (the service serves them)."""

    def __init__(
        self,
        cards: CardKnowledge,
        ratings: RatingKnowledge,
        variants: Mapping[RuleId, Iterable[str]],
        version: str,
        acc_nerves: str = "the nerves of its gland",
    ) -> None:
        """``variants``: each rule's problem variants (``cards.rules.RULES``' reason
        variants); ``version``: the knowledge version the pages are built from (their ETag)."""
        #: The pages name no gland: adenoid cystic carcinoma's nerves when the gland is unknown.
        self._acc_nerves = acc_nerves
        self.version = version
        self._k = cards
        self._ratings = ratings
        self._markdown = MarkdownIt("commonmark", {"html": False}).enable("table")
        self.pages: dict[str, GuidancePage] = {}
        for rule in RuleId:
            for variant in sorted({DEFAULT_VARIANT, *variants.get(rule, ())}):
                page = self._page(rule, variant)
                self.pages[page.path] = page
        self.index = self._index()

    def get(self, path: str) -> GuidancePage | None:
        return self.pages.get(path.rstrip("/"))

    # --- building -------------------------------------------------------------------------

    def _explanation(self, rule: RuleId, variant: str) -> list[str]:
        texts = self._k.rules[rule].texts
        left_off = _VARIANT_TEXTS.get(variant, frozenset())
        paragraphs = [
            *self._k.guidancePages.rules.get(rule, ()),
            *(
                text
                for name, text in texts.items()
                if not name.endswith(_NOT_EXPLANATION)
                and not name.startswith("summary")
                and name not in _NOT_EXPLANATION_NAMES
                and name not in left_off
                and _placeholder_free(text)
            ),
        ]
        for key, phrase in self._k.contrastProblems.items():
            if key == variant and rule == RuleId.INCOMPLETE_MRI_PROTOCOL:
                paragraphs.insert(0, f"The order {phrase}.")
        return paragraphs

    def _ratings_table(self) -> str:
        rows = [
            "| Procedure | ACR rating | Radiation | CPT |",
            "|---|---|---|---|",
            *(
                f"| {p.name} | {p.category} | {p.radiation} | {', '.join(p.cpt)} |"
                for p in self._ratings.procedures
            ),
        ]
        return "\n".join(rows)

    def _page(self, rule: RuleId, variant: str) -> GuidancePage:
        wording = self._k.rules[rule]
        md = self._markdown.render
        title = wording.summary
        if (
            variant in _VARIANT_TEXTS
            and variant != "regions"
            and "summaryContrast" in wording.texts
        ):
            title = wording.texts["summaryContrast"]  # the summary of the contrast variants
        parts = [f"<h1>{html.escape(title)}</h1>"]
        explanation = self._explanation(rule, variant)
        if explanation:
            parts.append("<h2>Why</h2>" + "".join(md(p) for p in explanation))
        parts.append("<h2>ACR ratings for this scenario</h2>" + md(self._ratings_table()))
        pathway = [
            t
            for r in _PATHWAY_RULES
            if r != rule
            for t in (self._k.rules[r].texts.get("problem", ""),)
            if t and _placeholder_free(t)
        ]
        if pathway:
            parts.append("<h2>After the last report</h2>" + "".join(md(p) for p in pathway))
        common = [
            self._k.common[n].format(nerves=self._acc_nerves)
            for n in ("accLine",)
            if n in self._k.common
        ]
        parts.append("<h2>Safety and history</h2>" + "".join(md(p) for p in common))
        own = wording.overrideReasons
        reasons = self._k.override_reasons(rule, (variant,) if variant in own else tuple(own))
        if reasons:
            items = "".join(f"<li>{html.escape(r.display)}</li>" for r in reasons)
            parts.append(f"<h2>Reasons to dismiss the card</h2><ul>{items}</ul>")
        parts.append(self._sources())
        path = guidance_path(rule, variant)
        return GuidancePage(path, title, self._document(title, "".join(parts)))

    def _sources(self) -> str:
        source = self._k.source
        links = [(source.label, source.url), *((link.label, link.url) for link in source.links)]
        unique = dict.fromkeys(links)
        items = "".join(
            f'<li><a href="{html.escape(url)}">{html.escape(label)}</a></li>'
            for label, url in unique
        )
        return f"<h2>Sources</h2><ul>{items}</ul>"

    def _index(self) -> GuidancePage:
        items = "".join(
            f'<li><a href="{html.escape(p.path)}">{html.escape(p.path)}</a>: '
            f"{html.escape(p.title)}</li>"
            for p in sorted(self.pages.values(), key=lambda p: p.path)
        )
        title = "Guidance pages"
        return GuidancePage(
            GUIDANCE_PATH, title, self._document(title, f"<h1>{title}</h1><ul>{items}</ul>")
        )

    def _document(self, title: str, body: str) -> str:
        footer = (
            "<footer>General guidance for imaging after treatment of a major salivary gland "
            "cancer: this page holds no patient data. Knowledge version "
            f"{html.escape(self.version)}.</footer>"
        )
        return (
            "<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n"
            f"<body><main>{body}{footer}</main></body></html>\n"
        )
