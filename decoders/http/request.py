"""The client's side of an HTTP/1.x flow: requests, parsed by an h11 connection in SERVER role.

Adds to the shared machine (decoders/http/side.py) what only requests need: an empty Host for
HTTP/1.1 heads without one (h11 refuses them, real servers do not), and WAIT mode after a
request proposing a protocol switch until the response decides.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import h11

from wirestream.decoders.http.body import content_codings
from wirestream.decoders.http.fast import request_head
from wirestream.decoders.http.h11_access import buffered as h11_buffered
from wirestream.decoders.http.modes import WAIT
from wirestream.decoders.http.msg import Msg, framing_class, header_pairs, new_head_msg
from wirestream.decoders.http.side import Side

if TYPE_CHECKING:
    from wirestream.decoders.http.decoder import HttpDecoder

_HOST_LINE = b"Host: \r\n"


class RequestSide(Side):
    """Client -> server bytes: requests."""

    is_request = True

    def __init__(self, dec: HttpDecoder) -> None:
        self.cur: Msg | None = None
        self.wait_rid: int | None = None
        self.host_injected = False
        # [position, 1 | 2]: a request starting at `position` is at a quiet point (1), or is
        # if the server's undecided response turns out bodiless (2) (HttpDecoder._quiet)
        self.quiet: list[int] | None = None
        super().__init__(dec)

    def _new_conn(self) -> h11.Connection:
        return h11.Connection(h11.SERVER, max_incomplete_event_size=self.cfg.max_header)

    def _reset_conn(self) -> None:
        self.conn = self._new_conn()
        self.host_injected = False

    def _on_boundary(self) -> None:
        self.host_injected = False

    def _retry(self, detail: str) -> bool:
        """HTTP/1.1 without Host is common (scanners, CONNECT, IoT) and h11 refuses it: parse
        the same head with an empty Host added after the request line, so the body framing
        is known; the record keeps the wire headers and gets tag missing_host."""
        if self.host_injected or self.closing or self.head_seen:
            return False
        if detail != "Missing mandatory Host: header":
            return False
        head = self.buf.tail()
        lf = head.find(b"\n")
        if lf < 0:
            return False
        self._reset_conn()
        self.host_injected = True
        assert self.conn is not None
        self.conn.receive_data(head[: lf + 1] + _HOST_LINE + head[lf + 1 :])
        self.dec.anomaly("http_missing_host", "")
        return True

    def _cycle(self) -> bool:
        conn = self.conn
        assert conn is not None
        try:
            conn.send(h11.Response(status_code=404, headers=[(b"content-length", b"0")]))
            conn.send(h11.EndOfMessage())
            conn.start_next_cycle()
        except h11.LocalProtocolError:
            return False
        return True

    def _cur_msg(self) -> Msg | None:
        return self.cur

    def _event(self, ev: Any) -> None:
        t = type(ev)
        if t is h11.Data:
            self._body_data(ev)
        elif t is h11.Request:
            self._h11_head(ev)
            self._take_body()
        elif t is h11.EndOfMessage:
            self._done()

    def _fast_message(self, head: bytes, head_end: int) -> bool:
        parsed = request_head(head)
        if parsed is None:
            return False
        first, headers, length, codings, method = parsed
        self.line_ok = True
        self._head(method, first, headers, None, None, codings)
        if length:
            self._enter_body(head_end, length)
        else:
            self._done(head_end)
        return True

    def _h11_head(self, ev: h11.Request) -> None:
        raw = list(ev.headers.raw_items())
        if self.host_injected and raw and raw[0] == (b"Host", b""):
            raw = raw[1:]
        if self.dec.replaying and self.cur is not None:
            self._head(ev.method, {}, [], raw, None, None)
            return
        first = {
            "method": ev.method.decode("latin-1"),
            "uri": ev.target.decode("latin-1"),
            "version": "HTTP/" + ev.http_version.decode("latin-1"),
        }
        lengths = self._wire_lengths(raw)
        self._head(ev.method, first, header_pairs(raw), raw, lengths, content_codings(raw))

    def _head(
        self,
        method: bytes,
        first: dict[str, Any],
        headers: list[list[str]],
        raw: list[tuple[bytes, bytes]] | None,
        lengths: list[bytes] | None,
        codings: list[str] | None,
    ) -> None:
        """A request head: record fields, text headers; `raw`: the headers as parsed by h11,
        None from the fast parser (a clean head: one Content-Length at most, no
        Transfer-Encoding, no Upgrade)."""
        dec = self.dec
        self.head_seen = True
        if dec.replaying and self.cur is not None:
            self.cur.open_body(self.cfg.max_decoded, self.cfg.extras, self.dec.store_file)
            return
        msg = new_head_msg(
            dec.next_rid(),
            True,
            self.ts_at(self.buf.boundary),
            dec.clock,
            first,
            headers,
            self.cfg.max_headers,
            codings,
        )
        upgrade = raw is not None and any(n.lower() == b"upgrade" for n, _ in raw)
        msg.framing = framing_class(method, upgrade)
        msg.switch = method == b"CONNECT" or upgrade
        msg.tags |= self.tags_next
        if self.host_injected:
            msg.tags.add("missing_host")
        self.tags_next.clear()
        if raw is None:
            dec.check_headers(msg, [], len(headers), None, True)
        else:
            dec.check_headers(msg, raw, len(raw), lengths)
        msg.open_body(self.cfg.max_decoded, self.cfg.extras, self.dec.store_file)
        self.cur = msg
        dec.push_request(msg, self.buf.boundary)

    def _done(self, pos: int | None = None) -> None:
        msg = self.cur
        assert msg is not None
        msg.end_ns = self.end_ts(pos)
        msg.finish()
        self.cur = None
        if msg.switch and not msg.paired:
            assert pos is None  # switch proposals are parsed by h11 to the end
            assert self.conn is not None
            self.buf.set_boundary(self.buf.end - h11_buffered(self.conn))
            self.mode = WAIT
            self.conn = None
            self.started = False
            self.line_ok = False
            self.head_seen = False
            self.wait_rid = msg.rid
        else:
            self._next_message(pos)
        self.dec.request_complete(msg)
        if self.mode == WAIT:
            self._check_wait()

    def _check_wait(self) -> None:
        if self.mode == WAIT and self.buf.end - self.buf.boundary > self.cfg.max_header:
            self.resume_after_wait()

    def resume_after_wait(self) -> None:
        if self.mode == WAIT:
            self.wait_rid = None
            self._resume(self.buf.boundary)

    def _give_up_cur(self, tags: set[str]) -> None:
        msg = self.cur
        if msg is None:
            return
        self.cur = None
        msg.tags |= tags
        msg.end_ns = self.end_ts(self.buf.end)
        msg.finish()
        self.dec.request_complete(msg)

    def _accept_lenient(self, msg: Msg) -> None:
        self.dec.push_request(msg, self.buf.boundary)

    def _on_loss(self, lost: int, at_boundary: bool) -> None:
        self.wait_rid = None
        self.dec.client_loss(lost, at_boundary)

    def state(self) -> dict[str, Any]:
        st = super().state()
        st["cur"] = self.cur.rid if self.cur is not None else None
        st["wait_rid"] = self.wait_rid
        q = self.quiet
        st["quiet"] = [q[0] - self.buf.boundary, q[1]] if q and q[0] >= self.buf.boundary else None
        return st

    def load_refs(self, st: dict[str, Any], reqs: dict[int, Msg]) -> None:
        self.cur = reqs[st["cur"]] if st["cur"] is not None else None
        self.wait_rid = st["wait_rid"]
        self.quiet = list(st["quiet"]) if st.get("quiet") is not None else None
