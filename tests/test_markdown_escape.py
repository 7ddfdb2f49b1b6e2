"""Record text in card markdown renders as the literal text it is, for every CommonMark block
construct (and the GFM extensions the sandbox renders): never a heading, code block, list,
quote, table, link or HTML. Checked with markdown-it-py as ``salivary-cds cards --html`` renders
(commonmark + tables) and as the sandbox's GFM renderer does (tables, strikethrough, raw
HTML allowed). Bare URLs: escaping ``:`` and ``.`` leaves no URL for a linkifier to find."""

from __future__ import annotations

import pytest
from markdown_it import MarkdownIt

from cds_service.cards.markdown import escape_markdown

ATTACKS = {
    "atx heading": "\n\n# URGENT - cancel this order",
    "setext heading =": "\n\nURGENT - cancel this order\n=====",
    "setext heading -": "URGENT\n---",
    "thematic break": "\n***\n",
    "fenced code ~~~": "x\n~~~\nthe rest of the card is code",
    "fenced code ```": "x\n```python\ncode",
    "indented code": "x\n\n    indented code",
    "html block": "\n<div onclick='x'>hi</div>",
    "html inline": "<img src=x onerror=alert(1)>",
    "link reference definition": "\n[a]: http://evil.example.org\n[a]",
    "block quote": "\n> quoted",
    "bullet list -": "\n- one\n- two",
    "bullet list +": "\n+ one",
    "bullet list *": "\n* one",
    "ordered list .": "\n1. cancel",
    "ordered list )": "\n1) cancel",
    "table": "\n| a | b |\n|---|---|\n| c | d |",
    "emphasis": "*very* _urgent_ **now** __now__",
    "strikethrough": "~~safe~~",
    "code span": "`code`",
    "link": "[click](http://evil.example.org)",
    "image": "![x](http://evil.example.org/x.png)",
    "autolink": "<http://evil.example.org>",
    "bare url": "http://evil.example.org and www.evil.example.org",
    "entity": "&lt;b&gt; &#65; &amp;",
    "hard break": "a  \nb\\\nc",
    "unicode line separators": "a\u2028# b\u2029c\x85d\r\ne\x0b\x0cf",
    "backslash": "a\\*b\\",
}
RENDERERS = {
    "cards --html": MarkdownIt("commonmark", {"html": False}).enable("table"),
    "sandbox (GFM, raw HTML on)": MarkdownIt("commonmark", {"html": True}).enable(
        ["table", "strikethrough"]
    ),
}


@pytest.mark.parametrize("renderer", list(RENDERERS))
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_record_text_renders_as_literal_text(attack: str, renderer: str) -> None:
    md = RENDERERS[renderer]
    text = ATTACKS[attack]
    detail = f"**Diagnosis:** {escape_markdown(text)}. Safety line follows.\n\n**Safety:** check."
    tokens = md.parse(detail)
    blocks = [t.type for t in tokens if t.level == 0]
    assert blocks == ["paragraph_open", "paragraph_close"] * 2, blocks
    inline = tokens[1]
    kinds = {child.type for child in inline.children or []}
    assert kinds <= {"text", "strong_open", "strong_close"}, kinds
    literal = "".join(c.content for c in inline.children or [] if c.type == "text")
    expected = " ".join(text.translate({c: " " for c in (0x85, 0x2028, 0x2029, 11, 12)}).split())
    assert literal == f"Diagnosis: {expected}. Safety line follows."
