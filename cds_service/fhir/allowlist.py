"""Which FHIR base URLs the service may contact: a caller-supplied fhirServer must not make the
service fetch from arbitrary hosts (server-side request forgery).

Every URL the service requests is checked, not only the base: the search URLs it builds and
every ``next`` link a server returns. Before matching, percent-encoded unreserved characters
are decoded (``%2e`` is a dot); a URL whose path then holds a dot segment (``..``, ``.``), an
encoded slash or backslash, or a backslash is refused outright, since HTTP clients and servers
resolve those differently (``/fhir/../admin`` was once fetched with the EHR's token).

What is left must be plain: a path of unreserved characters, ``/`` and the sub-delimiters a
FHIR path can hold, and nothing else. A ``;`` (``/fhir/..;/admin``: Tomcat-based servers read
``..;`` as ``..``) or any escape still there after decoding (``%252e%252e`` is ``%2e%2e`` once a
proxy decodes it) is refused: a path is allowed only when every server reads it the same way.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

LOOPBACK = "loopback"
_UNRESERVED = re.compile(r"%(2[dDeE]|3[0-9]|4[1-9a-fA-F]|5[0-9aA]|5[fF]|6[1-9a-fA-F]|7[0-9aAeE])")
_ENCODED_SEPARATOR = re.compile(r"%(2[fF]|5[cC])")
#: What a decoded path may hold: unreserved characters, "/" and the sub-delimiters other than
#: ";" (path parameters), ":" and "@". No "%": an escape left after decoding is a second layer.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9\-._~/!$&'()*+,=:@]*")


def normalised_path(path: str) -> str | None:
    """The path with unreserved characters decoded, or None when it must be refused: dot
    segments, encoded separators, path parameters (``;``) or escapes left after decoding."""
    decoded = _UNRESERVED.sub(lambda m: chr(int(m.group(1), 16)), path)
    if "\\" in decoded or _ENCODED_SEPARATOR.search(decoded):
        return None
    if _PLAIN_PATH.fullmatch(decoded) is None:
        return None  # ";" (matrix parameters, "..;"), "%" (double encoding), controls, spaces
    if any(segment in (".", "..") for segment in decoded.split("/")):
        return None
    return decoded


@dataclass(frozen=True)
class AllowList:
    """Base-URL prefixes (scheme, host, port and path must match on a path boundary), and the
    word ``loopback`` for any http(s) URL on 127.0.0.0/8, ::1 or localhost."""

    entries: tuple[str, ...]
    #: A second list the URL must match too (the calling issuer's own FHIR servers).
    also: AllowList | None = None

    @classmethod
    def parse(cls, text: str | None) -> AllowList:
        return cls(tuple(e.strip() for e in (text or "").split(",") if e.strip()))

    def narrowed(self, other: AllowList | None) -> AllowList:
        """This list, further limited to what ``other`` allows (None: unchanged)."""
        return self if other is None else AllowList(self.entries, other)

    def allows(self, url: str, *, query: bool = False) -> bool:
        """May the service request ``url``? A base URL has no query; a requested URL
        (``query=True``) may carry one, which is not part of the match."""
        if self.also is not None and not self.also.allows(url, query=query):
            return False
        try:
            parts = urlsplit(url)
            _ = parts.port  # raises on a malformed port
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        if parts.username or parts.password or parts.fragment or (parts.query and not query):
            return False
        path = normalised_path(parts.path)
        if path is None:
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
            path = path.rstrip("/")
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
