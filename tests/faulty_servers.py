"""Misbehaving HTTP servers on 127.0.0.1 for the failure tests: real sockets, no patching.

- ``blackhole``: accepts connections and never answers;
- ``drip``: sends a 200 header promising a large body, then one byte every ``interval``;
- ``fixed``: answers every request with one status and body (503, 401, invalid JSON...).
Each records how many connections it accepted and closes everything when stopped.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

Handler = Callable[[socket.socket, threading.Event], None]


@dataclass
class FaultyServer:
    handler: Handler
    accepted: int = 0
    open_connections: int = 0
    _sock: socket.socket = field(default_factory=socket.socket)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}/fhir"

    def start(self) -> FaultyServer:
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self._sock.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self.open_connections += 1
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        try:
            with connection:
                self.handler(connection, self._stop)
        except OSError:
            pass  # the client went away: what these servers are for
        finally:
            with self._lock:
                self.open_connections -= 1

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._sock.close()


def _read_request(connection: socket.socket) -> None:
    connection.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(4096)
        if not chunk:
            return
        data += chunk


def blackhole() -> Handler:
    def handle(connection: socket.socket, stop: threading.Event) -> None:
        _read_request(connection)
        stop.wait(60)  # never answers

    return handle


def drip(interval: float = 0.2) -> Handler:
    def handle(connection: socket.socket, stop: threading.Event) -> None:
        _read_request(connection)
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n"
            b"Content-Length: 100000\r\n\r\n{"
        )
        while not stop.wait(interval):
            connection.sendall(b" ")

    return handle


def fixed(status: int, body: bytes, reason: str = "Status") -> Handler:
    def handle(connection: socket.socket, _stop: threading.Event) -> None:
        _read_request(connection)
        connection.sendall(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/fhir+json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )

    return handle


def wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()
