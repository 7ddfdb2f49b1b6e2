"""Cards per 100 imaging orders: how often the service interrupts, over the vignettes and over a
mix of ordering sessions in and out of scope.

Run on demand (``python -m benchmarks.card_rate``); the figures go in the README. It runs the
engine in-process, so the same script measured the code before a change (run from that
checkout) and after it; what a version's engine cannot do (hide at order-sign a card overridden
at order-select) it simply does not do.

Two measures:
- **vignettes**: every vignette's request as it is (both hooks; in scope and out of scope), cards
  shown per imaging order judged;
- **sessions**: one ordering session per order of a mix (treated parotid cancer, and the same
  record without its cancer: out of scope), each order with and without a reason: order-select,
  the clinician overrides every card shown (the worst case for repeats), then order-sign of the
  same draft. Cards seen in the session per order.
"""

from __future__ import annotations

import copy
import inspect
import json
from collections import Counter
from collections.abc import Collection
from datetime import date
from pathlib import Path
from typing import Any

from cds_service.cli.replay import request_from_bundle
from cds_service.cli.vignettes import VignetteBook, sequential_uuids
from cds_service.contract.errors import CdsError
from cds_service.engine import CdsEngine, order_key
from cds_service.knowledge.loader import load_knowledge

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "fhir_examples" / "bundles" / "parotid_mec_record.json"
SELECT = "salivary-post-treatment-imaging-order-select"
SIGN = "salivary-post-treatment-imaging-order-sign"
TODAY = date(2026, 11, 20)
CANCER = "Condition/parotid-mec"

#: (name, CPT code) of the orders a session places: in-scope studies, right and wrong, and
#: imaging this scenario does not judge.
ORDERS: tuple[tuple[str, str | None], ...] = (
    ("MRI orbits face neck without and with IV contrast", "70543"),
    ("MRI NECK SOFT TISSUE W WO CONTRAST", None),
    ("MRI orbit face neck without contrast", "70540"),
    ("CT NECK SOFT TISSUE W CONTRAST", "70491"),
    ("CT NECK SOFT TISSUE WO CONTRAST", "70490"),
    ("CT NECK SOFT TISSUE", None),
    ("PET/CT skull base to mid-thigh", "78815"),
    ("US NECK SOFT TISSUE", "76536"),
    ("XR CHEST 2 VIEWS", None),
    ("CT CHEST W CONTRAST", None),
    ("MRI BRAIN W WO CONTRAST", None),
)


class Overrides:
    """The feedback store's answer, in memory: every card shown at order-select overridden."""

    def __init__(self) -> None:
        self.pairs: set[tuple[str, str]] = set()

    def __call__(self, keys: Collection[str], _minutes: int) -> set[tuple[str, str]]:
        return {p for p in self.pairs if p[0] in keys}


def _evaluate(engine: CdsEngine, service: str, request: Any, overrides: Overrides) -> Any:
    extra: dict[str, Any] = {}
    if "overridden" in inspect.signature(engine.evaluate).parameters:
        extra["overridden"] = overrides
    return engine.evaluate(service, request, sequential_uuids(), TODAY, **extra)


def vignettes(engine: CdsEngine) -> tuple[int, int]:
    book = VignetteBook.load(engine.knowledge)
    cards = orders = 0
    for v in book.vignettes.values():
        try:
            outcome = engine.evaluate(v.service, v.request, sequential_uuids(), book.today)
        except CdsError:  # a vignette that expects an error (e.g. 412) judges no order
            continue
        cards += len(outcome.response.cards)
        orders += outcome.orders_checked
    return cards, orders


def _record(in_scope: bool) -> dict[str, Any]:
    bundle: dict[str, Any] = json.loads(BUNDLE.read_text(encoding="utf-8"))
    if not in_scope:
        bundle["entry"] = [
            e for e in bundle["entry"] if e["resource"].get("id") != CANCER.split("/")[1]
        ]
    return bundle


def sessions(engine: CdsEngine) -> tuple[int, int, int, Counter[str]]:
    """(cards at order-select, cards at order-sign, sessions, order-sign cards by rule)."""
    at_select = at_sign = count = 0
    sign_rules: Counter[str] = Counter()
    for in_scope in (True, False):
        bundle = _record(in_scope)
        for text, cpt in ORDERS:
            for with_reason in (True, False):
                overrides = Overrides()
                select = request_from_bundle(engine.service(SELECT), bundle, None, text, cpt)
                draft = select["context"]["draftOrders"]["entry"][0]["resource"]
                if with_reason:
                    draft["reasonReference"] = [{"reference": CANCER}]
                patient = select["context"]["patientId"]
                shown = _evaluate(engine, SELECT, select, overrides)
                for issued in shown.issued:
                    if issued.shown:
                        key = order_key(
                            patient, f"ServiceRequest/{draft['id']}", engine.pseudonym_key()
                        )
                        overrides.pairs.add((key, str(issued.rule_id)))
                sign = copy.deepcopy(select)
                sign["hook"] = "order-sign"
                del sign["context"]["selections"]
                signed = _evaluate(engine, SIGN, sign, overrides)
                at_select += len(shown.response.cards)
                at_sign += len(signed.response.cards)
                sign_rules.update(str(r) for r in signed.rules)
                count += 1
    return at_select, at_sign, count, sign_rules


def main() -> None:
    engine = CdsEngine(load_knowledge())
    cards, orders = vignettes(engine)
    at_select, at_sign, count, sign_rules = sessions(engine)
    print(
        f"vignettes: {cards} cards / {orders} imaging orders = {100 * cards / orders:.0f} per 100"
    )
    print(
        f"sessions: {at_select} at order-select + {at_sign} at order-sign / {count} orders"
        f" = {100 * (at_select + at_sign) / count:.0f} per 100"
        f" ({100 * at_select / count:.0f} + {100 * at_sign / count:.0f})"
    )
    print(f"order-sign cards by rule: {dict(sorted(sign_rules.items()))}")


if __name__ == "__main__":
    main()
