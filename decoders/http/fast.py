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

from wirestream.decoders.http.body import content_codings

# The head is decoded once (latin-1: one character per byte) and parsed as text: the records
# want text, and one decode is cheaper than two per header.
_TCHAR = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
# Header line: h11's `token ":" OWS field-value OWS`, with field-value bytes restricted to
# VCHAR / obs-text (h11 also takes other control bytes: those heads go to h11).
_VALUE = r"[^\x00-\x20\x7f]+(?:[ \t]+[^\x00-\x20\x7f]+)*"
_FIELD = _TCHAR + r"+:[ \t]*(?:" + _VALUE + r")?[ \t]*\r?\n"
_HEADER = re.compile("(" + _TCHAR + r"+):[ \t]*(" + _VALUE + r")?[ \t]*\r?\n")
# Request line: METHOD SP target SP HTTP/1.x (h11: token, VCHAR+; the method length bound is
# the one line_state() applies, so every head taken here passes it).
_REQUEST = re.compile(
    "(" + _TCHAR + r"{1,32}) ([\x21-\x7e]+) HTTP/(1\.[01])\r?\n((?:" + _FIELD + r")*)\r?\n"
)
# Status line of a final response: HTTP/1.x SP 2xx-9xx [SP reason] (h11's reason: SP, HTAB,
# VCHAR, obs-text and control bytes other than NUL and whitespace; CR/LF excluded here).
_RESPONSE = re.compile(
    r"HTTP/(1\.[01]) ([2-9][0-9][0-9])(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?\r?\n"
    r"((?:" + _FIELD + r")*)\r?\n"
)
_DIGITS = re.compile(r"[0-9]{1,20}")

# (first-line fields for the record, headers as [name, value] text pairs in wire order and
# case, body length, content codings, request method as bytes / response status)
Head = tuple[dict[str, str | int], list[list[str]], int, list[str] | None, bytes | int]


def _framing(headers: list[list[str]], is_request: bool) -> tuple[int, int, bool] | None:
    """(Content-Length or -1 when absent, Host header count, has Content-Encoding), None when
    h11 must decide."""
    length = -1
    hosts = 0
    coded = False
    for name, value in headers:
        n = name.lower()
        if n == "content-length":
            if length >= 0 or _DIGITS.fullmatch(value) is None:
                return None
            length = int(value)
        elif n == "host":
            hosts += 1
        elif n == "content-encoding":
            coded = True
        elif n == "transfer-encoding" or (is_request and n == "upgrade"):
            return None
    return length, hosts, coded


def _codings(headers: list[list[str]]) -> list[str] | None:
    return content_codings(
        [
            (b"content-encoding", v.encode("latin-1"))
            for n, v in headers
            if n.lower() == "content-encoding"
        ]
    )


def request_head(head: bytes) -> Head | None:
    """The parts of a complete request head (ending with its blank line), or None when it is
    not in the clean subset."""
    m = _REQUEST.fullmatch(head.decode("latin-1"))
    if m is None:
        return None
    method, target, version, block = m.groups()
    if method == "CONNECT":
        return None
    headers = list(map(list, _HEADER.findall(block)))
    fr = _framing(headers, True)
    if fr is None:
        return None
    length, hosts, coded = fr
    if hosts > 1 or (hosts == 0 and version == "1.1"):
        return None
    first = {"method": method, "uri": target, "version": "HTTP/" + version}
    codings = _codings(headers) if coded else None
    return first, headers, max(length, 0), codings, method.encode("latin-1")


def response_head(head: bytes) -> Head | None:
    """The parts of a complete final-response head answering a plain (GET-like) request, or
    None when not in the clean subset."""
    m = _RESPONSE.fullmatch(head.decode("latin-1"))
    if m is None:
        return None
    version, status, reason, block = m.groups()
    headers = list(map(list, _HEADER.findall(block)))
    fr = _framing(headers, False)
    if fr is None:
        return None
    length, _hosts, coded = fr
    code = int(status)
    if code in (204, 304):
        length = 0
    elif length < 0:  # read until close: h11's Http10Reader
        return None
    first = {"status": code, "reason": reason or "", "version": "HTTP/" + version}
    return first, headers, length, _codings(headers) if coded else None, code
