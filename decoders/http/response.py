"""The server's side of an HTTP/1.x flow: responses, parsed by an h11 connection in CLIENT role.

h11 frames a response by the request it answers, so each connection is first sent a stand-in
request of the right method (HEAD, CONNECT or GET); when the real request is not known, the
framing is guessed from the bytes after the head (`_ready`). Responses are paired with their
requests here, as their heads complete.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import h11

from wirestream.decoders.http.body import content_codings
from wirestream.decoders.http.fast import response_head
from wirestream.decoders.http.h11_access import buffered as h11_buffered
from wirestream.decoders.http.lines import status_line_state
from wirestream.decoders.http.modes import BLANK, CL_LINE, CRLF, GUESSED, MSG, RESYNC
from wirestream.decoders.http.msg import UPGRADE, Msg, Txn, header_pairs, new_head_msg
from wirestream.decoders.http.side import Side

if TYPE_CHECKING:
    from wirestream.decoders.http.decoder import HttpDecoder


class ResponseSide(Side):
    """Server -> client bytes: responses, framed by a stand-in request of the right method."""

    is_request = False

    def __init__(self, dec: HttpDecoder) -> None:
        self.cur: Txn | None = None
        self.framing: bytes | None = None  # stand-in request sent on the current connection
        self.info: list[dict[str, Any]] = []  # 1xx responses waiting for the final one
        self.first: list[int] | None = None  # [ts_ns, clock] of the first 1xx
        self.pending_pair: tuple[Msg | None, set[str], bool] | None = None
        self._framing_state: bytes | None = None
        self.lowercase = False  # the current status line spells HTTP in lower case
        # The framing chosen for the message at the boundary (_ready), whether it was guessed
        # (no request known: bodiless because a status line follows the head), and where the
        # head ends while that guess waits for the bytes after it.
        self.want: bytes | None = None
        self.guessed = False
        self.waiting_at: int | None = None
        self.force = False  # decide with the bytes there are (a gap follows)
        super().__init__(dec)

    def _new_conn(self) -> h11.Connection:
        return h11.Connection(h11.CLIENT, max_incomplete_event_size=self.cfg.max_header)

    def _reset_conn(self) -> None:
        self.conn = self._new_conn()
        self.framing = None

    def _drop_conn(self) -> None:
        self.conn = None
        self.framing = None

    def _load_body(self) -> None:
        self.framing = self._framing_state

    def _send_framing(self, method: bytes) -> None:
        conn = self.conn
        assert conn is not None
        self.framing = method
        target = b"x:0" if method == b"CONNECT" else b"/"
        headers = [(b"host", b"x")]
        if method == UPGRADE:
            method = b"GET"
            headers += [(b"upgrade", b"x"), (b"connection", b"upgrade")]
        conn.send(h11.Request(method=method, target=target, headers=headers))
        conn.send(h11.EndOfMessage())

    def _check_first_line(self) -> None:
        """`http/1.1 200` (seen from real servers) is refused by h11: parse it as `HTTP/`."""
        head = self.buf.tail(limit=5)
        if head != b"HTTP/":
            self.lowercase = True
            self._reset_conn()
            assert self.conn is not None
            self.conn.receive_data(self._message_bytes())

    def _message_bytes(self) -> bytes:
        data = self.buf.tail()
        return b"HTTP/" + data[5:] if self.lowercase else data

    def _on_boundary(self) -> None:
        self.lowercase = False
        self.want = None
        self.guessed = False
        self.waiting_at = None

    def _before_next(self) -> None:
        if self.framing is None:
            self._send_framing(self.want or b"GET")

    def _start_clock(self) -> int:
        return self.first[1] if self.first else self.clock_at(self.buf.boundary)

    def _ready(self) -> bool:
        """Choose the framing of a new response before parsing it: its request's, when the
        decoder knows it. When it does not (the request was lost, or is not settled yet), a
        response with a body as a GET's answer is taken as bodiless (a HEAD's answer) if a
        status line follows its head: wait for the bytes that decide (few: status_line_state
        says no at the first byte that cannot start `HTTP/1.x NNN`), or for the end."""
        if self.want is not None or self.framing is not None or self.buf.boundary >= self.buf.end:
            return True
        framing = self.dec.framing_for(self._start_clock())
        if framing is not None:
            if self.waiting_at is not None:  # no longer undecided: not a quiet point's proof
                self.waiting_at = None
                if not self.dec.replaying:
                    self.dec.gate_decided(False)
            self.want = framing
            return True
        got = self._guess_framing()
        if got is None:
            return False
        self.want = got
        return True

    def _guess_framing(self) -> bytes | None:
        rec, base, end = self.buf.rec, self.buf.base, len(self.buf.rec)
        i = self.buf.boundary - base
        while i < end and rec[i] in CRLF:
            i += 1
        final = self.closing or self.force
        first = status_line_state(rec[i : i + 13])
        if not first:
            return b"GET" if first is False or final else None  # not ours to decide
        m = BLANK.search(rec, i, i + self.cfg.max_header)
        if m is None:
            return b"GET" if final or end - i > self.cfg.max_header else None
        status = int(rec[i + 9 : i + 12])
        head = bytes(rec[i : m.end()])
        lengths = CL_LINE.findall(head)
        if (
            100 <= status < 200
            or status in (204, 304)
            or (
                lengths
                and all(v.strip() == b"0" for v in lengths)
                and b"transfer-encoding" not in head.lower()
            )
        ):
            return b"GET"  # no body either way
        after = status_line_state(rec[m.end() : m.end() + 13])
        if after is None and not final:
            self.waiting_at = base + m.end()
            return None
        self.waiting_at = None
        if not self.dec.replaying:
            self.dec.gate_decided(bool(after))
        # Undecidable (a hole or the end follows): bodiless too, so that a hole is a loss at
        # the next message and the side resynchronises, rather than a body that might
        # swallow the responses after it.
        self.guessed = after is not False
        return b"HEAD" if self.guessed else b"GET"

    def _settle_waiting(self) -> None:
        self.force = True
        try:
            self._pump()
        finally:
            self.force = False

    def idle_state(self) -> int:
        """1: no response in progress (resynchronising counts: what is skipped belongs to no
        response we know); 2: one whose head ended here waits for the bytes that decide its
        framing (idle if it is bodiless); 0: busy."""
        if self.mode not in (MSG, RESYNC) or self.cur is not None or self.info:
            return 0
        if self.buf.end == self.buf.boundary or self.mode == RESYNC:
            return 1
        return 2 if self.mode == MSG and self.waiting_at == self.buf.end else 0

    def _cycle(self) -> bool:
        conn = self.conn
        assert conn is not None
        try:
            conn.start_next_cycle()
        except h11.LocalProtocolError:
            return False
        self.framing = None
        return True

    def _cur_msg(self) -> Msg | None:
        return self.cur.resp if self.cur is not None else None

    def _event(self, ev: Any) -> None:
        t = type(ev)
        if t is h11.Data:
            self._body_data(ev)
        elif t is h11.Response:
            self._final(ev)
            self._take_body()
        elif t is h11.EndOfMessage:
            self._done()
        elif t is h11.InformationalResponse:
            if ev.status_code == 101:
                self._final(ev)
            else:
                self._informational(ev)

    def _fast_message(self, head: bytes, head_end: int) -> bool:
        framing = self.framing
        if framing is None:
            if (self.want or b"GET") != b"GET":
                return False
        elif framing != b"GET":
            return False
        parsed = response_head(head)
        if parsed is None:
            return False
        first, headers, length, codings, status = parsed
        self.framing = b"GET"  # the stand-in h11 would have parsed this head with
        self.line_ok = True
        self._final_head(status, first, headers, None, None, codings)
        if self.pending_pair is not None:
            # The paired request needs another framing: _final_head handed the message to a
            # fresh h11 connection with the right stand-in; h11 takes it from here.
            self.started = True
            return True
        if length:
            self._enter_body(head_end, length)
        else:
            self._done(head_end)
        return True

    def _informational(self, ev: h11.InformationalResponse) -> None:
        if self.first is None:
            self.first = [self.ts_at(self.buf.boundary), self.clock_at(self.buf.boundary)]
        self.info.append({"status": ev.status_code, "reason": ev.reason.decode("latin-1")})
        assert self.conn is not None
        self.buf.set_boundary(self.buf.end - h11_buffered(self.conn))
        self.line_ok = False
        self.head_seen = False

    def _final(self, ev: h11.Response | h11.InformationalResponse) -> None:
        raw = list(ev.headers.raw_items())
        first = {
            "status": ev.status_code,
            "reason": ev.reason.decode("latin-1"),
            "version": "HTTP/" + ev.http_version.decode("latin-1"),
        }
        lengths = self._wire_lengths(raw)
        headers = header_pairs(raw)
        self._final_head(ev.status_code, first, headers, raw, lengths, content_codings(raw))

    def _final_head(
        self,
        status: int,
        first: dict[str, Any],
        headers: list[list[str]],
        raw: list[tuple[bytes, bytes]] | None,
        lengths: list[bytes] | None,
        codings: list[str] | None,
    ) -> None:
        """A final response head: record fields, text headers; `raw`: the headers as parsed
        by h11, None from the fast parser (a clean head); `lengths`: Content-Length values as
        on the wire."""
        dec = self.dec
        if dec.replaying and self.cur is not None:
            self.head_seen = True
            assert self.cur.resp is not None
            self.cur.resp.open_body(self.cfg.max_decoded, self.cfg.extras, self.dec.store_file)
            return
        ts, clock = self.first or self.arrival_at(self.buf.boundary)
        if self.pending_pair is not None:
            req, ptags, hold = self.pending_pair
            self.pending_pair = None
        else:
            req, ptags, hold = dec.pair(clock)
            want = req.framing if req is not None else (self.want or b"GET")
            if want != self.framing:
                # Framing depends on the request method: re-parse with the right stand-in.
                self.pending_pair = (req, ptags, hold)
                self._reset_conn()
                self._send_framing(want)
                assert self.conn is not None
                self.conn.receive_data(self._message_bytes())
                return
        self.head_seen = True
        cap = self.cfg.max_headers
        resp = new_head_msg(dec.next_rid(), False, ts, clock, first, headers, cap, codings)
        resp.framing = self.framing or b"GET"
        resp.tags |= self.tags_next
        if self.lowercase:
            resp.tags.add("lenient")
        if self.guessed and req is None:
            resp.tags.add(GUESSED)
        self.tags_next.clear()
        if raw is None:
            dec.check_headers(resp, [], len(headers), None, True)
        else:
            dec.check_headers(resp, raw, len(raw), lengths)
        txn = Txn(req, resp, ptags, self.info, hold)
        self.info = []
        self.first = None
        if req is not None:
            req.paired = True
        self.cur = txn
        switch = None
        if status == 101:
            switch = "upgrade"
        elif self.framing == b"CONNECT" and 200 <= status < 300:
            switch = "tunnel"
        if switch is not None:
            resp.open_body(
                self.cfg.max_decoded, self.cfg.extras, self.dec.store_file
            )  # no body: empty digest
            resp.finish()
            self.cur = None
            # What came after the head belongs to the new protocol (switches are parsed by
            # h11: the fast parser takes no 1xx and no CONNECT framing).
            rest = self.conn.trailing_data[0] if self.conn is not None else b""
            dec.switch(txn, switch, rest)
            return
        resp.open_body(self.cfg.max_decoded, self.cfg.extras, self.dec.store_file)
        dec.response_head(txn)

    def _done(self, pos: int | None = None) -> None:
        txn = self.cur
        assert txn is not None and txn.resp is not None
        txn.resp.end_ns = self.end_ts(pos)
        txn.resp.finish()
        self.cur = None
        self._next_message(pos)
        self.dec.txn_done(txn)
        self.dec.response_done()

    def _give_up_cur(self, tags: set[str]) -> None:
        txn = self.cur
        if txn is None:
            return
        self.cur = None
        assert txn.resp is not None
        txn.resp.tags |= tags
        txn.resp.end_ns = self.end_ts(self.buf.end)
        txn.resp.finish()
        self.dec.txn_done(txn)

    def _accept_lenient(self, msg: Msg) -> None:
        ts, clock = self.first or (msg.ts_ns, msg.clock)
        msg.ts_ns, msg.clock = ts, clock
        req, ptags, hold = self.dec.pair(clock)
        if req is not None:
            req.paired = True
        txn = Txn(req, msg, ptags, self.info, hold)
        self.info = []
        self.first = None
        self.dec.response_head(txn)
        self.dec.txn_done(txn)
        self.dec.response_done()

    def _on_loss(self, lost: int, at_boundary: bool) -> None:
        self.info = []
        self.first = None
        self.dec.server_loss()

    def _prime(self) -> None:
        if self._framing_state is not None:
            self._send_framing(self._framing_state)

    def state(self) -> dict[str, Any]:
        st = super().state()
        st["cur"] = self.cur.to_state() if self.cur is not None else None
        st["framing"] = self.framing
        st["info"] = self.info
        st["first"] = self.first
        return st

    def load_refs(self, st: dict[str, Any], reqs: dict[int, Msg]) -> None:
        self.cur = Txn.from_state(st["cur"], reqs) if st["cur"] is not None else None
        self._framing_state = st["framing"]
        self.info = list(st["info"])
        self.first = list(st["first"]) if st["first"] is not None else None
