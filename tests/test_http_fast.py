"""The fast head parser (decoders/http/fast.py) against its oracle, h11 itself: every head it
accepts must be one h11 accepts, with the same fields, headers and body framing; heads outside
its subset must be left to h11. Plus: records do not depend on which parser read a head."""

from __future__ import annotations

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_http_support import canon, chunked, req, resp, run
from wirestream.decoders.api import CLIENT, SERVER
from wirestream.decoders.http.fast import request_head, response_head
from wirestream.decoders.http.h11_access import content_length_left
from wirestream.decoders.http.lines import line_state


class _Pool:
    """Usual values and odd ones: a head drawn `clean` takes only usual values (so that many
    heads are in the fast subset), the others probe its edges."""

    def __init__(self, usual: list[bytes], odd: list[bytes]) -> None:
        self.usual = st.sampled_from(usual)
        self.any = st.sampled_from(usual + odd)

    def draw(self, draw: st.DrawFn, clean: bool) -> bytes:
        return draw(self.usual if clean else self.any)


_EOL = _Pool([b"\r\n", b"\n"], [b"\r\r\n", b"\n\r", b"\r"])
_NAMES = _Pool(
    [b"Accept", b"X-Y", b"Connection", b"Content-Type", b"Content-Length", b"Content-Encoding"],
    [b"content-length", b"Transfer-Encoding", b"Upgrade", b"HOST", b"Bad Name", b"X:Y", b""],
)
_VALUES = _Pool(
    [b"example.com", b"0", b"12", b"text/html; q=1", b"gzip", b"close", b"", b"caf\xe9", b"a\tb"],
    [b"007", b"5, 5", b"1 2", b"-1", b"1" * 21, b"9" * 20, b"chunked", b"identity", b"br", b" x"],
)
_CONTROL = st.sampled_from([b"a\x01b", b"a\x00b", b"a\rb"])
_SEPS = _Pool([b": ", b":", b":  ", b": \t"], [b" : ", b":\t"])
_TAILS = _Pool([b"", b" ", b"\t"], [b"\r", b"\x0b"])


@st.composite
def header_block(draw: st.DrawFn, clean: bool, host: bool = False) -> bytes:
    lines = []
    eol = _EOL.draw(draw, clean)
    for _ in range(draw(st.integers(0, 5))):
        name, sep, value = (
            _NAMES.draw(draw, clean),
            _SEPS.draw(draw, clean),
            _VALUES.draw(draw, clean),
        )
        if not clean and draw(st.integers(0, 9)) == 0:
            value = draw(_CONTROL)
        lines.append(name + sep + value + _TAILS.draw(draw, clean) + eol)
        if not clean and draw(st.integers(0, 9)) == 0:
            lines.append(b" folded" + eol)
    if host and (not clean or draw(st.integers(0, 9))):
        value = draw(
            st.sampled_from([b"example.com", b""] + ([] if clean else [b"a, b", b"a\x01"]))
        )
        lines.insert(draw(st.integers(0, len(lines))), b"Host: " + value + eol)
    return b"".join(lines) + eol


@st.composite
def request_heads(draw: st.DrawFn) -> bytes:
    clean = draw(st.booleans())
    method = _Pool([b"GET", b"POST", b"HEAD", b"X"], [b"CONNECT", b"get", b"M" * 33]).draw(
        draw, clean
    )
    target = _Pool([b"/", b"/a?b", b"*"], [b"/a b", b"/caf\xe9", b""]).draw(draw, clean)
    version = _Pool([b"HTTP/1.1", b"HTTP/1.0"], [b"HTTP/2.0", b"http/1.1", b""]).draw(draw, clean)
    line = method + b" " + target + (b" " + version if version else b"")
    return line + _EOL.draw(draw, clean) + draw(header_block(clean, host=True))


@st.composite
def response_heads(draw: st.DrawFn) -> bytes:
    clean = draw(st.booleans())
    version = _Pool([b"HTTP/1.1", b"HTTP/1.0"], [b"HTTP/2.0", b"http/1.1"]).draw(draw, clean)
    status = _Pool([b"200", b"204", b"304", b"404"], [b"100", b"101", b"000", b"20"]).draw(
        draw, clean
    )
    reason = _Pool([b" OK", b"", b" Not\tFound", b" caf\xe9"], [b" ", b" a\x01b", b"OK"]).draw(
        draw, clean
    )
    return version + b" " + status + reason + _EOL.draw(draw, clean) + draw(header_block(clean))


def _h11_events(conn: h11.Connection, data: bytes) -> list:
    """Events h11 makes of `data` (never empty), up to the end of the message."""
    assert data
    conn.receive_data(data)
    events: list = []
    while len(events) < 100:
        ev = conn.next_event()
        if ev is h11.NEED_DATA or ev is h11.PAUSED or type(ev) is h11.ConnectionClosed:
            break
        events.append(ev)
        if type(ev) is h11.EndOfMessage:
            break
    return events


