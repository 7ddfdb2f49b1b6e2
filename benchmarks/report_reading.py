"""How long reading a report takes on hostile input (issue 24, issue 26 finding 1): the
hand-written RE2 reader on each bad input, and the whole engine call with it, against the old
backtracking patterns on the shape that froze a worker. Run on demand:

    .venv/bin/python -m benchmarks.report_reading

Figures go in the README ("Reading the last report"); no test asserts a time."""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from cds_service.clinical.report_reading import ReportReader
from cds_service.engine import CdsEngine
from cds_service.knowledge.loader import default_hooks_dir, load_knowledge

EXAMPLES = Path(__file__).resolve().parent.parent / "fhir_examples"
SERVICE = "salivary-post-treatment-imaging-order-select"
#: The NI-RADS patterns before issue 24 (Python re, backtracking), kept here only to measure.
OLD_LABELLED = (
    r"\b(?:primary(?:\s+site)?|neck|nodes?|nodal|lymph\s+nodes?)\s*(?:\(?NI[\s-]?RADS\)?)?"
    r"\s*(?:category|cat\.?)?\s*[:#=-]?\s*([0-4][ab]?)\b"
)
REAL_LOOKING = (
    "IMPRESSION: 1. Post-treatment changes in the left parotid bed, NI-RADS 1. "
    "2. Neck: stable 4 mm level II nodes bilaterally, NI-RADS 1. "
    "3. Previously described NI-RADS 3 nodule has resolved. "
    "ADDENDUM: compared with the outside MRI of 2026-05-01, no change. NI-RADS 1."
)
INPUTS: dict[str, str | None] = {
    "1 MB conclusion": "NI-RADS 3. " + "consistent with recurrence " * 40_000,
    "20,000 characters (the bound), adversarial": ("NI-RADS neck primary ( category : " * 600)[
        :20_000
    ],
    "613-byte ReDoS shape": "NI-RADS neck" + " " * 600 + "x",
    "293-byte real-looking report": REAL_LOOKING,
    "odd unicode (bidi overrides, emoji, 5,000 combining marks)": (
        "\u202e3 SDAR-IN\u202c \U0001f600" + "\u0301" * 5_000
    ),
    "no conclusion": None,
}


def _best(fn: Callable[[], object], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _body(conclusion: str | None, presented: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(
        (EXAMPLES / "positive_report_new_surveillance_mri.json").read_text(encoding="utf-8")
    )
    body = copy.deepcopy(body)
    report = body["prefetch"]["diagnosticReports"]["entry"][0]["resource"]
    report.pop("conclusion", None)
    if conclusion is not None:
        report["conclusion"] = conclusion
    if presented:
        report["presentedForm"] = [{"contentType": "text/plain", "data": "Tkk="}]
    return body


def main() -> None:
    knowledge = load_knowledge(default_hooks_dir())
    reader = ReportReader(knowledge.pathway)
    engine = CdsEngine(knowledge)
    print("| input | reader (ms) | whole engine call (ms) | pathway card |")
    print("|---|---|---|---|")
    cases = [*INPUTS.items(), ("only presentedForm", None)]
    for name, text in cases:
        presented = name == "only presentedForm"
        read = _best(partial(reader.read, text))
        body = _body(text, presented)
        call = _best(partial(engine.evaluate, SERVICE, body), repeat=3)
        rules = [str(r) for r in engine.evaluate(SERVICE, body).rules]
        card = ", ".join(rules) or "none"
        print(f"| {name} | {read * 1000:.2f} | {call * 1000:.1f} | {card} |")
    old = re.compile(OLD_LABELLED, re.IGNORECASE)
    print()
    print(
        "| spaces in 'NI-RADS neck' + spaces + 'x' | old patterns, Python re (ms) | reader (ms) |"
    )
    print("|---|---|---|")
    for n in (50, 100, 200, 400):
        text = "NI-RADS neck" + " " * n + "x"
        before = _best(partial(old.findall, text), repeat=1)
        after = _best(partial(reader.read, text))
        print(f"| {n} | {before * 1000:.1f} | {after * 1000:.3f} |")


if __name__ == "__main__":
    main()
