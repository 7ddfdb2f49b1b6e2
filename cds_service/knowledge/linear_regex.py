"""Patterns applied to client text run on RE2, a linear-time engine: no input can make them
backtrack.

Order, study and implant names, allergy and lab names, report texts: every one of them comes
from the caller. Python's ``re`` backtracks, so a pattern with nested or adjacent repeats can
take polynomial or exponential time on a crafted string (a 613-byte report conclusion froze a
worker for 30 s, holding the GIL). RE2 (``google-re2``) matches in time linear in the input,
whatever the pattern, and refuses what it cannot do that way (backreferences, lookaround): a
knowledge pattern that needs them is refused when the knowledge is loaded, naming the file.
"""

from __future__ import annotations

from typing import TypeAlias

import re2

#: A compiled RE2 pattern (``search``, ``fullmatch``, ``sub`` as ``re`` has them).
LinearPattern: TypeAlias = "re2._Regexp[str]"


class NotLinearError(ValueError):
    """A pattern RE2 cannot compile (it needs backtracking, or is malformed)."""


def compile_linear(pattern: str, *, ignore_case: bool = False) -> LinearPattern:
    """``pattern`` compiled for RE2; raises NotLinearError naming why it cannot be."""
    options = re2.Options()
    options.log_errors = False  # a refused pattern is an error here, not a line on stderr
    options.case_sensitive = not ignore_case
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        why = exc.args[0] if exc.args else exc
        why = why.decode(errors="replace") if isinstance(why, bytes) else str(why)
        raise NotLinearError(f"pattern {pattern!r} cannot run in linear time: {why}") from None
