"""A fast parser for the common, clean HTTP/1.x head, used before h11.

h11 costs tens of µs per message head; most heads are plain: a request or status line, single
`Name: value` lines, a Content-Length or no body. This parser accepts only heads that are in
that strict subset of what h11 0.16 accepts, and returns exactly what h11 would (method, target,
version, reason, raw headers in wire order and case, body length). Anything else (obs-fold,
control bytes, Transfer-Encoding, several or odd Content-Length values, a missing or repeated
Host, CONNECT, Upgrade, 1xx, read-until-close bodies...) returns None and goes to h11, which
keeps every tag and anomaly of the strict path. Pure functions of the bytes given.
"""

from __future__ import annotations

import re

_TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
# Header line: h11's `token ":" OWS field-value OWS`, with field-value bytes restricted to
# VCHAR / obs-text (h11 also takes other control bytes: those heads go to h11).
_FIELD = rb"%s+:[ \t]*(?:[^\x00-\x20\x7f]+(?:[ \t]+[^\x00-\x20\x7f]+)*)?[ \t]*\r?\n" % _TCHAR
_HEADER = re.compile(
    rb"(%s+):[ \t]*([^\x00-\x20\x7f]+(?:[ \t]+[^\x00-\x20\x7f]+)*)?[ \t]*\r?\n" % _TCHAR
)
# Request line: METHOD SP target SP HTTP/1.x (h11: token, VCHAR+; the method length bound is
# the one line_state() applies, so every head taken here passes it).
_REQUEST = re.compile(
    rb"(%s{1,32}) ([\x21-\x7e]+) HTTP/(1\.[01])\r?\n((?:%s)*)\r?\n" % (_TCHAR, _FIELD)
)
# Status line of a final response: HTTP/1.x SP 2xx-9xx [SP reason] (h11's reason: SP, HTAB,
# VCHAR, obs-text and control bytes other than NUL and whitespace; CR/LF excluded here).
_RESPONSE = re.compile(
    rb"HTTP/(1\.[01]) ([2-9][0-9][0-9])(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?\r?\n((?:%s)*)\r?\n"
    % _FIELD
)
_DIGITS = re.compile(rb"[0-9]{1,20}")

Head = tuple[bytes, bytes, bytes, list[tuple[bytes, bytes]], int]


def _framing(headers: list[tuple[bytes, bytes]], is_request: bool) -> tuple[int, int] | None:
    """(Content-Length or -1 when absent, Host header count), None when h11 must decide."""
    length = -1
    hosts = 0
    for name, value in headers:
        n = name.lower()
        if n == b"content-length":
            if length >= 0 or _DIGITS.fullmatch(value) is None:
                return None
            length = int(value)
        elif n == b"host":
            hosts += 1
        elif n == b"transfer-encoding" or (is_request and n == b"upgrade"):
            return None
    return length, hosts


def request_head(head: bytes) -> Head | None:
    """(method, target, version, raw headers, body length) of a complete request head (ending
    with its blank line), or None when it is not in the clean subset."""
    m = _REQUEST.fullmatch(head)
    if m is None:
        return None
    method, target, version, block = m.groups()
    if method == b"CONNECT":
        return None
    headers = [(n, v or b"") for n, v in _HEADER.findall(block)]
    fr = _framing(headers, True)
    if fr is None:
        return None
    length, hosts = fr
    if hosts > 1 or (hosts == 0 and version == b"1.1"):
        return None
    return method, target, version, headers, max(length, 0)


def response_head(head: bytes) -> Head | None:
    """(status, reason, version, raw headers, body length) of a complete final-response head
    answering a plain (GET-like) request, or None when not in the clean subset."""
    m = _RESPONSE.fullmatch(head)
    if m is None:
        return None
    version, status, reason, block = m.groups()
    headers = [(n, v or b"") for n, v in _HEADER.findall(block)]
    fr = _framing(headers, False)
    if fr is None:
        return None
    length = fr[0]
    if status in (b"204", b"304"):
        length = 0
    elif length < 0:  # read until close: h11's Http10Reader
        return None
    return status, reason or b"", version, headers, length
