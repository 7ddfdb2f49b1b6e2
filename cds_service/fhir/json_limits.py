"""Bounds on how deeply JSON may nest, checked before anything reads it recursively.

Real FHIR resources nest about 6-10 levels (an extension's coding in a Condition is 5) and CDS
Hooks requests about 15; 300 nested ``extension`` levels only exist to exhaust a recursive
reader. Checked where recursion happens: each resource before it is cleaned and validated
(deeper than ``MAX_RESOURCE_DEPTH``: skipped and counted), feedback bodies (a 400 naming where),
and what a FHIR server returns (a 412).
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 64
MAX_RESOURCE_DEPTH = 48


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


def same_content(first: Any, second: Any) -> bool:
    """Equal JSON, compared only when neither nests too deep (equality recurses); a document
    that nests too deep is never taken as the same as another."""
    if too_deep(first, MAX_RESOURCE_DEPTH) or too_deep(second, MAX_RESOURCE_DEPTH):
        return False
    return bool(first == second)
