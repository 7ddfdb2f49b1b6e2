"""gunicorn's threaded worker, but a request is read whole before a thread is taken.

Why: gthread hands a connection to a thread as soon as its first bytes arrive, and the thread
then reads the rest of the request itself, blocking. A client that drips its body (1 byte every
10 s) keeps that thread for as long as it likes; 66 such connections took all 64 threads of a
deployment, and ``/healthz`` and every hook call timed out (the 401 was sent, the thread kept
reading). Here the worker's event loop, which already waits on idle kept-alive connections
without a thread, also receives every request: headers and body are read without blocking into
a per-connection buffer, and only a complete request (its length known from ``Content-Length``
or its chunked framing ended) is handed to a thread, which then never waits on the client.

Bounds, so that slow or large requests cost memory and a file descriptor, never a thread:
- a request must arrive whole within ``request_read_timeout`` seconds of its first byte being
  awaited (``CDS_REQUEST_READ_TIMEOUT``, 10 s): past it the connection is answered 408 and closed;
- a body announced (or chunked) past ``max_body_bytes`` is answered 413 at once, unread;
- all requests being received by one worker hold at most ``buffer_budget`` bytes together:
  a request that would pass it is answered 503 and closed (the others are unaffected);
- the number of connections per worker stays gunicorn's ``worker_connections``.
Headers past gunicorn's own limits are handed over as they are: its parser answers 414/431
without waiting for more. TLS and HTTP/2 prior knowledge (neither used here) keep gthread's path.

Everything here runs on the worker's main thread (the event loop), as gthread's own
connection bookkeeping does.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from gunicorn import http
from gunicorn.http2 import negotiation
from gunicorn.workers.gthread import ThreadWorker

#: Largest request head handed to gunicorn's parser (its request line and header limits, with
#: room for line ends): past this, the parser refuses the request without reading further.
_MAX_HEAD = 4094 + 50 * (8190 + 2) + 4


#: Seconds an answered connection is drained before it is closed.
_LINGER = 2.0


class _IncompleteError(Exception):
    """More bytes are needed."""


class _RefusedError(Exception):
    """Answer ``status`` and close (the request is never handed to the app)."""

    def __init__(
        self, status: int, reason: str, message: str, limit_bytes: int | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message
        #: A 413 names the limit, as the app's own 413 does (``limitBytes``).
        self.limit_bytes = limit_bytes


def _too_large(max_body: int) -> _RefusedError:
    return _RefusedError(
        413, "Request Entity Too Large", f"the body is over {max_body} bytes", max_body
    )


@dataclass
class _Incoming:
    """One request being received: its bytes so far, and when it must be complete by."""

    deadline: float
    data: bytearray = field(default_factory=bytearray)
    continued: bool = False  # "100 Continue" sent
    #: Answered (413, 408, 503): what the client still sends is read and dropped until it
    #: closes or the linger ends, so it reads the answer instead of a connection reset.
    draining: bool = False


def request_end(data: bytes | bytearray, max_body: int) -> int:
    """Where the first complete HTTP/1.x request in ``data`` ends (an index into ``data``).

    Raises _IncompleteError when it has not all arrived, _RefusedError when its body is too large.
    A head that cannot be read here (a malformed length) ends where the head ends: gunicorn's
    parser then answers 400 from what it has, without waiting for a body.
    """
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
        if len(data) > _MAX_HEAD:
            return len(data)  # gunicorn answers 414/431 from this alone
        raise _IncompleteError
    body_start = head_end + 4
    length: int | None = None
    chunked = False
    for line in bytes(data[:head_end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            text = value.strip()
            if not text.isdigit():
                return body_start
            length = int(text)
        elif name == b"transfer-encoding":
            chunked = chunked or b"chunked" in value.lower()
    if chunked:
        return _chunked_end(data, body_start, max_body)
    if length is None:
        return body_start
    if length > max_body:
        raise _too_large(max_body)
    if len(data) < body_start + length:
        raise _IncompleteError
    return body_start + length


def _chunked_end(data: bytes | bytearray, at: int, max_body: int) -> int:
    """The end of a chunked body starting at ``at`` (after its trailers)."""
    total = 0
    while True:
        line_end = data.find(b"\r\n", at)
        if line_end < 0:
            if len(data) - at > 1024:
                return len(data)  # no chunk-size line is that long: let the parser refuse it
            raise _IncompleteError
        size_text = bytes(data[at:line_end]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return len(data)  # malformed: gunicorn's parser answers 400 from what it has
        total += size
        if total > max_body:
            raise _too_large(max_body)
        if size == 0:  # the last chunk; trailer lines, if any, end with an empty line
            end = data.find(b"\r\n\r\n", line_end)
            if end < 0:
                if len(data) - line_end > _MAX_HEAD:
                    return len(data)  # trailers past any limit: the parser refuses them
                raise _IncompleteError
            return end + 4
        chunk_end = line_end + 2 + size + 2
        if len(data) < chunk_end:
            raise _IncompleteError
        at = chunk_end


def _answer(
    sock: socket.socket, status: int, reason: str, message: str, limit: int | None = None
) -> None:
    """A short JSON answer, sent without blocking (it fits a fresh socket's buffer), then the
    connection is closed by the caller."""
    fields: dict[str, object] = {"error": reason.lower().replace(" ", "-"), "message": message}
    if limit is not None:
        fields["limitBytes"] = limit
    body = json.dumps(fields).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1")
    with contextlib.suppress(OSError):  # the client is gone or not reading: close it anyway
        sock.send(head + body)


class BufferedThreadWorker(ThreadWorker):  # type: ignore[misc]  # gunicorn is untyped
    """gthread with whole requests read by the event loop (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from cds_service.config import load_settings

        settings = load_settings()
        self.max_body = settings.max_body_bytes
        self.read_timeout = settings.request_read_timeout
        self.buffer_budget = settings.request_buffer_bytes
        self.buffered_bytes = 0
        self.incoming: dict[Any, _Incoming] = {}

    # -- gthread's hand-over point --------------------------------------------------------

    def enqueue_req(self, conn: Any) -> None:
        """Every path to a thread goes through here (new connection, kept-alive connection
        readable, read-ahead left by the last request): receive the request first."""
        if getattr(conn, "cds_ready", False) or not self._bufferable(conn):
            conn.cds_ready = False
            super().enqueue_req(conn)
            return
        incoming = _Incoming(deadline=time.monotonic() + self.read_timeout)
        if conn.parser is not None:  # read-ahead the last request's parser already holds
            incoming.data += conn.parser.unreader.take_buffered()
        conn.sock.setblocking(False)
        self.incoming[conn] = incoming
        self.buffered_bytes += len(incoming.data)
        if incoming.data and self._try_complete(conn, incoming):
            return
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._readable, conn))

    def _bufferable(self, conn: Any) -> bool:
        return (
            not self.cfg.is_ssl
            and not (
                conn.parser is None and negotiation.prior_knowledge_allowed(self.cfg, conn.client)
            )
            and not getattr(conn, "is_http2", False)
        )

    def _readable(self, conn: Any, _sock: Any) -> None:
        incoming = self.incoming.get(conn)
        if incoming is None:
            return
        try:
            data = conn.sock.recv(256 * 1024)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away before its request was whole
            self._drop(conn, incoming)
            return
        if incoming.draining:
            return  # dropped: the answer is sent
        if self.buffered_bytes + len(data) > self.buffer_budget:
            self._refuse(conn, incoming, 503, "Service Unavailable", "too many requests arriving")
            return
        incoming.data += data
        self.buffered_bytes += len(data)
        self._try_complete(conn, incoming)

    def _try_complete(self, conn: Any, incoming: _Incoming) -> bool:
        """Hand the request to a thread if it is whole; True when the connection left here."""
        try:
            end = request_end(incoming.data, self.max_body)
        except _IncompleteError:
            self._continue_if_expected(conn, incoming)
            return False
        except _RefusedError as refusal:
            self._refuse(
                conn, incoming, refusal.status, refusal.reason, refusal.message, refusal.limit_bytes
            )
            return True
        del end  # the parser finds the end itself; read-ahead stays in its buffer
        self._unregister(conn)
        self.incoming.pop(conn, None)
        self.buffered_bytes -= len(incoming.data)
        if conn.parser is None:
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
        conn.parser.unreader.unread(bytes(incoming.data))
        conn.data_ready = True  # the thread must not wait for data: it is all here
        conn.cds_ready = True
        self.enqueue_req(conn)
        return True

    def _continue_if_expected(self, conn: Any, incoming: _Incoming) -> None:
        """A client that sent ``Expect: 100-continue`` waits for it before its body."""
        if incoming.continued:
            return
        head_end = incoming.data.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = bytes(incoming.data[:head_end]).lower()
        if b"\r\nexpect:" in head and b"100-continue" in head and b"http/1.1" in head:
            incoming.continued = True
            with contextlib.suppress(OSError):
                conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")

    # -- endings ----------------------------------------------------------------------------

    def _unregister(self, conn: Any) -> None:
        with contextlib.suppress(KeyError, ValueError, OSError):  # never registered
            self.poller.unregister(conn.sock)

    def _drop(self, conn: Any, incoming: _Incoming) -> None:
        self._unregister(conn)
        self.incoming.pop(conn, None)
        self.buffered_bytes -= len(incoming.data)
        self.nr_conns -= 1
        conn.close()

    def _refuse(
        self,
        conn: Any,
        incoming: _Incoming,
        status: int,
        reason: str,
        message: str,
        limit: int | None = None,
    ) -> None:
        """Answer, stop sending, and drain what the client still sends for a short linger."""
        _answer(conn.sock, status, reason, message, limit)
        with contextlib.suppress(OSError):
            conn.sock.shutdown(socket.SHUT_WR)
        self.buffered_bytes -= len(incoming.data)
        incoming.data = bytearray()
        incoming.draining = True
        incoming.deadline = time.monotonic() + _LINGER
        if conn not in self.incoming:  # refused before it was registered
            self.incoming[conn] = incoming
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._readable, conn))

    def murder_pending(self) -> None:
        """gthread's sweep of waiting connections, plus requests that did not arrive in time:
        one that had begun is answered 408; an idle connection is just closed."""
        super().murder_pending()
        now = time.monotonic()
        for conn, incoming in list(self.incoming.items()):
            if incoming.deadline > now:
                continue
            if incoming.data and not incoming.draining:
                self._refuse(
                    conn, incoming, 408, "Request Timeout", "the request did not arrive in time"
                )
            else:
                self._drop(conn, incoming)

    def murder_keepalived(self, force: bool = False) -> None:
        super().murder_keepalived(force)
        if force:  # the worker is stopping: requests not yet whole are not waited for
            for conn, incoming in list(self.incoming.items()):
                self._drop(conn, incoming)
