"""Which FHIR base URLs the service may contact: a caller-supplied fhirServer must not make the
service fetch from arbitrary hosts (server-side request forgery)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

LOOPBACK = "loopback"


@dataclass(frozen=True)
class AllowList:
    """Base-URL prefixes (scheme, host, port and path must match on a path boundary), and the
    word ``loopback`` for any http(s) URL on 127.0.0.0/8, ::1 or localhost."""

    entries: tuple[str, ...]

    @classmethod
    def parse(cls, text: str | None) -> AllowList:
        return cls(tuple(e.strip() for e in (text or "").split(",") if e.strip()))

    def allows(self, url: str) -> bool:
        try:
            parts = urlsplit(url)
            _ = parts.port  # raises on a malformed port
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        if parts.username or parts.password or parts.query or parts.fragment:
            return False
        for entry in self.entries:
            if entry == LOOPBACK:
                if _is_loopback(parts.hostname):
                    return True
                continue
            allowed = urlsplit(entry.rstrip("/"))
            same_origin = (parts.scheme, parts.netloc.lower()) == (
                allowed.scheme,
                allowed.netloc.lower(),
            )
            path = parts.path.rstrip("/")
            if same_origin and (path == allowed.path or path.startswith(allowed.path + "/")):
                return True
        return False


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
