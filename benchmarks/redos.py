"""Adversarial names against the name patterns, RE2 (the service) vs Python's backtracking
``re`` on the same patterns (run on demand): ``.venv/bin/python -m benchmarks.redos``."""

from __future__ import annotations

import re
import time
from pathlib import Path

from cds_service.knowledge.loader import load_knowledge
from cds_service.knowledge.names import normalise_text, word_pattern

HOOKS = Path(__file__).resolve().parent.parent / "hooks"


def main() -> None:
    text = load_knowledge(HOOKS).imaging.text
    alternatives = [p for m in text.modalities for p in m.patterns] + list(text.contrast.with_)
    linear = word_pattern(alternatives)
    old = [a.replace("W $", "W(?= $)") for a in alternatives]
    backtracking = re.compile(r"\b(?:" + "|".join(f"(?:{a})" for a in old) + r")\b")
    for size in (1_000, 10_000, 100_000):
        for name in ("MRI " + " " * size + "x", "W " * (size // 2), "PET" * (size // 3)):
            started = time.perf_counter()
            t = normalise_text(name)  # on ``re`` (its own fixed patterns, linear: names.py)
            normalising = (time.perf_counter() - started) * 1000
            took = []
            for pattern in (linear, backtracking):
                started = time.perf_counter()
                pattern.search(t)
                took.append((time.perf_counter() - started) * 1000)
            label = f"{len(name):>7} chars {name[:6]!r:>10}"
            print(
                f"{label}: normalise {normalising:7.2f} ms; "
                f"RE2 {took[0]:8.2f} ms, re {took[1]:8.2f} ms"
            )


if __name__ == "__main__":
    main()
