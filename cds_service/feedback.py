"""Feedback store: which cards the service showed, and what clinicians did with them.

SQLAlchemy Core over SQLite (a file, WAL mode, by default) or PostgreSQL (``DATABASE_URL``).
No patient data is kept: cards are recorded by uuid with their service, rule and hookInstance.
Feedback is idempotent (the same item twice is stored once, by a hash of its content) and an
item about an unknown card is stored and flagged, never dropped. A write is committed before the
service acknowledges it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
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
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

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
)

seen_tokens = Table(
    "seen_tokens",
    metadata,
    Column("token_key", String(64), primary_key=True),  # sha256 of iss + jti
    Column("expires_at", Integer, nullable=False, index=True),
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
class IssuedCard:
    card_uuid: str
    rule_id: str
    suggestion_uuids: tuple[str, ...]


@dataclass(frozen=True)
class FeedbackItem:
    """One validated feedback item (see cds_service.api.feedback for the wire format)."""

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


def make_engine(url: str) -> Engine:
    """An engine with the settings each backend needs for concurrent, durable writes."""
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


class FeedbackStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    def _sqlite_sync(self, connection: Any, level: str) -> None:
        if self.engine.dialect.name == "sqlite":
            connection.exec_driver_sql(f"PRAGMA synchronous={level}")

    def create_schema(self) -> None:
        metadata.create_all(self.engine)

    def reachable(self) -> bool:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True

    def record_card_batches(self, batches: Iterable[tuple[str, str, Iterable[IssuedCard]]]) -> None:
        """Record the cards of several hook calls in one transaction."""
        rows = [
            {
                "card_uuid": c.card_uuid,
                "service_id": service_id,
                "rule_id": c.rule_id,
                "hook_instance": hook_instance[:80],
                "suggestion_uuids": json.dumps(list(c.suggestion_uuids)),
                "issued_at": datetime.now(UTC),
            }
            for service_id, hook_instance, cards in batches
            for c in cards
        ]
        if not rows:
            return
        statement = self._insert(issued_cards).values(rows).on_conflict_do_nothing()
        with self.engine.begin() as connection:
            # A shown card is in the clinician's click path and is not an acknowledgement:
            # in SQLite WAL mode NORMAL survives a crashed process (not a power cut) and skips
            # the fsync. Feedback, which is acknowledged, is written with FULL.
            self._sqlite_sync(connection, "NORMAL")
            connection.execute(statement)

    def store_feedback(self, service_id: str, items: Sequence[FeedbackItem]) -> StoreResult:
        """Store items in one transaction; returns counts once committed."""
        now = datetime.now(UTC)
        with self.engine.begin() as connection:
            self._sqlite_sync(connection, "FULL")
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
                    self._insert(feedback_items)
                    .values(row)
                    .on_conflict_do_nothing(index_elements=["dedup_key"])
                    .returning(feedback_items.c.id)
                )
                # rowcount is not portable for ON CONFLICT: count the rows actually inserted
                stored += len(connection.execute(statement).all())
        unknown = sum(1 for i in items if i.card_uuid not in known)
        return StoreResult(stored, len(items) - stored, unknown)

    def first_use_of_token(self, iss: str, jti: str, expires: float) -> bool:
        """True the first time (iss, jti) is seen, in any worker process; expired ones pruned."""
        key = hashlib.sha256(f"{iss}\n{jti}".encode()).hexdigest()
        now = int(datetime.now(UTC).timestamp())
        statement = (
            self._insert(seen_tokens)
            .values(token_key=key, expires_at=int(expires))
            .on_conflict_do_nothing(index_elements=["token_key"])
            .returning(seen_tokens.c.token_key)
        )
        with self.engine.begin() as connection:
            self._sqlite_sync(connection, "NORMAL")
            connection.execute(seen_tokens.delete().where(seen_tokens.c.expires_at < now))
            return bool(connection.execute(statement).all())

    def count_feedback(self) -> int:
        with self.engine.connect() as connection:
            return int(
                connection.execute(select(func.count()).select_from(feedback_items)).scalar_one()
            )


def dedup_key(service_id: str, canonical_item: str) -> str:
    return hashlib.sha256(f"{service_id}\n{canonical_item}".encode()).hexdigest()


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
