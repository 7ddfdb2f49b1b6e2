"""Everything the service keeps, in one module: a store per table over one database.

SQLAlchemy Core over SQLite (a file, WAL mode, by default) or PostgreSQL (``DATABASE_URL``).
- ``IssuedCardStore``: the cards the service showed, by uuid with service, rule and hookInstance;
- ``FeedbackStore``: what clinicians did with them; idempotent (the same item twice is stored
  once, by a hash of its content); an item about an unknown card is stored and flagged, never
  dropped; committed before the service acknowledges it;
- ``ReplayStore``: the JWT ids already used, shared by every worker and instance.
No patient data is kept. The schema is created by an explicit step (``Database.create_schema``,
run by ``salivary-cds init-db`` and at gunicorn start-up), never as a side effect of building
the app. The pure engine never imports this module.
"""

from __future__ import annotations

import hashlib
import json
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

from cds_service.contract.errors import ReplayCheckUnavailableError

log = structlog.get_logger("cds_service.storage")

if TYPE_CHECKING:
    from cds_service.engine import IssuedCard

metadata = MetaData()

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
)

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
        self.sql = _sql_engine(url)
        self.dialect = self.sql.dialect.name
        self.insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert

    def create_schema(self) -> None:
        """Create missing tables. On PostgreSQL under an advisory lock: several instances
        starting at once behind a load balancer would otherwise race to create the same table."""
        with self.sql.begin() as connection:
            if self.dialect == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(7461203)"))
            metadata.create_all(connection)
            _add_missing_columns(connection)

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

    def record_batches(self, batches: Iterable[tuple[str, str, Iterable[IssuedCard]]]) -> None:
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
            }
            for service_id, hook_instance, cards in batches
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


class FeedbackStore:
    """Clinicians' feedback on cards, stored exactly once per distinct item."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def store(self, service_id: str, items: Sequence[FeedbackItem]) -> StoreResult:
        """Store items in one transaction; returns counts once committed."""
        now = datetime.now(UTC)
        with self.database.sql.begin() as connection:
            self.database.sqlite_sync(connection, "FULL")
            uuids = {i.card_uuid for i in items}
            known = set(
                connection.execute(
                    select(issued_cards.c.card_uuid).where(issued_cards.c.card_uuid.in_(uuids))
                ).scalars()
            )
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
                    "outcome_timestamp": item.outcome_timestamp,
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


def dedup_key(service_id: str, canonical_item: str) -> str:
    return hashlib.sha256(f"{service_id}\n{canonical_item}".encode()).hexdigest()


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
