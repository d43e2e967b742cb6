"""Loss markers of the HTTP pending queue and the pairing decision across them.

HTTP/1.1 has no ids: a response answers the oldest request still unanswered. After a loss the
count is broken (libhtp#403 pairs request N with response N+1), so the queue holds a `Loss`
where bytes were lost, and a response reaching it is paired with the request after it only
when the count is known (see decoders/http/decoder.py, "Pairing"). Everything here is pure: the
decoder keeps the queue and applies the decisions.
"""

from __future__ import annotations

from collections import deque
from itertools import islice
from typing import Any

from wirestream.decoders.http.msg import UPGRADE, Msg, Txn

# The shortest request a conforming client can send: "X / HTTP/1.0" CRLF CRLF. A hole of
# n bytes holds at most n // MIN_REQUEST whole requests.
MIN_REQUEST = 16
# Outcomes of `decide`.
PAIR, WINDOW, FLOAT, NONE = "pair", "window", "float", "none"


class Loss:
    """Where the queue lost count. Client side: bytes of the client stream were lost (a
    hole of `lost` bytes at delivered position `lo`, then bytes skipped by the resync up to
    the next request): requests may have been lost whole, at most `nmax`, at least `nmin`
    (known once the next request closes the window). Server side: responses were lost; the
    requests pending then were emitted without response, and at most `nmax` of them (None:
    unknown) may still get one. `seen`: responses shown to answer lost requests;
    `floating`: later responses whose request is not known yet (held until a quiet point
    settles them, or emitted with no request)."""

    __slots__ = ("at_boundary", "floating", "lo", "lost", "nmax", "nmin", "seen", "server")

    def __init__(
        self,
        server: bool,
        nmax: int | None = None,
        lo: int = 0,
        lost: int = 0,
        at_boundary: bool = False,
    ) -> None:
        self.server = server
        self.nmax = nmax
        self.nmin = 0
        self.lo = lo
        self.lost = lost
        self.at_boundary = at_boundary
        self.seen = 0
        self.floating: list[Txn] = []

    def close_window(self, start: int) -> None:
        """The first request after a client-side hole starts at `start`: the lost requests lie
        in the hole and the bytes the resync skipped."""
        window = self.lost + max(0, start - self.lo)
        self.nmax = window // MIN_REQUEST
        # A hole at a message boundary starts a request (stray CRLFs aside, at most 2 bytes).
        self.nmin = min(self.nmax, 1 if self.at_boundary and window > 2 else 0)

    def to_state(self, rel: int) -> dict[str, Any]:
        return {
            "server": self.server,
            "nmax": self.nmax,
            "nmin": self.nmin,
            "lo": self.lo - rel,
            "lost": self.lost,
            "at_boundary": self.at_boundary,
            "seen": self.seen,
            "floating": [t.to_state() for t in self.floating],
        }

    @classmethod
    def from_state(cls, st: dict[str, Any], reqs: dict[int, Msg]) -> Loss:
        m = cls(st["server"], st["nmax"], st["lo"], st["lost"], st["at_boundary"])
        m.nmin = st["nmin"]
        m.seen = st["seen"]
        m.floating = [Txn.from_state(t, reqs) for t in st["floating"]]
        return m


def decide(queue: deque[Any], start_clock: int) -> tuple[str, int]:
    """What a response that began at `start_clock` answers: (PAIR, i) the request at queue
    index i (markers before it are passed); (WINDOW, i) a request lost at marker i; (FLOAT, i)
    unknown yet, held at marker i; (NONE, -1) no known request can be its."""
    i = 0
    n = len(queue)
    while i < n:
        m = queue[i]
        if not isinstance(m, Loss):
            # Causality: a response that began before the request's head was complete does
            # not answer it (it can only be waiting for the bytes after its head, see
            # ResponseSide._ready, while that request came in).
            return (PAIR, i) if m.clock <= start_clock else (NONE, -1)
        if m.floating:
            return FLOAT, i
        nxt = next((e for e in islice(queue, i + 1, None) if not isinstance(e, Loss)), None)
        if nxt is None or nxt.clock > start_clock:
            # Causality: the next known request was not complete when this response began.
            return WINDOW, i
        if m.seen < m.nmin:
            return WINDOW, i
        if m.nmax is not None and m.seen >= m.nmax:
            i += 1  # every lost request is answered: the count is right again
            continue
        return FLOAT, i
    return NONE, -1


def _no_body_as_get(resp: Msg) -> bool:
    """Would `resp` have had no body as the answer to a GET (as well as to a HEAD)?"""
    status = resp.head.get("status", 0)
    if 100 <= status < 200 or status in (204, 304):
        return True
    lengths = [v for n, v in resp.head.get("headers", ()) if n.lower() == "content-length"]
    chunked = any(n.lower() == "transfer-encoding" for n, _ in resp.head.get("headers", ()))
    return bool(lengths) and not chunked and all(v.strip() == "0" for v in lengths)


def consistent(req: Msg, resp: Msg) -> bool:
    """Was `resp` framed as the answer to a request like `req` would have been? (A response
    held without its request was framed by a guess: GET, or HEAD when a status line followed
    its head.)"""
    want, got = req.framing, resp.framing
    if want == got:
        return True
    if b"CONNECT" in (want, got):
        return False
    if {want, got} == {UPGRADE, b"GET"}:
        return resp.head.get("status") != 101
    if want == b"HEAD":  # framed as a GET's answer: right only if it had no body anyway
        return resp.body is not None and resp.body.get("body_len") == 0
    return _no_body_as_get(resp)  # framed as a HEAD's answer, the request was a GET
