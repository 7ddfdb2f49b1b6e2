"""Log lines and shown cards off the request path: bounded queues, whole lines, nothing lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Sequence

from cds_service.engine import IssuedCard
from cds_service.knowledge.rules import RuleId
from cds_service.store.card_log import CardLog
from cds_service.web.line_queue import ATOMIC_WRITE_BYTES, LineQueue


class Recorder:
    """Stands for os.write: keeps every write; the writer thread's are held until released
    (a slow stream), the request thread's go through."""

    def __init__(self) -> None:
        self.writes: list[tuple[int, bytes, str]] = []
        self.release = threading.Event()
        self.release.set()

    def __call__(self, fileno: int, data: bytes) -> None:
        thread = threading.current_thread().name
        if thread == "log-lines":
            self.release.wait(10)
        self.writes.append((fileno, data, thread))


def _lines(n: int, size: int = 300) -> list[bytes]:
    return [(f"{i:06d}".ljust(size - 1, "x") + "\n").encode() for i in range(n)]


def test_lines_are_written_whole_in_order_in_atomic_batches() -> None:
    recorder = Recorder()
    lines = LineQueue(write=recorder)
    sent = _lines(200)
    for line in sent:
        lines.put(7, line)
    lines.flush()
    assert b"".join(data for _, data, _ in recorder.writes) == b"".join(sent)
    assert all(len(data) <= ATOMIC_WRITE_BYTES for _, data, _ in recorder.writes)
    assert all(data.endswith(b"\n") for _, data, _ in recorder.writes), "never a split line"
    assert len(recorder.writes) < len(sent) / 5, "several lines a write"
    assert {thread for _, _, thread in recorder.writes} == {"log-lines"}


def test_a_line_longer_than_a_batch_is_written_alone_and_whole() -> None:
    recorder = Recorder()
    lines = LineQueue(write=recorder)
    long_line = b"y" * (3 * ATOMIC_WRITE_BYTES) + b"\n"
    lines.put(3, b"short\n")
    lines.put(3, long_line)
    lines.put(4, b"other descriptor\n")
    lines.flush()
    assert [(f, d) for f, d, _ in recorder.writes] == [
        (3, b"short\n"),
        (3, long_line),
        (4, b"other descriptor\n"),
    ]


def test_a_full_queue_makes_the_caller_write_its_own_line() -> None:
    recorder = Recorder()
    recorder.release.clear()  # the writer thread is stuck on a slow stream
    lines = LineQueue(capacity=2, max_delay=0.01, write=recorder)
    sent = _lines(6)
    for line in sent:
        lines.put(1, line)
    written_here = [data for _, data, thread in recorder.writes if thread != "log-lines"]
    recorder.release.set()
    lines.flush()
    assert written_here, "past the capacity, the request thread wrote"
    everything = b"".join(data for _, data, _ in recorder.writes)
    assert sorted(everything.splitlines(keepends=True)) == sorted(sent), "nothing lost"


def test_flush_in_a_process_that_queued_nothing_returns_at_once() -> None:
    LineQueue().flush(timeout=0.01)


def test_lines_reach_a_real_descriptor() -> None:
    read_end, write_end = os.pipe()
    try:
        lines = LineQueue()
        lines.put(write_end, b'{"event":"hook"}\n')
        lines.flush()
        assert os.read(read_end, 100) == b'{"event":"hook"}\n'
    finally:
        os.close(read_end)
        os.close(write_end)


class SlowStore:
    """An IssuedCardStore that records its batches; the writer thread's are held until
    released (a stalled database)."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, str, Sequence[IssuedCard], str]] = []
        self.threads: list[str] = []
        self.release = threading.Event()

    def record_batches(self, pending: list[tuple[str, str, Sequence[IssuedCard], str]]) -> None:
        if threading.current_thread().name == "card-log":
            self.release.wait(10)
        self.batches.extend(pending)
        self.threads.append(threading.current_thread().name)


def test_a_full_card_log_writes_on_the_request_thread_and_loses_nothing() -> None:
    store = SlowStore()
    log = CardLog(store, max_delay=0.01, capacity=2)  # type: ignore[arg-type]
    card = IssuedCard("c", RuleId.MISSING_CLINICAL_HISTORY, ())
    store.release.set()
    log.record("svc", "first", [card])
    log.flush()
    store.release.clear()  # the database stalls
    for n in range(6):
        log.record("svc", f"call-{n}", [card])
    assert "MainThread" in store.threads, "past the capacity, the request thread wrote"
    store.release.set()
    log.flush()
    calls = ["first", *(f"call-{n}" for n in range(6))]
    assert sorted(b[1] for b in store.batches) == sorted(calls), "nothing lost"


_FORKING = """
import os, sys
import structlog
from cds_service.web.logs import configure_logging, flush_logs
configure_logging("INFO", queued=True)
log = structlog.get_logger("t")
log.info("master-line")  # the configuring process: written at once
pid = os.fork()
if pid == 0:
    log.info("worker-line-flushed")
    flush_logs()
    log.info("worker-line-dropped")
    os._exit(0)  # no atexit: what is still queued is gone
os.waitpid(pid, 0)
os._exit(0)
"""


def test_start_up_lines_are_written_at_once_and_workers_lines_queued() -> None:
    """gunicorn's master writes its start-up lines at once (they are in the log before any
    worker answers); a forked worker queues its lines, and ``flush_logs`` writes them."""
    out = subprocess.run(
        [sys.executable, "-c", _FORKING], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    events = [json.loads(line)["event"] for line in out.splitlines()]
    assert events == ["master-line", "worker-line-flushed"]


def test_a_failed_write_is_reported_and_the_writer_lives_on() -> None:
    """Once, a write failing with anything but a database error stopped the card log's thread
    for good (every later card waited in the queue for ever); now the failure is handed to
    ``on_error`` and the next batch is written."""
    from cds_service.store.background_writer import BackgroundWriter

    written: list[list[str]] = []
    errors: list[tuple[str, int]] = []

    def write(batch: list[str]) -> None:
        if "boom" in batch:
            raise RuntimeError("sink failed")
        written.append(batch)

    writer: BackgroundWriter[str] = BackgroundWriter(
        write,
        name="test-writer",
        capacity=10,
        max_delay=0.01,
        batch_limit=100,
        on_error=lambda exc, n: errors.append((type(exc).__name__, n)),
    )
    writer.put("boom")
    writer.flush()
    writer.put("after")
    writer.flush()
    assert errors == [("RuntimeError", 1)]
    assert written == [["after"]]


def test_a_record_orjson_refuses_is_written_by_json() -> None:
    """An integer past 64 bits, or a lone surrogate: still one valid JSON line, UTF-8."""
    from cds_service.web.logs import _render

    for event in ({"event": "x", "n": 2**70}, {"event": "x", "s": "\ud800"}, {"event": "é"}):
        line = _render(event)
        line.decode("utf-8")  # never invalid UTF-8 on the stream
        assert json.loads(line)["event"] == event["event"]
