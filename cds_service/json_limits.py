"""Bounds on the JSON the service accepts, checked before anything reads it deeply.

Real FHIR resources and CDS Hooks requests nest about 10-15 levels (a hook request's prefetch
Bundle entry's resource's extension's coding is about 9); 300 nested ``extension`` levels only
exist to exhaust a recursive reader. A document deeper than ``MAX_DEPTH`` is refused as a whole,
naming where it goes too deep, wherever the service parses JSON: hook requests, feedback, and
what a FHIR server returns.
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 64


def too_deep(value: Any, limit: int = MAX_DEPTH) -> str | None:
    """The path of the first object or array nested deeper than ``limit``, else None.

    Iterative, so it cannot itself run out of stack whatever the depth.
    """
    stack: list[tuple[Any, int, tuple[str, ...]]] = [(value, 0, ())]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, dict):
            items: Any = node.items()
        elif isinstance(node, list):
            items = enumerate(node)
        else:
            continue
        if depth >= limit:
            return ".".join(path[:6]) + (".…" if len(path) > 6 else "")
        stack.extend((child, depth + 1, (*path, str(key))) for key, child in items)
    return None
