"""Suggested orders: a replacement (an update of the draft in place, or a delete and a create),
an added order, a deferral, the history as one-click reasons. Every order the service suggests
carries the cancer Condition as its reason, and, when the draft had no reason, the
clinical-history note for the radiologist."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from cds_service.cards.history import History
from cds_service.cards.model import OrderingContext, SuggestionStyle, UuidFactory
from cds_service.cards.wording import Wording
from cds_service.clinical.guidance import OrderAdvice, PatientSituation
from cds_service.clinical.pama import PamaRater, cpt_codes, with_rating
from cds_service.contract.wire import Action, Suggestion
from cds_service.fhir.records import OrderFact, json_copy
from cds_service.knowledge.loader import CardKnowledge, ConcernChoice, OrderKey
from cds_service.knowledge.rules import RuleId
from cds_service.knowledge.safety_table import Cell

#: FHIR R4 ServiceRequest.intent (required binding): a created order keeps the draft's.
_REQUEST_INTENTS = frozenset(
    {
        "proposal",
        "plan",
        "directive",
        "order",
        "original-order",
        "reflex-order",
        "filler-order",
        "instance-order",
        "option",
    }
)

_USER_REFERENCE = re.compile(r"^(Practitioner|PractitionerRole)/[A-Za-z0-9\-.]{1,64}$")


def touches(suggestion: Suggestion, reference: str, kinds: tuple[str, ...]) -> bool:
    """Does the suggestion act (with one of ``kinds``) on the order ``reference``?"""
    return any(
        a.type in kinds
        and (a.resourceId == reference or _resource_reference(a.resource) == reference)
        for a in suggestion.actions
    )


def _updates(suggestion: Suggestion, reference: str) -> bool:
    return touches(suggestion, reference, ("update", "delete"))


def _resource_reference(resource: dict[str, Any] | None) -> str | None:
    if not resource or not resource.get("id"):
        return None
    return f"{resource.get('resourceType')}/{resource['id']}"


def selection_behavior(suggestions: list[Suggestion], reference: str) -> str:
    """ "any" when every suggestion can be taken together; "at-most-one" when they exclude
    each other (one deletes the draft another changes, or two change the same draft)."""
    if len(suggestions) < 2:
        return "at-most-one"
    deletes = sum(1 for s in suggestions if touches(s, reference, ("delete",)))
    changes = sum(1 for s in suggestions if _updates(s, reference))
    return "at-most-one" if deletes or changes > 1 else "any"


def takeable_together(suggestions: list[Suggestion], reference: str) -> list[Suggestion]:
    """The suggestions a client may take all at once (selectionBehavior ``any``): the
    recommended first, then at most one that changes or deletes the draft ``reference`` (two
    would order two studies, or undo each other), and every one that leaves it alone."""
    ordered = sorted(suggestions, key=lambda s: not s.isRecommended)  # stable
    kept: list[Suggestion] = []
    changed = False
    for suggestion in ordered:
        changes = touches(suggestion, reference, ("update", "delete"))
        if changes and changed:
            continue
        changed = changed or changes
        kept.append(suggestion)
    return kept


class SuggestionBuilder:
    """Builds one card's suggestions for one draft order (or, at patient-view, for none: a new
    order only), and remembers what each does."""

    def __init__(
        self,
        k: CardKnowledge,
        words: Wording,
        history: History,
        advice: OrderAdvice | None,
        situation: PatientSituation,
        ordering: OrderingContext,
        new_uuid: UuidFactory,
        style: SuggestionStyle,
        rater: PamaRater,
    ) -> None:
        self.k = k
        self.words = words
        self.history = history
        self.style = style
        self.rater = rater
        #: What each suggestion does, by its uuid (for the outcome report; no patient data).
        self.kinds: dict[str, str] = {}
        #: The studies this card suggests (for its safety lines).
        self.suggested: set[OrderKey] = set()
        self.advice = advice
        #: The draft order the card is about; None at patient-view (nothing is being ordered).
        self.draft: OrderFact | None = advice.order.draft if advice is not None else None
        self.situation = situation
        self.ordering = ordering
        self.new_uuid = new_uuid

    def keep_takeable_together(self, suggestions: list[Suggestion]) -> list[Suggestion]:
        """``takeable_together``, and the studies this card suggests narrowed to those kept
        (its safety lines speak only of what it still suggests)."""
        kept = takeable_together(suggestions, self._draft().reference)
        kinds = [self.kinds[s.uuid] for s in kept]
        self.suggested = {k for k in self.k.orders if any(kind.endswith(f":{k}") for kind in kinds)}
        return kept

    # orders ---------------------------------------------------------------------------------

    def _with_history(
        self, resource: dict[str, Any], concern: ConcernChoice | None = None
    ) -> dict[str, Any]:
        plain = self.history.plain
        cancer = self.situation.context.cancer.condition
        reasons = [r for r in resource.get("reasonReference", []) if isinstance(r, dict)]
        if not any(r.get("reference") == cancer.reference for r in reasons):
            reasons.append(
                {
                    "reference": cancer.reference,
                    "display": plain(self.situation.context.cancer.display),
                }
            )
        resource["reasonReference"] = reasons
        code = self.situation.context.cancer.code
        coded = [r for r in resource.get("reasonCode", []) if isinstance(r, dict)]
        # The cancer is added as a coded reason only to an order that codes none: a reason the
        # clinician picked ("Neoplasm of parotid gland", in the sandbox's SNOMED CT list) is
        # theirs, and a second coded reason for the same cancer beside it reads as two. The
        # reference to the cancer Condition above carries it either way.
        if not coded:
            coding = {"system": code.system, "code": code.code}
            if code.display:
                coding["display"] = code.display
            coded.append({"coding": [coding], "text": plain(self.situation.context.cancer.display)})
        if concern is not None:
            coded.append(
                {
                    "coding": [
                        {
                            "system": self.k.clinicalConcernSystem,
                            "code": concern.code,
                            "display": concern.display,
                        }
                    ],
                    "text": concern.display,
                }
            )
        resource["reasonCode"] = coded
        if self.draft is None or not self.draft.has_reason:
            notes = [n for n in resource.get("note", []) if isinstance(n, dict)]
            resource["note"] = [*notes, {"text": self.history.note()}]
        # Built from a validated draft and coded templates: tests/test_cards.py validates every
        # suggested resource of every vignette with fhir.resources (40 µs a call saved here).
        return resource

    def _requester(self) -> str | None:
        """The draft's requester, else the user in context when it is a Practitioner or
        PractitionerRole reference (CDS Hooks order-select/order-sign ``userId``)."""
        user = self.ordering.user_id
        drafted = self.draft.requester if self.draft is not None else None
        return drafted or (user if _USER_REFERENCE.match(user) else None)

    def _as_order(self, resource: dict[str, Any]) -> dict[str, Any]:
        """What every created or updated order carries (US Core / Da Vinci CRD ServiceRequest:
        status, intent, code, subject, authoredOn, requester; see tests/test_suggested_orders.py):
        status draft (it is not signed yet), the draft's intent (else order), the patient, the
        draft's authoredOn (else today, when the suggestion is made) and the requester."""
        intent = resource.get("intent")  # the draft's, as the clinician's order would be
        resource["status"] = "draft"
        resource["intent"] = intent if intent in _REQUEST_INTENTS else "order"
        if not isinstance(resource.get("subject"), dict):
            subject = self.draft.subject if self.draft is not None else None
            resource["subject"] = {"reference": subject or f"Patient/{self.ordering.patient_id}"}
        if not isinstance(resource.get("authoredOn"), str):
            resource["authoredOn"] = self.situation.today.isoformat()
        requester = self._requester()
        if requester and not isinstance(resource.get("requester"), dict):
            resource["requester"] = {"reference": requester}
        return resource

    def new_order(self, key: OrderKey) -> dict[str, Any]:
        """A new ServiceRequest for ``key``, for the same patient, encounter and requester."""
        draft = self.draft
        original: Mapping[str, Any] = draft.resource if draft is not None else {}
        encounter = (draft.encounter if draft else None) or (
            f"Encounter/{self.ordering.encounter_id}" if self.ordering.encounter_id else None
        )
        resource: dict[str, Any] = {
            "resourceType": "ServiceRequest",
            "status": "draft",
            "intent": original.get("intent"),
            "code": self._study_code(key),
            "subject": {
                "reference": (draft.subject if draft else None)
                or f"Patient/{self.ordering.patient_id}"
            },
            "authoredOn": self.situation.today.isoformat(),  # created now, not when the draft was
        }
        if encounter:
            resource["encounter"] = {"reference": encounter}
        if requester := self._requester():
            resource["requester"] = {"reference": requester}
        for kept in ("category", "priority", "reasonCode", "reasonReference", "note"):
            if kept in original:
                resource[kept] = json_copy(original[kept])
        return self._with_history(self._as_order(resource))

    def updated_draft(self, concern: ConcernChoice | None = None, **changes: Any) -> dict[str, Any]:
        resource = json_copy(dict(self._draft().resource))
        resource.update(changes)
        return self._with_history(self._as_order(resource), concern)

    def _study_code(self, key: OrderKey) -> dict[str, Any]:
        template = self.k.orders[key]
        site = (template.site,) if template.site else ()
        return {
            "coding": [c.model_dump() for c in (*site, *template.coding)],
            "text": template.site.display if template.site else template.text,
        }

    def update(self, description: str, resource: dict[str, Any], warned: bool) -> Action:
        """An update of the draft; with PAMA ratings on, rated as updated (``warned``: this
        card still warns against the order as updated)."""
        if self.style.pama and (codes := cpt_codes(resource["code"].get("coding", []))):
            shown = self.advice.rule_id if warned and self.advice is not None else None
            resource = with_rating(resource, self.rater.rating(codes, True, shown))
        return Action(type="update", description=description, resource=resource)

    def _draft(self) -> OrderFact:
        """The draft a replacement, a deferral or an update acts on (order hooks only)."""
        if self.draft is None:
            raise TypeError("no draft order to change: patient-view suggests new orders only")
        return self.draft

    # suggestions ------------------------------------------------------------------------------

    def replace(self, label: str, key: OrderKey, recommended: bool) -> Suggestion:
        """Replace the draft with study ``key``: an update of the draft in place, or a delete
        and a create, as the client applies them (``SuggestionStyle``)."""
        if self.style.replacement == "update":
            actions = [
                self.update(
                    self.words.common("replaceDescription", alternative=self.k.orders[key].text),
                    self.updated_draft(code=self._study_code(key)),
                    warned=False,
                )
            ]
            self.suggested.add(key)
        else:
            actions = [
                Action(
                    type="delete",
                    description=self.words.common(
                        "deleteDescription", ordered=self._draft().display
                    ),
                    resourceId=self._draft().reference,
                ),
                self._create(key),
            ]
        return self.suggestion(f"replace:{key}", label, recommended, actions)

    def offered(self, cell: Cell | None, labels: Mapping[Any, str]) -> list[Suggestion]:
        """The studies the safety table's cell offers, the recommended one first (replacing the
        draft, or added beside it, as the table says for the ordered study)."""
        if cell is None:
            return []
        add = self.situation.table.k.studies[cell.ordered].action == "add"
        return [
            self.add(labels[key], key)
            if add
            else self.replace(labels[key], key, key == cell.recommended)
            for key in cell.offered
        ]

    def add(self, label: str, key: OrderKey) -> Suggestion:
        return self.suggestion(f"add:{key}", label, False, [self._create(key)])

    def defer(self, label: str, description: str, until: str, recommended: bool) -> Suggestion:
        """Move the draft's date to ``until`` (an ISO date)."""
        return self.suggestion(
            "defer",
            label,
            recommended,
            [self.update(description, self.updated_draft(occurrenceDateTime=until), warned=False)],
        )

    def suggestion(
        self, kind: str, label: str, recommended: bool, actions: list[Action]
    ) -> Suggestion:
        suggestion = Suggestion(
            label=label, uuid=self.new_uuid(), isRecommended=recommended, actions=actions
        )
        self.kinds[suggestion.uuid] = kind
        return suggestion

    def _create(self, key: OrderKey) -> Action:
        self.suggested.add(key)
        return Action(
            type="create",
            description=self.words.common("createDescription", alternative=self.k.orders[key].text),
            resource=self.new_order(key),
        )

    def history_choices(self, also: Sequence[SuggestionBuilder] = ()) -> list[Suggestion]:
        """The history as one-click choices of the reason for the exam (the guidance's third
        piece of history): each adds the cancer, the concern and the history note, to this
        draft and to the drafts of ``also`` (one card for every order without a reason)."""
        rule = RuleId.MISSING_CLINICAL_HISTORY
        words = self.words
        if self.style.selection == "any":  # five exclusive reasons: one update that adds the
            return [self.history_update(recommended=False)]  # history, no reason chosen
        return [
            self.suggestion(
                "history",
                words.rule(rule, "choiceLabel", concern=concern.display),
                False,
                [
                    b.update(
                        words.rule(rule, "choiceDescription", concern=concern.display),
                        b.updated_draft(concern),
                        warned=True,
                    )
                    for b in (self, *also)
                ],
            )
            for concern in self.k.clinicalConcerns
        ]

    def history_update(self, recommended: bool) -> Suggestion:
        rule = RuleId.MISSING_CLINICAL_HISTORY
        return self.suggestion(
            "history",
            self.words.rule(rule, "suggestionLabel"),
            recommended,
            [
                self.update(
                    self.words.rule(rule, "updateDescription"), self.updated_draft(), warned=True
                )
            ],
        )
