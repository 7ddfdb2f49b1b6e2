"""Everything the service keeps, in one module: a store per table over one database.

SQLAlchemy Core over SQLite (a file, WAL mode, by default) or PostgreSQL (``DATABASE_URL``).
- ``IssuedCardStore``: the cards the service showed, by uuid with service, rule and hookInstance;
- ``FeedbackStore``: what clinicians did with them; idempotent (the same item twice is stored
  once, by a hash of its content); an item about an unknown card is stored and flagged, never
  dropped; committed before the service acknowledges it;
- ``ReplayStore``: the JWT ids already used, shared by every worker and instance;
- ``SnoozeStore``: whether a patient-view card was overridden lately for a patient and rule,
  found by a keyed hash (a random salt kept in this database), never by the patient id.
No patient data is kept. The schema is created by an explicit step (``Database.create_schema``,
run by ``salivary-cds init-db`` and at gunicorn start-up), never as a side effect of building
the app. The pure engine never imports this module.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from cds_service.contract.errors import (
    DatabaseUnavailableError,
    InvalidRequestError,
    QuotaExceededError,
    ReplayCheckUnavailableError,
)

log = structlog.get_logger("cds_service.storage")

if TYPE_CHECKING:
    from cds_service.engine import IssuedCard

metadata = MetaData()

#: Secrets the service creates once and every worker and instance shares (the pseudonym key).
service_secrets = Table(
    "service_secrets",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", String(128), nullable=False),
)

issued_cards = Table(
    "issued_cards",
    metadata,
    Column("card_uuid", String(64), primary_key=True),
    Column("service_id", String(128), nullable=False, index=True),
    Column("rule_id", String(64), nullable=False, index=True),
    Column("hook_instance", String(80), nullable=False),
    Column("suggestion_uuids", Text, nullable=False),  # JSON array
    Column("issued_at", DateTime(timezone=True), nullable=False),
    # "shown", or "silent" for a card decided by a rule in silent mode and not returned.
    Column("mode", String(8), nullable=False, server_default="shown"),
    # The knowledge in force when the card was decided (engine.version).
    Column("knowledge_version", String(64), nullable=False, server_default=""),
    # A hash of the patient and order ids (engine.order_key): re-issued cards count once.
    Column("order_key", String(32), nullable=False, server_default=""),
    # What each suggestion does, parallel to suggestion_uuids (JSON array).
    Column("suggestion_kinds", Text, nullable=False, server_default="[]"),
    # Who was shown the card: a hash of the calling issuer ("" without authentication). Only
    # that caller's feedback, to this card's own service, counts as feedback on it.
    Column("client_key", String(16), nullable=False, server_default=""),
)

#: patient-view snooze lookups go by (order_key, rule): an index made by create_schema, also on
#: a table created by an earlier version (create_all adds indexes only with new tables).
issued_cards_by_key = Index("ix_issued_cards_order_key", issued_cards.c.order_key)

seen_tokens = Table(
    "seen_tokens",
    metadata,
    Column("token_key", String(64), primary_key=True),  # sha256 of iss + jti
    Column("expires_at", BigInteger, nullable=False, index=True),
)

feedback_items = Table(
    "feedback_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dedup_key", String(64), nullable=False, unique=True),
    Column("service_id", String(128), nullable=False, index=True),
    Column("card_uuid", String(64), nullable=False, index=True),
    Column("known_card", Boolean, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("accepted_suggestions", Text, nullable=False),  # JSON array of suggestion uuids
    Column("override_system", String(256)),
    Column("override_code", String(128)),
    Column("override_display", Text),
    Column("user_comment", Text),
    Column("outcome_timestamp", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class FeedbackItem:
    """One validated feedback item (see cds_service.web.feedback for the wire format)."""

    card_uuid: str
    outcome: str
    accepted_suggestions: tuple[str, ...]
    override_system: str | None
    override_code: str | None
    override_display: str | None
    user_comment: str | None
    outcome_timestamp: datetime
    raw: str  # canonical JSON of the item as received, for idempotency


@dataclass(frozen=True)
class StoreResult:
    stored: int
    duplicates: int
    unknown_cards: int


def default_sqlite_url(data_dir: Path) -> str:
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(data_dir / 'cds_service.sqlite3').resolve()}"


class Database:
    """One SQLAlchemy engine with the settings each backend needs for concurrent, durable
    writes; the stores below share it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.location = database_location(url)
        try:
            self.sql = _sql_engine(url)
        except (SQLAlchemyError, ImportError) as exc:  # e.g. a driver that is not installed
            raise DatabaseUnavailableError(
                f"database {self.location} cannot be used: {_first_line(exc)}"
            ) from exc
        self.dialect = self.sql.dialect.name
        self.insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert

    def create_schema(self) -> None:
        """Create missing tables. On PostgreSQL under an advisory lock: several instances
        starting at once behind a load balancer would otherwise race to create the same table.

        A database that cannot be reached or written is a ``DatabaseUnavailableError`` naming
        it (never its password) and the driver's reason, in one line."""
        try:
            with self.sql.begin() as connection:
                if self.dialect == "postgresql":
                    connection.execute(text("SELECT pg_advisory_xact_lock(7461203)"))
                metadata.create_all(connection)
                _add_missing_columns(connection)
                issued_cards_by_key.create(connection, checkfirst=True)
        except SQLAlchemyError as exc:
            raise DatabaseUnavailableError(
                f"database {self.location} cannot be reached: "
                f"{_first_line(getattr(exc, 'orig', None) or exc)}"
            ) from exc

    def secret(self, name: str) -> str:
        """A random secret (64 hex digits) created the first time it is asked for and kept:
        every worker and instance on this database gets the same one."""
        candidate = secrets.token_hex(32)
        with self.sql.begin() as connection:
            connection.execute(
                self.insert(service_secrets)
                .values(name=name, value=candidate)
                .on_conflict_do_nothing(index_elements=["name"])
            )
            return str(
                connection.execute(
                    select(service_secrets.c.value).where(service_secrets.c.name == name)
                ).scalar_one()
            )

    def drop_schema(self) -> None:
        """Tests only: start from an empty database."""
        metadata.drop_all(self.sql)

    def reachable(self) -> bool:
        with self.sql.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True

    def dispose(self) -> None:
        """Close pooled connections (before forking workers, or when done)."""
        self.sql.dispose()

    def sqlite_sync(self, connection: Any, level: str) -> None:
        """SQLite's fsync level for this transaction (FULL for acknowledged writes)."""
        if self.dialect == "sqlite":
            connection.exec_driver_sql(f"PRAGMA synchronous={level}")


