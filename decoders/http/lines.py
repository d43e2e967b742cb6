"""Line-level HTTP/1.x recognition, shared by probing, resynchronisation and the lenient parser.

h11 is strict and only speaks up once a whole head is buffered; these helpers decide early
(from the first bytes of a line) whether something can be a request line or a status line,
and parse heads that h11 refuses, so real-world oddities still produce a (tagged) record.
All functions are pure and depend only on the bytes given, never on how they were chunked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TCHAR = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
MAX_METHOD_LEN = 32

# METHOD SP target SP "HTTP/" - the target may hold spaces (seen in the wild), not controls.
_REQ_START = re.compile(
    rb"[%s]{1,%d} [^\x00-\x20\x7f][^\x00-\x1f\x7f]*? HTTP/" % (_TCHAR, MAX_METHOD_LEN)
)
_REQ_PARTIAL = re.compile(
    rb"[%s]{0,%d}|[%s]{1,%d} [^\x00-\x1f\x7f]*" % ((_TCHAR, MAX_METHOD_LEN) * 2)
)
_REQ_LINE = re.compile(
    rb"(?P<method>[%s]{1,%d}) +(?P<target>[^\x00-\x20\x7f][^\x00-\x1f\x7f]*?)"
    rb" +HTTP/(?P<version>[0-9]\.[0-9])[ \t]*\r?" % (_TCHAR, MAX_METHOD_LEN)
)
# A known method with a malformed rest ("GET /HTTP/1.1", "OPTIONS", "PUT / HTTP/1."): only
# used by the lenient parser, so the server's answer (often 400) still pairs with something.
_REQ_LOOSE = re.compile(
    rb"(?P<method>[A-Z][A-Z_-]{1,31})(?: +(?P<target>[^\x00-\x20\x7f]+))?"
    rb"(?: +(?P<version>[^\x00-\x20\x7f]+))?[ \t]*\r?"
)
_STATUS_TEMPLATE = b"HTTP/1.0 000"  # '0' stands for any digit; "http/" is accepted too
_STATUS_LINE = re.compile(
    rb"[Hh][Tt][Tt][Pp]/(?P<version>1\.[0-9]) (?P<status>[0-9]{3})"
    rb"(?:[ \t](?P<reason>[^\r\n]*?))?[ \t]*\r?"
)
_BLANK_LINE = re.compile(rb"\n\r?\n")

KNOWN_METHODS = frozenset(
    b"GET HEAD POST PUT DELETE CONNECT OPTIONS TRACE PATCH PROPFIND PROPPATCH MKCOL COPY MOVE "
    b"LOCK UNLOCK SEARCH REPORT MKACTIVITY CHECKOUT MERGE M-SEARCH NOTIFY SUBSCRIBE UNSUBSCRIBE "
    b"PURGE LINK UNLINK".split()
)


MIDLINE_MAX = 8192  # longest request line taken in the middle of a line (resync)
_MID_TAIL = re.compile(rb" (?P<target>[^\x00-\x20\x7f]+) +HTTP/[0-9]\.[0-9][ \t]*\r?\Z")
_LONGEST_FIRST = sorted(KNOWN_METHODS, key=len, reverse=True)


def midline_request_start(line: bytes) -> int:
    """Where a request line starts inside `line` (one line, without its LF, that does not
    start at a line start: a request right after a body that ended without a newline), or -1.
    Stricter than at a line start: a known method (the longest one the bytes before the
    target end with), a target without spaces, at most MIDLINE_MAX bytes."""
    tail = line[-MIDLINE_MAX:]
    m = _MID_TAIL.search(tail)
    if m is None:
        return -1
    before = tail[: m.start()]
    for method in _LONGEST_FIRST:
        if before.endswith(method):
            return len(line) - len(tail) + m.start() - len(method)
    return -1


def request_line_state(buf: bytes | bytearray | memoryview, limit: int) -> bool | None:
    """Can `buf` start with a request line? True once `METHOD SP target SP HTTP/` is seen,
    False when it cannot (bad byte, complete line of another shape, or no LF within `limit`
    bytes), None while undecided."""
    head = bytes(buf[: limit + 1])
    if _REQ_START.match(head):
        return True
    if b"\n" in head or len(head) > limit:
        return False
    return None if _REQ_PARTIAL.fullmatch(head) else False


def status_line_state(buf: bytes | bytearray | memoryview) -> bool | None:
    """Can `buf` start with `HTTP/1.x NNN` (followed by SP, CR or LF)? None while too short."""
    head = bytes(buf[:13])
    head = head[:4].upper() + head[4:]
    for i, want in enumerate(_STATUS_TEMPLATE[: len(head)]):
        got = head[i]
        if want == 0x30:  # digit placeholder
            if not 0x30 <= got <= 0x39:
                return False
        elif got != want:
            return False
    if len(head) < 13:
        return None
    return head[12] in b" \r\n"


def line_state(is_request: bool, buf: bytes | bytearray | memoryview, limit: int) -> bool | None:
    return request_line_state(buf, limit) if is_request else status_line_state(buf)


def is_message_line(is_request: bool, line: bytes) -> bool:
    """Full check of one complete first line (without its LF), as used to resynchronise."""
    rx = _REQ_LINE if is_request else _STATUS_LINE
    return rx.fullmatch(line) is not None


@dataclass(slots=True)
class LenientHead:
    """What a tolerant parse of a head yields; `complete` is False when no blank line ended it."""

    method: bytes = b""
    target: bytes = b""
    status: int = 0
    reason: bytes = b""
    version: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    complete: bool = False
    header_count: int = 0  # before capping


def parse_head_leniently(
    is_request: bool, buf: bytes, max_headers: int
) -> tuple[LenientHead | None, int]:
    """Parse a request/response head without h11's strictness.

    Returns (head or None if the first line is not recognisable, bytes the head spans)."""
    m = _BLANK_LINE.search(buf)
    complete = m is not None
    span = m.end() if m else len(buf)
    text = buf[:span]
    lines = text.split(b"\n")
    if not complete and not text.endswith(b"\n"):
        lines = lines[:-1]  # last line is partial
    lines = [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]
    while lines and lines[-1] == b"":
        lines.pop()
    if not lines:
        return None, span
    head = LenientHead(complete=complete)
    if is_request:
        fm = _REQ_LINE.fullmatch(lines[0])
        if fm is not None:
            head.version = b"HTTP/" + fm["version"]
        else:
            fm = _REQ_LOOSE.fullmatch(lines[0])
            # An unknown method is still a request when the line names an HTTP version
            # (e.g. "CCM_POST /HTTP/1.1": Zeek logs it as one).
            if fm is None or (fm["method"] not in KNOWN_METHODS and b"HTTP/" not in lines[0]):
                return None, span
            head.version = fm["version"] or b""
            if not head.version and (fm["target"] or b"").startswith(b"HTTP/"):
                head.method, head.version = fm["method"], fm["target"]
                return _headers(head, lines, max_headers), span
        head.method = fm["method"]
        head.target = fm["target"] or b""
    else:
        fm = _STATUS_LINE.fullmatch(lines[0])
        if fm is None:
            return None, span
        head.status = int(fm["status"])
        head.reason = fm["reason"] or b""
        head.version = b"HTTP/" + fm["version"]
    return _headers(head, lines, max_headers), span


def _headers(head: LenientHead, lines: list[bytes], max_headers: int) -> LenientHead:
    headers: list[list[bytes]] = []
    count = 0
    for ln in lines[1:]:
        if ln[:1] in (b" ", b"\t"):
            if headers and count <= max_headers:
                headers[-1][1] = (headers[-1][1] + b" " + ln.strip(b" \t")).strip(b" \t")
            continue
        name, sep, value = ln.partition(b":")
        if not sep:
            continue
        count += 1
        if count <= max_headers:
            headers.append([name.rstrip(b" \t"), value.strip(b" \t")])
    head.headers = [(n, v) for n, v in headers]
    head.header_count = count
    return head
