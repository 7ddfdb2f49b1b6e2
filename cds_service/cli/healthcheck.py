"""The container's health check: ``python -m cds_service.cli.healthcheck``.

Asks ``/healthz`` on the address the service listens on, read from the same settings
(``CDS_BIND``), so a deployment that moves the port moves the check with it; a check with the
port written into the Dockerfile would call a closed port and mark a healthy container unhealthy.
Exit code 0 when the service answers 200, else 1 (Docker reserves 2). It imports only the
settings and the standard library: it runs every 30 s.
"""

from __future__ import annotations

import http.client
import socket
import sys

from cds_service.config import load_settings
from cds_service.contract.errors import ServiceError

#: Where a wildcard listener is reached from inside the container.
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104 - matched, not bound


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a unix socket (``CDS_BIND=unix:/path``)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def connection(bind: str, timeout: float = 2.0) -> http.client.HTTPConnection:
    """A connection to the service bound at ``bind`` (``host:port``, ``[v6]:port``, ``unix:``)."""
    if bind.startswith("unix:"):
        return _UnixConnection(bind.removeprefix("unix:"), timeout)
    host, _, port = bind.rpartition(":")
    host = host.strip("[]")
    return http.client.HTTPConnection(_WILDCARDS.get(host, host), int(port), timeout=timeout)


def healthy(bind: str) -> bool:
    """``GET /healthz`` answers 200."""
    conn = connection(bind)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def main() -> int:
    try:
        bind = load_settings().bind
    except ServiceError as exc:
        print(f"healthcheck: {exc}", file=sys.stderr)
        return 1
    if healthy(bind):
        return 0
    print(f"healthcheck: no 200 from http://{bind}/healthz", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