def _add_missing_columns(connection: Connection) -> None:
    """Bring a table created by an earlier version up to date: a column added since (always one
    with a server default, so existing rows stay valid) is added in place. Columns are never
    dropped or changed here."""
    inspector = inspect(connection)
    for table in metadata.sorted_tables:
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            if column.server_default is None:
                raise RuntimeError(f"{table.name}.{column.name} needs a server default to be added")
            kind = column.type.compile(dialect=connection.dialect)
            default = column.server_default.arg  # type: ignore[attr-defined]
            connection.execute(
                text(
                    f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind} "
                    f"NOT NULL DEFAULT '{default}'"
                )
            )
            log.info("column-added", table=table.name, column=column.name)


def database_location(url: str) -> str:
    """Where the data lives, safe to log and to show on ``/readyz``: a SQLite file's path, or a
    server database as ``postgresql://host:port/name`` (no user, no password)."""
    try:
        parsed = make_url(url)
    except (SQLAlchemyError, ValueError):
        return "an unreadable database URL"
    if parsed.get_backend_name() == "sqlite":
        return f"sqlite:///{parsed.database}" if parsed.database else "sqlite (in memory)"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.get_backend_name()}://{parsed.host or 'localhost'}{port}/{parsed.database}"


def _first_line(exc: BaseException) -> str:
    """A driver's message without SQLAlchemy's appended statement and background link."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _sql_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")  # each write sets its own level below
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


class IssuedCardStore:
    """The cards shown, so that feedback can be tied to its rule."""

    def __init__(self, database: Database, knowledge_version: str = "") -> None:
        self.database = database
        self.knowledge_version = knowledge_version
        self._insert_card = database.insert(issued_cards).on_conflict_do_nothing()

    def record_batches(self, batches: Iterable[tuple[str, str, Iterable[IssuedCard], str]]) -> None:
        """Record the cards of several hook calls in one transaction."""
        rows = [
            {
                "card_uuid": c.card_uuid,
                "service_id": service_id,
                "rule_id": c.rule_id,
                "hook_instance": hook_instance[:80],
                "suggestion_uuids": json.dumps(list(c.suggestion_uuids)),
                "issued_at": datetime.now(UTC),
                "mode": "shown" if c.shown else "silent",
                "knowledge_version": self.knowledge_version,
                "order_key": c.order_key,
                "suggestion_kinds": json.dumps(list(c.suggestion_kinds)),
                "client_key": client,
            }
            for service_id, hook_instance, cards, client in batches
            for c in cards
        ]
        if not rows:
            return
        with self.database.sql.begin() as connection:
            # A shown card is in the clinician's click path and is not an acknowledgement:
            # in SQLite WAL mode NORMAL survives a crashed process (not a power cut) and skips
            # the fsync. Feedback, which is acknowledged, is written with FULL.
            self.database.sqlite_sync(connection, "NORMAL")
            # One statement whatever the number of rows (executemany): compiled once and
            # cached, where ``.values(rows)`` compiled a new statement for every batch size.
            connection.execute(self._insert_card, rows)


#: The earliest outcome time stored: no card of this service was shown before it.
EARLIEST_OUTCOME = datetime(2000, 1, 1, tzinfo=UTC)


def bounded_time(when: datetime, now: datetime) -> datetime:
    """An outcome time as stored: in UTC, no earlier than 2000 and no later than its arrival.
    A valid but absurd one (``0001-01-01T00:00:00+01:00``, year 0 in UTC) was stored and then
    broke every report on PostgreSQL; one in 2099 won "latest" forever. Bounded on input, the
    order of a card's feedback is kept for every real client."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if when < EARLIEST_OUTCOME:
        return EARLIEST_OUTCOME
    if when > now:
        return now
    return when.astimezone(UTC)