def _check_framing(conn: h11.Connection, head: bytes, length: int) -> h11.Request:
    """h11 reads `head` as a message with a body of exactly `length` bytes (a huge length:
    h11 must still want more after a few bytes, its reader counting the same length)."""
    events = _h11_events(conn, head)
    if length == 0:
        assert [type(e) for e in events][1:] == [h11.EndOfMessage]
        return events[0]
    assert len(events) == 1
    if length > 1 << 16:
        assert _h11_events(conn, b"x" * 100) == [h11.Data(data=b"x" * 100)]
        assert content_length_left(conn) == length - 100
        return events[0]
    body = _h11_events(conn, b"x" * length)
    assert type(body[-1]) is h11.EndOfMessage
    assert sum(len(e.data) for e in body if type(e) is h11.Data) == length
    return events[0]


def _raw(headers: list[list[str]]) -> list[tuple[bytes, bytes]]:
    return [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(request_heads())
def test_request_heads_accepted_are_parsed_as_h11_does(head: bytes) -> None:
    got = request_head(head)
    if got is None:
        return
    first, headers, length, _codings, method = got
    assert line_state(True, head, 65536) is True  # the checks before h11 would pass too
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=65536)
    ev = _check_framing(conn, head, length)
    assert type(ev) is h11.Request
    assert ev.method == method and first["method"] == ev.method.decode("latin-1")
    assert first["uri"] == ev.target.decode("latin-1")
    assert first["version"] == "HTTP/" + ev.http_version.decode("latin-1")
    assert _raw(headers) == list(ev.headers.raw_items())
    assert ev.method != b"CONNECT" and not any(n.lower() == b"upgrade" for n, _ in _raw(headers))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(response_heads())
def test_response_heads_accepted_are_parsed_as_h11_does(head: bytes) -> None:
    got = response_head(head)
    if got is None:
        return
    first, headers, length, _codings, status = got
    assert line_state(False, head, 65536) is True
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=65536)
    conn.send(h11.Request(method=b"GET", target=b"/", headers=[(b"host", b"x")]))
    conn.send(h11.EndOfMessage())
    ev = _check_framing(conn, head, length)
    assert type(ev) is h11.Response
    assert ev.status_code == status == first["status"]
    assert first["reason"] == ev.reason.decode("latin-1")
    assert first["version"] == "HTTP/" + ev.http_version.decode("latin-1")
    assert _raw(headers) == list(ev.headers.raw_items())


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST /x?y HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\nContent-Encoding: gzip\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.1\nHost: a\nAccept:  */* \n\n",
        b"HEAD /caf HTTP/1.1\r\nHost:\r\nX: caf\xe9\r\n\r\n",
    ],
)
def test_common_request_heads_take_the_fast_path(head: bytes) -> None:
    assert request_head(head) is not None


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.1\r\n\r\n",  # no Host: h11 refuses, the decoder retries
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
        b"CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n",
        b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\r\nHost: a\r\n\r\n",
    ],
)
def test_odd_request_heads_are_left_to_h11(head: bytes) -> None:
    assert request_head(head) is None


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 101 Switching\r\nUpgrade: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n",  # read until close
        b"http/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    ],
)
def test_odd_response_heads_are_left_to_h11(head: bytes) -> None:
    assert response_head(head) is None


def test_records_do_not_depend_on_which_parser_read_the_head() -> None:
    """Delivered whole, these heads take the fast path; one byte at a time, h11 reads them
    (a head incomplete at a delivery goes to h11). The records must be the same."""
    body = bytes(range(256)) * 40
    c = (
        req("GET", "/a")
        + req("POST", "/b", body=body)
        + req("HEAD", "/c")
        + req("GET", "/d", extra="Content-Length: 0\r\n")
    )
    s = (
        resp(body=body[:100], extra="Content-Type: x\r\n")
        + resp(201, body=b"")
        + resp(extra="Content-Length: 10\r\n")  # HEAD: the length describes no body
        + resp(extra="Transfer-Encoding: chunked\r\n")
        + chunked(body, 1000)
    )
    whole = [("data", CLIENT, c, 1), ("data", SERVER, s, 2), ("close", "fin", 3)]
    base = canon(run(whole).out)
    bytewise = [("data", CLIENT, c[i : i + 1], 1) for i in range(len(c))]
    bytewise += [("data", SERVER, s[i : i + 1], 2) for i in range(len(s))]
    assert canon(run([*bytewise, ("close", "fin", 3)]).out) == base
    assert len(run(whole).http()) == 4
