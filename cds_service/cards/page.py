"""One static HTML page of cards, rendered as a CDS Hooks client shows them.

Why: a card is read in an EHR's narrow card pane, not as JSON. Reviewers (and the browser
test) look at what a clinician sees: the summary in the indicator's colour, the source, the
detail's markdown as HTML (GitHub-flavoured tables, as the CDS Hooks sandbox renders them), the
suggestion buttons, the links and the override reasons. Markdown is rendered by markdown-it-py
with raw HTML off, so nothing in a card can inject markup into the page.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from markdown_it import MarkdownIt

#: The width of a card in the CDS Hooks sandbox's PAMA screen in a 1280 px window with its
#: developer panel open (its source, src/components: the panel takes half the window; the PAMA
#: screen the other 640 px, with 30 px padding; a card has a 16 px right margin):
#: 1280 / 2 - 2 * 30 - 16.
SANDBOX_CARD_WIDTH = 564

#: The sandbox's card (CardList/card-list.css and its MUI Card): 20 px padding plus the
#: CardContent's 16 px (24 px at the bottom), a 1 px border and 5 px on the indicator's side,
#: the summary in 18 px bold, text at 16 px with MUI's 1.5 line height, contained MUI buttons
#: (14 px capitals, 6 px 16 px padding).
_SANDBOX_CARD_STYLE = """
main {{ max-width: none; width: {width}px; padding: 0; }}
article.card {{ box-sizing: border-box; width: {width}px; padding: 36px 36px 44px;
  margin: 16px 0; border-width: 1px; border-left-width: 5px; border-radius: 12px;
  font-size: 16px; line-height: 1.5; }}
.summary {{ font-size: 18px; }}
.detail p {{ margin: 1em 0; }}
.detail table {{ font-size: 16px; }}
button.suggestion {{ font-size: 14px; text-transform: uppercase; line-height: 1.75;
  padding: 6px 16px; }}
"""

#: The order a client lists cards in: the most urgent first (as the sandbox does).
_INDICATOR_ORDER = {"critical": 0, "warning": 1, "info": 2}

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d1d1f; }
main { max-width: 56rem; margin: 0 auto; padding: 1rem; }
section.vignette { margin: 0 0 2rem; }
section.vignette > h2 { font-size: 1rem; margin: 0 0 .25rem; font-family: monospace;
  overflow-wrap: anywhere; }
section.vignette > p.silence { font-style: italic; color: #555; }
article.card { background: #fff; border: 1px solid #d8d8d8; border-left: 6px solid #0079be;
  border-radius: 8px; padding: 1rem 1.25rem; margin: .75rem 0; overflow-wrap: break-word; }
article.card.warning { border-left-color: #e69500; }
article.card.critical { border-left-color: #c00; }
.summary { font-size: 1.1rem; font-weight: 700; margin: 0 0 .25rem; }
.info .summary { color: #005f94; }
.warning .summary { color: #8a5a00; }
.critical .summary { color: #c00; }
.source { font-size: .85rem; font-style: italic; margin: 0 0 .75rem; }
.detail table { border-collapse: collapse; width: 100%; margin: .5rem 0; font-size: .9rem; }
.detail th, .detail td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: left;
  vertical-align: top; }
.detail p, .detail ul { margin: .5rem 0; }
.suggestions, .links { display: flex; flex-wrap: wrap; gap: .5rem; margin: .75rem 0 0; }
button.suggestion { background: #1565c0; color: #fff; border: 0; border-radius: 4px;
  padding: .45rem .9rem; font: inherit; font-size: .9rem; text-align: left; max-width: 100%; }
button.suggestion.recommended { background: #0d47a1; font-weight: 700; }
a.link { font-size: .9rem; }
details.dismiss { margin: .75rem 0 0; font-size: .85rem; }
details.dismiss ul { margin: .25rem 0 0; }
"""


@dataclass(frozen=True)
class CardSet:
    """The cards one request produced, under a name (a vignette) and a one-line description."""

    name: str
    description: str
    cards: Sequence[Mapping[str, Any]]


class CardPage:
    """Renders card sets into one self-contained HTML page (no script, no external asset)."""

    def __init__(self, card_width: int | None = None) -> None:
        """``card_width``: lay each card out this wide, in the sandbox's card box (CSS px)."""
        self._markdown = MarkdownIt("commonmark", {"html": False}).enable("table")
        self._style = _STYLE + (_SANDBOX_CARD_STYLE.format(width=card_width) if card_width else "")

    def render(self, sets: Iterable[CardSet], title: str) -> str:
        sections = "\n".join(self._section(s) for s in sets)
        return (
            "<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{self._style}</style></head>\n"
            f"<body><main><h1>{html.escape(title)}</h1>\n{sections}\n</main></body></html>\n"
        )

    def _section(self, card_set: CardSet) -> str:
        cards = sorted(
            card_set.cards, key=lambda c: _INDICATOR_ORDER.get(str(c.get("indicator")), 3)
        )
        body = "\n".join(self._card(c) for c in cards) or (
            '<p class="silence">No card: the service stays silent.</p>'
        )
        name = html.escape(card_set.name)
        return (
            f'<section class="vignette" id="{name}" data-cards="{len(cards)}">'
            f"<h2>{name}</h2><p>{html.escape(card_set.description)}</p>\n{body}</section>"
        )

    def _card(self, card: Mapping[str, Any]) -> str:
        indicator = html.escape(str(card.get("indicator", "info")))
        parts = [f'<p class="summary">{html.escape(str(card.get("summary", "")))}</p>']
        source = card.get("source") or {}
        if source.get("label"):
            label = html.escape(str(source["label"]))
            url = source.get("url")
            parts.append(
                f'<p class="source"><a href="{html.escape(str(url))}">{label}</a></p>'
                if url
                else f'<p class="source">{label}</p>'
            )
        if card.get("detail"):
            parts.append(f'<div class="detail">{self._markdown.render(str(card["detail"]))}</div>')
        suggestions = card.get("suggestions") or []
        if suggestions:
            buttons = "".join(
                f'<button type="button" class="{_button_class(s)}">'
                f"{html.escape(str(s.get('label', '')))}</button>"
                for s in suggestions
            )
            parts.append(f'<div class="suggestions">{buttons}</div>')
        links = card.get("links") or []
        if links:
            anchors = "".join(
                f'<a class="link" href="{html.escape(str(link.get("url", "")))}">'
                f"{html.escape(str(link.get('label', '')))}</a>"
                for link in links
            )
            parts.append(f'<div class="links">{anchors}</div>')
        reasons = card.get("overrideReasons") or []
        if reasons:
            items = "".join(f"<li>{html.escape(str(r.get('display', '')))}</li>" for r in reasons)
            parts.append(
                f'<details class="dismiss"><summary>Dismiss (override reasons)</summary>'
                f"<ul>{items}</ul></details>"
            )
        return f'<article class="card {indicator}">{"".join(parts)}</article>'


def _button_class(suggestion: Mapping[str, Any]) -> str:
    return "suggestion recommended" if suggestion.get("isRecommended") else "suggestion"