#: Feedback items one shown card may hold (accepted, then overridden, then accepted again...).
FEEDBACK_PER_CARD = 20
#: Feedback items about cards the service does not know, per day, all callers together.
UNKNOWN_PER_DAY = 5_000


class FeedbackStore:
    """Clinicians' feedback on cards, stored exactly once per distinct item."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def store(
        self, service_id: str, items: Sequence[FeedbackItem], client: str = ""
    ) -> StoreResult:
        """Store items in one transaction; returns counts once committed.

        An item is about a known card only when the card was issued by this service to this
        client (``client``: a hash of the caller's issuer); feedback on another service's or
        another caller's card is stored flagged as unknown, never counted for that card. An
        accepted suggestion the card never had is a 400 naming it. The store has a quota: at
        most FEEDBACK_PER_CARD items per known card, and UNKNOWN_PER_DAY items about unknown
        cards a day (429 past either: nothing of the request is stored)."""
        now = datetime.now(UTC)
        with self.database.sql.begin() as connection:
            self.database.sqlite_sync(connection, "FULL")
            uuids = {i.card_uuid for i in items}
            cards = {
                row.card_uuid: row
                for row in connection.execute(
                    select(
                        issued_cards.c.card_uuid,
                        issued_cards.c.service_id,
                        issued_cards.c.client_key,
                        issued_cards.c.suggestion_uuids,
                    ).where(issued_cards.c.card_uuid.in_(uuids))
                )
            }
            known = {
                uuid
                for uuid, row in cards.items()
                if row.service_id == service_id and row.client_key == client
            }
            for n, item in enumerate(items):
                if item.card_uuid in known:
                    offered = set(json.loads(cards[item.card_uuid].suggestion_uuids))
                    if not set(item.accepted_suggestions) <= offered:
                        raise InvalidRequestError(
                            "an accepted suggestion is not one the card offered",
                            field=f"feedback.{n}.acceptedSuggestions",
                        )
            self._check_quota(connection, items, known, now)
            stored = 0
            for item in items:
                row = {
                    "dedup_key": dedup_key(service_id, item.raw),
                    "service_id": service_id,
                    "card_uuid": item.card_uuid,
                    "known_card": item.card_uuid in known,
                    "outcome": item.outcome,
                    "accepted_suggestions": json.dumps(list(item.accepted_suggestions)),
                    "override_system": item.override_system,
                    "override_code": item.override_code,
                    "override_display": item.override_display,
                    "user_comment": item.user_comment,
                    "outcome_timestamp": bounded_time(item.outcome_timestamp, now),
                    "received_at": now,
                }
                statement = (
                    self.database.insert(feedback_items)
                    .values(row)
                    .on_conflict_do_nothing(index_elements=["dedup_key"])
                    .returning(feedback_items.c.id)
                )
                # rowcount is not portable for ON CONFLICT: count the rows actually inserted
                stored += len(connection.execute(statement).all())
        unknown = sum(1 for i in items if i.card_uuid not in known)
        return StoreResult(stored, len(items) - stored, unknown)

    @staticmethod
    def _check_quota(
        connection: Connection, items: Sequence[FeedbackItem], known: set[str], now: datetime
    ) -> None:
        """Two clients once grew the database by 341 MB in 20 s: feedback is bounded by the
        cards shown (a few items each) and, about unknown cards, by a daily allowance."""
        per_card: dict[str, int] = {}
        for item in items:
            if item.card_uuid in known:
                per_card[item.card_uuid] = per_card.get(item.card_uuid, 0) + 1
        if per_card:
            held: dict[str, int] = dict(
                connection.execute(
                    select(feedback_items.c.card_uuid, func.count())
                    .where(feedback_items.c.card_uuid.in_(per_card))
                    .where(feedback_items.c.known_card.is_(True))
                    .group_by(feedback_items.c.card_uuid)
                ).all()
            )
            if any(held.get(c, 0) + n > FEEDBACK_PER_CARD for c, n in per_card.items()):
                raise QuotaExceededError(f"a card takes at most {FEEDBACK_PER_CARD} feedback items")
        unknown = sum(1 for i in items if i.card_uuid not in known)
        if unknown:
            recent = connection.execute(
                select(func.count())
                .select_from(feedback_items)
                .where(feedback_items.c.known_card.is_(False))
                .where(feedback_items.c.received_at >= now - timedelta(days=1))
            ).scalar_one()
            if int(recent) + unknown > UNKNOWN_PER_DAY:
                raise QuotaExceededError(
                    f"at most {UNKNOWN_PER_DAY} feedback items a day about unknown cards"
                )

    def overridden(self, order_keys: Collection[str], minutes: int) -> set[tuple[str, str]]:
        """The (order key, rule id) pairs among ``order_keys`` whose card was issued within the
        last ``minutes`` and whose latest feedback (by outcome time) is "overridden": the
        clinician dismissed it in this ordering session, so it is not shown again."""
        if not order_keys:
            return set()
        since = datetime.now(UTC) - timedelta(minutes=minutes)
        query = (
            select(
                issued_cards.c.order_key,
                issued_cards.c.rule_id,
                feedback_items.c.outcome,
                feedback_items.c.outcome_timestamp,
            )
            .join(feedback_items, feedback_items.c.card_uuid == issued_cards.c.card_uuid)
            .where(issued_cards.c.order_key.in_(set(order_keys)))
            .where(issued_cards.c.issued_at >= since)
            .order_by(feedback_items.c.outcome_timestamp, feedback_items.c.id)
        )
        latest: dict[tuple[str, str], str] = {}
        with self.database.sql.connect() as connection:
            for key, rule, outcome, _when in connection.execute(query):
                latest[(key, rule)] = outcome  # ordered by time: the last one stays
        return {pair for pair, outcome in latest.items() if outcome == "overridden"}

    def count(self) -> int:
        with self.database.sql.connect() as connection:
            return int(
                connection.execute(select(func.count()).select_from(feedback_items)).scalar_one()
            )


class ReplayStore:
    """JWT ids already used, in the database: shared by every worker process and instance, so a
    replayed token is refused wherever it arrives."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def first_use(self, iss: str, jti: str, expires: float) -> bool:
        """True the first time (iss, jti) is seen; expired ones are pruned. When the database
        cannot be asked, ReplayCheckUnavailableError: without the shared memory a replay cannot
        be ruled out, and the caller refuses the token saying why."""
        key = hashlib.sha256(f"{iss}\n{jti}".encode()).hexdigest()
        now = int(datetime.now(UTC).timestamp())
        statement = (
            self.database.insert(seen_tokens)
            .values(token_key=key, expires_at=int(expires))
            .on_conflict_do_nothing(index_elements=["token_key"])
            .returning(seen_tokens.c.token_key)
        )
        try:
            with self.database.sql.begin() as connection:
                self.database.sqlite_sync(connection, "NORMAL")
                connection.execute(seen_tokens.delete().where(seen_tokens.c.expires_at < now))
                return bool(connection.execute(statement).all())
        except SQLAlchemyError as exc:
            log.error("replay-check-failed", error_type=type(exc).__name__)
            raise ReplayCheckUnavailableError("the used-token store does not answer") from None


class SnoozeStore:
    """Has a clinician overridden a patient-view card for this patient and rule lately?

    The issued card is stored with ``key(patient, rule)`` as its order_key: an HMAC-SHA256 of
    the patient id and rule under a random secret this database keeps in service_secrets
    (created once), cut to 128 bits. Neither the patient id nor an unsalted hash of it (which
    a list of ids would reverse) is stored; the lookup joins feedback to issued cards by that
    key. Someone holding the whole database, secret included, could still test candidate ids
    one by one: the secret protects against precomputed tables and linkage across databases,
    not against that.
    """

    SALT_NAME = "snooze-key"

    def __init__(self, database: Database) -> None:
        self.database = database
        self._salt: bytes | None = None

    def salt(self) -> bytes:
        """The key's secret, kept in service_secrets (as the pseudonyms' key is)."""
        if self._salt is None:
            self._salt = bytes.fromhex(self.database.secret(self.SALT_NAME))
        return self._salt

    def key(self, patient_id: str, rule: str) -> str:
        message = f"{patient_id}\n{rule}".encode()
        return hmac.new(self.salt(), message, hashlib.sha256).hexdigest()[:32]

    def overridden_since(self, service_id: str, key: str, rule: str, days: int) -> bool:
        """Whether feedback received in the last ``days`` days overrode a card of ``rule``
        issued by ``service_id`` under ``key``."""
        since = datetime.now(UTC) - timedelta(days=days)
        statement = (
            select(feedback_items.c.id)
            .join(issued_cards, issued_cards.c.card_uuid == feedback_items.c.card_uuid)
            .where(
                issued_cards.c.order_key == key,
                issued_cards.c.rule_id == rule,
                issued_cards.c.service_id == service_id,
                feedback_items.c.outcome == "overridden",
                feedback_items.c.received_at >= since,
            )
            .limit(1)
        )
        with self.database.sql.connect() as connection:
            return connection.execute(statement).first() is not None


def dedup_key(service_id: str, canonical_item: str) -> str:
    return hashlib.sha256(f"{service_id}\n{canonical_item}".encode()).hexdigest()


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
