"""Credentials out of every URI green_mlops writes or prints: one helper for params, spool lines, warnings, hints.

A storage or tracking URI may carry a password (``postgresql://user:pw@host/db``,
``https://user:token@host``) or a secret in its query (``?password=…``). Wherever green_mlops records
or shows a URI it goes through :func:`redact_uri`; free text that may quote one (an exception's
message) goes through :func:`redact_text`.
"""
from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

MASK = "***"
_SECRET_KEYS = re.compile(r"pass|pwd|secret|token|key|auth|credential|signature", re.IGNORECASE)
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s/]+)@")


def redact_uri(uri: str | None) -> str:
    """``uri`` with its password and secret query values replaced by ``***``; other parts unchanged."""
    if not uri:
        return "" if uri is None else uri
    text = str(uri)
    try:
        parts = urlsplit(text)
    except ValueError:
        return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, sep, _pw = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{host}" if sep else netloc
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_KEYS.search(k) for k, _ in pairs):
            query = urlencode([(k, MASK if _SECRET_KEYS.search(k) else v) for k, v in pairs], safe="*")
    if netloc == parts.netloc and query == parts.query:
        return text
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def secrets_of(uri: str | None) -> list[str]:
    """The secret strings in ``uri`` (password, secret query values), raw and percent-decoded."""
    if not uri:
        return []
    try:
        parts = urlsplit(str(uri))
    except ValueError:
        return []
    found: list[str] = []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rpartition("@")[0]
        if ":" in userinfo:
            found.append(userinfo.partition(":")[2])
    found.extend(v for k, v in parse_qsl(parts.query, keep_blank_values=True) if _SECRET_KEYS.search(k) and v)
    return [s for s in {*found, *(unquote(s) for s in found)} if s]


def redact_text(text: str, *uris: str | None) -> str:
    """``text`` (an error message, say) with every URI in it redacted and the secrets of ``uris`` masked."""
    out = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", str(text))
    for uri in uris:
        for secret in sorted(secrets_of(uri), key=len, reverse=True):
            if len(secret) >= 3:
                out = out.replace(secret, MASK)
    return out
