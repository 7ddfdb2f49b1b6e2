"""Text the command line prints or writes for spreadsheets, made inert.

Card ids, rule keys, override reasons and orderable names come from callers and from sites'
exports. Printed raw, an ESC sequence rewrites the operator's terminal (or hides a line); written
raw into CSV, a cell starting with ``=``, ``+``, ``-``, ``@`` (or a tab or carriage return) is
a formula in Excel and LibreOffice (``=HYPERLINK(…)``). So every such text goes through here.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def terminal_safe(text: str) -> str:
    """``text`` with every control character (ESC, BEL, C1 controls...) shown as ``\\xNN``;
    line feeds stay (a table's own lines), carriage returns do not."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def csv_cell(value: str) -> str:
    """A CSV cell a spreadsheet reads as text: a leading formula character gets a ``'`` before
    it (OWASP's advice), plain numbers stay numbers; controls are shown, never written."""
    safe = terminal_safe(value).replace("\n", " ")
    if safe.startswith(_FORMULA_START) and not _NUMBER.fullmatch(safe):
        return "'" + safe
    return safe
