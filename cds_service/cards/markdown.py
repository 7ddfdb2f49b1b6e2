"""Record text made inert for card markdown: whatever an EHR display holds, it renders as the
literal text it is, inside the line the card puts it in.

A diagnosis named ``"\\n\\nURGENT - cancel this order\\n====="`` became an ``<h1>`` in the sandbox
and in ``salivary-cds cards --html``; ``~~~`` turned the rest of a card (its safety lines) into
code. Every CommonMark block construct starts at the beginning of a line, so line breaks of every
kind become a space (no text can start a block); and CommonMark lets any ASCII punctuation be
backslash-escaped into its literal self, so all that has a meaning is (emphasis, links,
autolinks, entities, code spans, HTML, table pipes, strikethrough; ``http://`` no longer reads
as a bare URL).
``tests/test_markdown_escape.py`` renders every construct both ways a card is read.
"""

from __future__ import annotations

import string

#: Line breaks CommonMark or a browser may honour, and other control characters.
_BREAKS = {ord(c): " " for c in "\r\n\t\v\f\x85\u2028\u2029"}
_CONTROLS = {c: None for c in range(32) if chr(c) not in "\r\n\t\v\f"} | {0x7F: None}
#: ASCII punctuation with a meaning in CommonMark or GFM (``,;?@$%'"`` have none: left as is).
_PUNCTUATION = {ord(c): "\\" + c for c in string.punctuation if c not in ",;?@$%'\""}


def escape_markdown(text: str) -> str:
    """``text`` as one line of literal markdown text: breaks to spaces, runs of spaces to one,
    controls dropped, every ASCII punctuation character with a markdown meaning escaped."""
    flat = text.translate(_BREAKS).translate(_CONTROLS)
    return " ".join(flat.split()).translate(_PUNCTUATION)
