"""One CDS Hooks call, from parsed request to response, without HTTP or network.

The same engine serves the Flask endpoint, the replay command and the tests.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Protocol

import structlog
from pydantic import ValidationError

from cds_service.cards.guidance_page import GuidancePages
from cds_service.cards.model import (
    INDICATOR_RANK,
    OrderingContext,
    RenderedCard,
    SuggestionStyle,
    UuidFactory,
)
from cds_service.cards.renderer import CardRenderer
from cds_service.cards.rules import RULES
from cds_service.clinical.contrast import ContrastReader
from cds_service.clinical.due_imaging import DueImagingReader
from cds_service.clinical.guidance import (
    OrderAdvice,
    PatientSituation,
    advise,
    find_implant,
    latest_prior_imaging,
)
from cds_service.clinical.orders import ImagingOrder, OrderClassifier
from cds_service.clinical.pama import cpt_codes
from cds_service.clinical.pathway import PathwayReader
from cds_service.clinical.patient_record import PatientRecord, RecordBuilder
from cds_service.clinical.reasoning import PostTreatmentContext, find_post_treatment_context
from cds_service.contract.errors import InvalidRequestError, UnknownServiceError
from cds_service.contract.wire import (
    Action,
    Card,
    CdsResponse,
    DraftOrdersContext,
    HookRequest,
    OrderSelectContext,
    OrderSignContext,
    PatientContext,
    PatientViewContext,
)
from cds_service.fhir.fact_cache import FactCache, key_prefix, read_through
from cds_service.fhir.gather import PrefetchReading, draft_orders, gather
from cds_service.fhir.records import compiled_validator, order_fact, validated
from cds_service.knowledge.clients import ClientChoice, ClientProfileError
from cds_service.knowledge.clients import resolve as resolve_client
from cds_service.knowledge.loader import Knowledge, KnowledgeError, ServiceDefinition
from cds_service.knowledge.names import NameMatcher
from cds_service.knowledge.rules import RuleId
from cds_service.knowledge.safety_table import SafetyTable
from cds_service.knowledge.site import (
    CLIENT_FILE,
    NO_SITE,
    RuleMode,
    Site,
    SiteError,
    knowledge_version,
    with_site_orderables,
)

if TYPE_CHECKING:  # the HTTP client is the caller's: the engine never imports it
    from cds_service.fhir.client import FhirFetcher

log = structlog.get_logger("cds_service.engine")

DEVICE_PREFETCH_KEY = "devices"
ALLERGY_PREFETCH_KEY = "allergies"
OBSERVATION_PREFETCH_KEY = "observations"
#: Draft orders judged in one call at most: an order set is rarely over a dozen; 7,000 selected
#: drafts once made one call take 5 s and answer 38 MB.
DEFAULT_MAX_ORDERS = 50


#: Given the order keys of a call's cards and a number of minutes: the (order key, rule id)
#: pairs whose card the clinician overrode within those minutes. The web layer answers it from
#: the feedback store; the engine never touches storage.
OverrideLookup = Callable[[Collection[str], int], Collection[tuple[str, str]]]


def random_uuid() -> str:
    return str(uuid.uuid4())


def utc_today() -> date:
    return datetime.now(UTC).date()


@dataclass(frozen=True)
class IssuedCard:
    """A card as the feedback store remembers it: ids and rule only, no patient data."""

    card_uuid: str
    rule_id: RuleId
    suggestion_uuids: tuple[str, ...]
    #: False for a card decided by a rule in silent mode (recorded, never returned).
    shown: bool = True
    #: A truncated hash of the patient and draft order ids (neither is kept): the report counts
    #: a card re-issued for the same order within one ordering session once.
    order_key: str = ""
    #: What each suggestion does, parallel to ``suggestion_uuids`` ("replace:mri-protocol"...).
    suggestion_kinds: tuple[str, ...] = ()


def order_key(patient_id: str, order_reference: str, key: bytes) -> str:
    """64 bits of HMAC-SHA256 (under the service's secret ``key``) over the patient and order
    ids: enough to tell one order's re-issued cards apart from others', without keeping either
    id, and, keyed, not reversible by trying candidate ids (a plain hash was, in 0.5 s)."""
    message = f"{patient_id}\n{order_reference}".encode("utf-8", "surrogatepass")
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:16]


_PROCESS_KEY = secrets.token_bytes(32)


def snooze_key(patient_id: str, rule: RuleId) -> str:
    """A patient-view card's key when no snooze store keys it (the command line, tests): an
    order card's keyed hash, under this process's key, over the patient id and the rule."""
    return order_key(patient_id, f"rule:{rule}", _PROCESS_KEY)


class Snooze(Protocol):
    """Has a clinician overridden this rule's patient-view card for this patient lately?

    Answered by the web layer from the feedback store (the engine never imports it). The
    patient is named only by ``key``: a keyed hash of the patient id and the rule, the same
    value the issued card is stored with (as its ``order_key``), so neither the store nor the
    lookup ever holds the patient id in clear.
    """

    def key(self, patient_id: str, rule: RuleId) -> str: ...

    def snoozed(self, service_id: str, key: str, rule: RuleId, days: int) -> bool: ...


@dataclass(frozen=True)
class Outcome:
    """The response and what the log line needs (no patient data)."""

    response: CdsResponse
    in_scope: bool
    orders_checked: int
    resources_skipped: int
    rules: tuple[RuleId, ...] = ()
    fetched: tuple[str, ...] = ()
    #: The cards shown, by uuid with their rule and suggestion uuids, for the feedback store.
    issued: tuple[IssuedCard, ...] = ()
    #: Optional prefetch keys that could not be fetched, with the reason (for the log).
    unreadable: Mapping[str, str] = field(default_factory=dict)
    #: Rules in silent mode that decided a card this call (recorded in ``issued``, not shown).
    silent_rules: tuple[RuleId, ...] = ()
    #: patient-view: rules that decided a card kept away by a recent override (snooze).
    snoozed_rules: tuple[RuleId, ...] = ()
    #: No draft to judge is an imaging order the service reads: answered without prefetch.
    no_imaging_order: bool = False
    #: Rules whose card was not shown again: overridden for the same order this session.
    hidden_rules: tuple[RuleId, ...] = ()


def _first_error(exc: ValidationError, prefix: str) -> InvalidRequestError:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
    return InvalidRequestError(f"{where}: {err['msg']}", field=where)


HookContext = DraftOrdersContext | PatientViewContext
_CONTEXT_MODELS: dict[str, type[HookContext]] = {
    "order-select": OrderSelectContext,
    "order-sign": OrderSignContext,
    "patient-view": PatientViewContext,
}


def parse_request(service: ServiceDefinition, body: Any) -> tuple[HookRequest, HookContext]:
    """Validate the wire request for ``service``; raise InvalidRequestError naming the field."""
    if not isinstance(body, dict):
        raise InvalidRequestError("The request body must be a JSON object")
    try:
        request = HookRequest.model_validate(body)
    except ValidationError as exc:
        raise _first_error(exc, "") from exc
    if request.hook != service.hook:
        raise InvalidRequestError(
            f"hook is {request.hook!r} but service {service.id} answers {service.hook!r}",
            field="hook",
        )
    model = _CONTEXT_MODELS[service.hook]
    try:
        context = model.model_validate(request.context)
    except ValidationError as exc:
        raise _first_error(exc, "context") from exc
    return request, context


class CdsEngine:
    """Holds the validated knowledge and the precompiled readers built from it."""

    def __init__(
        self,
        knowledge: Knowledge,
        filter_irrelevant: bool = True,
        max_orders: int = DEFAULT_MAX_ORDERS,
        site: Site = NO_SITE,
        fact_cache: FactCache | None = None,
    ) -> None:
        """``filter_irrelevant=False`` validates every resource (the tests compare both ways);
        ``max_orders`` bounds the draft orders judged in one call (more is a 400); ``site``
        is the site folder's orderables and rule modes (none by default); ``fact_cache`` keeps
        what each resource and draft read as between calls (none by default; the app's is
        configured by CDS_FACT_CACHE)."""
        if site.catalogue.reads:
            cards, no_orderable = with_site_orderables(knowledge.cards, site.catalogue)
            knowledge = replace(knowledge, cards=cards)
            if no_orderable:  # once, at start-up: those suggestions keep the standard codes
                log.warning("site-has-no-orderable", orders=list(no_orderable))
        self.knowledge = knowledge
        self.site = site
        #: The name of the client profile in force (its overrides from client.json applied).
        self.client_profile = site.client.profile
        try:  # the site's client.json names a profile of hooks/clients/
            self.client = resolve_client(knowledge.clients, site.client)
        except ClientProfileError as exc:
            raise SiteError(f"{site.root}/{CLIENT_FILE}: {exc}") from exc
        #: The secret key of order keys: the app's is shared through its database by every
        #: worker and instance (cds_service.store.pseudonyms); elsewhere one per process.
        self.pseudonym_key: Callable[[], bytes] = lambda: _PROCESS_KEY
        #: The knowledge in force: hooks/' declared version plus a hash of hooks/ and the site.
        self.version = knowledge_version(knowledge.declared_version, knowledge.digest, site)
        self.max_orders = max_orders
        self.classifier = OrderClassifier(knowledge.imaging, site.catalogue.reads)
        self.renderer = CardRenderer(
            knowledge.cards,
            knowledge.ratings,
            {agent: entry.label for agent, entry in knowledge.contrast.agents.items()},
        )
        for service in knowledge.services.values():
            lacking = set(service.config.optionalPrefetch) - set(knowledge.cards.unreadable)
            if lacking:
                raise KnowledgeError(
                    f"cards.json: unreadable has no line for {service.id}'s {sorted(lacking)}"
                )
        self.implant_names = NameMatcher(knowledge.safety.implantTextPatterns)
        self.contrast = ContrastReader(knowledge.contrast, knowledge.valuesets)
        self.safety_table = SafetyTable(knowledge.table)
        self.pathway = PathwayReader(knowledge)
        self.due_imaging = DueImagingReader(knowledge.pathway)
        self.fact_cache = fact_cache
        # Built now, not on the first call (~70 ms): gunicorn's master builds the engine before
        # it forks, so the workers share the checks and no clinician's call waits for them.
        compiled_validator()
        #: The guidance pages the cards link to, built once for this knowledge version.
        self.guidance = GuidancePages(
            knowledge.cards,
            knowledge.ratings,
            {rule: entry.reason_variants for rule, entry in RULES.items()},
            self.version,
            acc_nerves=knowledge.pathway.acc.nerves["default"],
        )
        self.records = RecordBuilder(
            knowledge,
            self.classifier,
            self.implant_names,
            filter_irrelevant,
            fact_cache,
            self.version,
        )

    def for_client(self, profile: str) -> CdsEngine:
        """This engine serving another client profile (the vignettes run several); the
        knowledge and readers are shared, only the profile differs."""
        other = copy.copy(self)
        other.client = resolve_client(self.knowledge.clients, ClientChoice(profile=profile))
        other.client_profile = profile
        return other

    def service(self, service_id: str) -> ServiceDefinition:
        try:
            return self.knowledge.services[service_id]
        except KeyError:
            raise UnknownServiceError(f"No CDS service with id {service_id!r}") from None

    def evaluate(
        self,
        service_id: str,
        body: Any,
        new_uuid: UuidFactory = random_uuid,
        today: date | None = None,
        fetcher: FhirFetcher | None = None,
        snooze: Snooze | None = None,
        guidance_base: str | None = None,
        overridden: OverrideLookup | None = None,
    ) -> Outcome:
        """Answer one call. Data comes from prefetch, and from the FHIR server only when a
        fetcher is given (the HTTP service); the reasoning itself never touches the network.
        ``snooze``: who knows recent overrides (patient-view; none: nothing is snoozed);
        ``guidance_base``: the service's public URL (cards link their guidance page under it);
        ``overridden``: the cards overridden earlier in the session (see ``OverrideLookup``)."""
        service = self.service(service_id)
        request, context = parse_request(service, body)
        if isinstance(context, PatientViewContext):  # no draft orders: what is due
            reading = gather(service, request, fetcher)
            return self.decide_patient_view(
                service, context, reading, new_uuid, today or utc_today(), snooze, guidance_base
            )
        # Decided before prefetch is looked at: most order-select and order-sign calls are
        # medications and labs, and they get their (empty) answer at once, with no prefetch
        # required, no FHIR query and nothing to record.
        orders = self._orders(service, context)
        if not orders:
            return Outcome(CdsResponse(cards=[]), False, 0, 0, no_imaging_order=True)
        reading = gather(service, request, fetcher)
        return self.decide(
            service,
            context,
            reading,
            new_uuid,
            today or utc_today(),
            orders,
            guidance_base=guidance_base,
            overridden=overridden,
        )

    def _orders(
        self, service: ServiceDefinition, context: DraftOrdersContext
    ) -> list[ImagingOrder]:
        wanted = None
        if service.config.ordersToCheck == "selections" and isinstance(context, OrderSelectContext):
            wanted = {"/".join(s.split("/")[-2:]) for s in context.selections}
        known = self.classifier.known_systems
        drafts = draft_orders(
            context.draftOrders,
            wanted,
            context.patientId,
            self.max_orders,
            self._draft_is_valid,
            self._reads_as_imaging,
        )
        return [
            o for d in drafts if (o := self.classifier.classify(order_fact(d, known))) is not None
        ]

    def _reads_as_imaging(self, draft: Mapping[str, Any]) -> bool:
        """Whether a raw draft reads as an imaging order the service reads (the reader takes
        raw JSON as it comes). Asked before a draft is cleaned and validated: most drafts are
        medications and labs, and checking them costs more than the rest of such a call."""
        fact = order_fact(draft, self.classifier.known_systems)
        return self.classifier.classify(fact) is not None

    def _draft_is_valid(self, draft: Mapping[str, Any], patient_id: str) -> bool:
        """Whether a draft order is valid FHIR, from the fact cache when it holds the answer
        (a session sends the same drafts again with each selection)."""
        return read_through(
            self.fact_cache,
            key_prefix(f"draft:{self.version}", patient_id),
            draft,
            lambda: validated(draft) is not None,
        )

    def _record(self, context: PatientContext, reading: PrefetchReading) -> PatientRecord:
        return self.records.build(
            context.patientId,
            reading.resources,
            devices_known=DEVICE_PREFETCH_KEY not in reading.missing,
            allergies_known=ALLERGY_PREFETCH_KEY not in reading.missing,
            observations_known=OBSERVATION_PREFETCH_KEY not in reading.missing,
        )

    def _situation(
        self, record: PatientRecord, clinical: PostTreatmentContext, today: date
    ) -> PatientSituation:
        k = self.knowledge
        return PatientSituation(
            context=clinical,
            implant=find_implant(record, k.valuesets, k.safety, self.implant_names, self.contrast),
            contrast=self.contrast.assess(record, today),
            devices_known=record.devices_known,
            latest_prior=latest_prior_imaging(record),
            today=today,
            table=self.safety_table,
            pathway=self.pathway.position(record, clinical),
        )

    def decide_patient_view(
        self,
        service: ServiceDefinition,
        context: PatientViewContext,
        reading: PrefetchReading,
        new_uuid: UuidFactory = random_uuid,
        today: date | None = None,
        snooze: Snooze | None = None,
        guidance_base: str | None = None,
    ) -> Outcome:
        """patient-view: at most one info card, for imaging that is due and not ordered
        (cds_service.clinical.due_imaging); none for a rule that is off, and none for a
        patient and rule a clinician overrode within the service's ``snoozeDays``."""
        day = today or utc_today()
        record = self._record(context, reading)
        clinical = find_post_treatment_context(record, self.knowledge.valuesets)

        def quiet(in_scope: bool, snoozed: tuple[RuleId, ...] = ()) -> Outcome:
            return Outcome(
                CdsResponse(cards=[]),
                in_scope,
                0,
                record.skipped,
                fetched=reading.fetched,
                unreadable=reading.unreadable,
                snoozed_rules=snoozed,
            )

        if clinical is None:
            return quiet(False)
        situation = self._situation(record, clinical, day)
        finding = self.due_imaging.due(record, clinical, situation.pathway, day)
        if finding is None or self.site.mode(finding.rule_id) == "off":
            return quiet(True)
        rule = finding.rule_id
        key = snooze.key(context.patientId, rule) if snooze else snooze_key(context.patientId, rule)
        days = service.config.snoozeDays
        if snooze is not None and days and snooze.snoozed(service.id, key, rule, days):
            return quiet(True, (rule,))
        ordering = OrderingContext(context.patientId, context.userId, context.encounterId)
        rendered = self.renderer.render_due(
            finding,
            situation,
            ordering,
            new_uuid,
            tuple(reading.unreadable),
            SuggestionStyle(selection=self.client.selectionBehavior),
            guidance_base,
        )
        shown = self.site.mode(rule) == "active"
        card = rendered.card
        issued = IssuedCard(
            card.uuid,
            rule,
            tuple(s.uuid for s in card.suggestions or []),
            shown,
            key,
            rendered.suggestion_kinds,
        )
        return Outcome(
            CdsResponse(cards=[card] if shown else []),
            True,
            0,
            record.skipped,
            (rule,) if shown else (),
            reading.fetched,
            (issued,),
            reading.unreadable,
            () if shown else (rule,),
        )

    def decide(
        self,
        service: ServiceDefinition,
        context: DraftOrdersContext,
        reading: PrefetchReading,
        new_uuid: UuidFactory = random_uuid,
        today: date | None = None,
        orders: list[ImagingOrder] | None = None,
        *,
        guidance_base: str | None = None,
        overridden: OverrideLookup | None = None,
    ) -> Outcome:
        """Cards for the imaging drafts (``orders``: as ``evaluate`` read them; read here when
        not given) from the patient data in ``reading``."""
        if orders is None:
            orders = self._orders(service, context)
        k = self.knowledge
        record = self._record(context, reading)
        if not orders:
            return Outcome(
                CdsResponse(cards=[]),
                False,
                0,
                record.skipped,
                fetched=reading.fetched,
                unreadable=reading.unreadable,
            )
        clinical = find_post_treatment_context(record, k.valuesets)
        cards: list[Card] = []
        shown_for: dict[str, RuleId] = {}
        rules: tuple[RuleId, ...] = ()
        silent: tuple[RuleId, ...] = ()
        hidden: tuple[RuleId, ...] = ()
        issued: tuple[IssuedCard, ...] = ()
        not_appropriate: dict[str, str] = {}
        if clinical is not None:
            situation = self._situation(record, clinical, today or utc_today())
            history_card = service.config.standaloneHistoryCard
            advice = self._switched(
                advise(situation, orders, k, standalone_history=history_card), service
            )
            if history_card:
                advice = self._history_for_unshown(advice, service)
            ordering = OrderingContext(context.patientId, context.userId, context.encounterId)
            rendered = self.renderer.render(
                advice,
                situation,
                ordering,
                new_uuid,
                service.config.minimumIndicator,
                tuple(reading.unreadable),
                SuggestionStyle(
                    replacement=self.client.replacementStyle,
                    pama=service.hook in self.client.pama.onUpdatesAt,
                    history_card=history_card,
                    selection=self.client.selectionBehavior,
                ),
                guidance_base,
            )
            shown = [r for r in rendered if self._mode(r.rule, r.variant, service) == "active"]
            again = self._overridden_before(service, context.patientId, shown, overridden)
            rendered = [r for r in rendered if r not in again]
            shown = [r for r in shown if r not in again]
            cards = [r.card for r in shown]
            rules = tuple(r.rule for r in shown)
            silent = tuple(r.rule for r in rendered if r not in shown)
            hidden = tuple(r.rule for r in again)
            issued = tuple(
                IssuedCard(
                    r.card.uuid,
                    r.rule,
                    tuple(s.uuid for s in r.card.suggestions or []),
                    r in shown,
                    order_key(context.patientId, r.order, self.pseudonym_key()),
                    r.suggestion_kinds,
                )
                for r in rendered
            )
            shown_for = {r.order: r.rule for r in shown}
            # The table's rating where its card recommends another study instead of the order.
            for a in advice:
                cell = situation.cell(a.order, a.rated)
                if a.order.reference in shown_for and cell is not None and cell.rating:
                    not_appropriate[a.order.reference] = cell.rating
        actions = self._pama_actions(
            service, orders, clinical is not None, shown_for, not_appropriate
        )
        places = self.client.pama.where
        response = CdsResponse(
            cards=cards,
            systemActions=actions if actions and "systemActions" in places else None,
            extension={"systemActions": [a.model_dump(exclude_none=True) for a in actions]}
            if actions and "extension.systemActions" in places
            else None,
        )
        return Outcome(
            response,
            clinical is not None,
            len(orders),
            record.skipped,
            rules,
            reading.fetched,
            issued,
            reading.unreadable,
            silent,
            hidden_rules=hidden,
        )

    def _history_for_unshown(
        self, advice: list[OrderAdvice], service: ServiceDefinition
    ) -> list[OrderAdvice]:
        """Where the service shows the history card (order-sign), an order without a reason
        whose own card will not be shown here (below the indicator floor, or silent) joins the
        history card: otherwise its missing history would go unsaid."""
        floor = INDICATOR_RANK[service.config.minimumIndicator]
        out = []
        for a in advice:
            out.append(a)
            rule = a.rule_id
            if a.primary is None or not a.missing_history or rule is None:
                continue
            indicator = self.knowledge.cards.rules[rule].indicator
            active = self._mode(rule, a.variant, service) == "active"
            if not (active and INDICATOR_RANK[indicator] >= floor):
                out.append(replace(a, primary=None))
        return out

    def _mode(self, rule: RuleId, variant: str | None, service: ServiceDefinition) -> RuleMode:
        """The site's mode for the rule (or its variant of card), else the service's default."""
        return self.site.mode(rule, variant, service.config.ruleModes)

    def _overridden_before(
        self,
        service: ServiceDefinition,
        patient_id: str,
        shown: list[RenderedCard],
        overridden: OverrideLookup | None,
    ) -> list[RenderedCard]:
        """The cards the clinician already overrode for the same order and rule within the
        service's ``hideOverriddenMinutes`` (at order-select, before this order-sign): not
        shown again, nor recorded."""
        minutes = service.config.hideOverriddenMinutes
        if not minutes or overridden is None or not shown:
            return []
        keys = {id(r): order_key(patient_id, r.order, self.pseudonym_key()) for r in shown}
        dismissed = set(overridden(set(keys.values()), minutes))
        return [r for r in shown if (keys[id(r)], str(r.rule)) in dismissed]

    def _switched(self, advice: list[OrderAdvice], service: ServiceDefinition) -> list[OrderAdvice]:
        """The advice of the rules not switched off (by the site, or by the service's shipped
        defaults). A rule that is off is not evaluated: its card is neither built nor recorded,
        and no other card takes its place (an off contraindication does not let the protocol
        card fire); the history rule off also takes its line out of other cards."""
        if not self.site.rule_modes and not service.config.ruleModes:
            return advice
        history_off = self._mode(RuleId.MISSING_CLINICAL_HISTORY, None, service) == "off"
        kept = []
        for a in advice:
            if history_off and a.missing_history:
                a = replace(a, missing_history=False)
            if a.rule_id is not None and self._mode(a.rule_id, a.variant, service) != "off":
                kept.append(a)
        return kept

    def _pama_actions(
        self,
        service: ServiceDefinition,
        orders: list[ImagingOrder],
        in_scope: bool,
        shown_for: Mapping[str, RuleId],
        table_ratings: Mapping[str, str],
    ) -> list[Action]:
        """PAMA ratings for CPT-coded orders, by procedure code and in agreement with the card
        shown for each, at the hooks the client profile asks for them (clinical.pama)."""
        if service.hook not in self.client.pama.systemActionsAt:
            return []
        actions = []
        rater = self.renderer.rater
        for order in orders:
            codes = cpt_codes(order.draft.codes)
            rating = table_ratings.get(order.reference) or rater.rating(
                codes, in_scope, shown_for.get(order.reference)
            )
            action = self.renderer.pama_action(order, rating)
            if action is not None:
                actions.append(action)
        return actions
