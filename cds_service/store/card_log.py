"""Records shown cards off the request path (cds_service.store.background_writer), in batched
transactions.

A shown card is not an acknowledgement (feedback is): recording it must not add a database round
trip to the clinician's wait. Cards wait here at most ``max_delay`` seconds; feedback handling
calls ``flush()`` first, so feedback about a card shown a moment ago still finds it.

The queue is bounded (``capacity`` calls): when the database is slower than the traffic, the
request thread writes its own cards, so memory stays bounded and nothing is dropped. At exit,
and from gunicorn's ``worker_exit`` hook on SIGTERM, ``flush`` writes what is still queued.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from cds_service.engine import IssuedCard
from cds_service.store.background_writer import BackgroundWriter
from cds_service.store.storage import IssuedCardStore

log = structlog.get_logger("cds_service.cards")
_Batch = tuple[str, str, Sequence[IssuedCard], str]


class CardLog:
    def __init__(
        self,
        store: IssuedCardStore,
        max_batch: int = 200,
        max_delay: float = 0.05,
        capacity: int = 10_000,
    ) -> None:
        self._writer: BackgroundWriter[_Batch] = BackgroundWriter(
            store.record_batches,
            name="card-log",
            capacity=capacity,
            max_delay=max_delay,
            batch_limit=max_batch,
            on_error=_not_recorded,
        )

    def record(
        self,
        service_id: str,
        hook_instance: str,
        cards: Sequence[IssuedCard],
        client: str = "",
    ) -> None:
        """Queue the cards of one call; ``client`` is the caller (a hash of its issuer), so
        that only it may give feedback on them."""
        self._writer.put((service_id, hook_instance, cards, client))

    def flush(self, timeout: float = 5.0) -> None:
        """Return once every card queued before this call is written (or has failed)."""
        self._writer.flush(timeout)


def _not_recorded(exc: Exception, calls: int) -> None:
    log.error("cards-not-recorded", calls=calls, error_type=type(exc).__name__)
