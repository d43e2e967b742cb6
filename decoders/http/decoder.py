"""HTTP/1.x decoder: one `http` record per transaction (request + response), built on h11.

Each direction is parsed by its own side machine (decoders/http/side.py; the roles in
request.py and response.py); this module pairs requests with responses,
applies the limits, emits records and anomalies, and snapshots the whole state. For speed,
clean heads are parsed without h11 (decoders/http/fast.py, the same fields h11 gives), and
Content-Length bodies and the data of each chunk of a chunked body are sliced and hashed
without it; h11 keeps every other case (and parses chunk-size lines and trailers), so the
records are the same either way.

After a CONNECT 2xx or a 101 the flow is handed back to the runtime (`switch`, `_hand_off`)
with the bytes that followed the switch on either side; a WebSocket upgrade also emits a
`websocket` record and names the `websocket` frame decoder (decoders/websocket.py).

Options (all optional, in the decoder options mapping):
  max_header_bytes  65536     a head (request/status line + headers) larger than this is a
                                   parse error (tags parse_error, lenient, header_limit)
  max_headers       500       headers kept per message; more: tag header_limit
  max_pending       100       requests awaiting a response; beyond, the oldest is emitted
                                   with no_response + pending_limit and its response, when it
                                   comes, with no_request + pending_limit (as Zeek)
  max_decompressed  64 MiB    decoded (Content-Encoding) bytes hashed per body; beyond: tag
                                   decompression_limit
  md5, sha1         false     body_md5 / body_sha1 of each body's content (body.py)
  sniff_mime        false     body_mime: the content's MIME type sniffed by puremagic
  extract_max_bytes 0         > 0: keep each body's content up to this size and hand it to
                                   the context's `store_file` (replay --extract-files sets
                                   it); `extracted` in the request/response: the file name
  max_replay_bytes  8 MiB     bytes of a message in progress kept for snapshots; beyond, a
                                   restore resumes at the next message with tag restored_partial
                                   (the only case where a restore changes the output). Identity
                                   Content-Length bodies are not kept: their digest state is
                                   saved; chunked, read-until-close and content-encoded bodies
                                   are (an inflater's state cannot be saved).

Pairing (responses come back in request order, HTTP/1.1 has no ids). A response pairs with
the oldest pending request, except across a loss, where the count is broken: position alone
would pair request N with response N+1 (libhtp#403). So a loss puts a marker (pairing.Loss)
into the queue, and a response that reaches it is paired with the request after it only when
the count is known again; otherwise it is emitted with request null (tags gap, no_request)
and that request with response null (no_response). Never a guess by position:
- Server-side loss (a gap the body framing cannot absorb): the transaction in progress is
  emitted with its truncated response, every other pending request at once without response
  (tags gap, no_response: its response may have been in the hole). The marker stands for
  those of them whose response may still come (at most their number).
- Client-side loss: requests may have been lost whole. The first request after the hole
  closes its window: the lost bytes plus those the resync skipped hold at most
  window // 16 requests (`X / HTTP/1.0` CRLF CRLF, the shortest a conforming client sends),
  and at least one when the hole began at a message boundary (and no server-side hole
  declared since the client's last data may hold its answer).
- A response that began before the next known request was complete cannot be that request's
  (causality): it answers a lost one. So do the first `nmin` responses. Once `nmax` have,
  the rest pair in order again. In between the response is held at the marker.
- Quiet points settle what is held. A request that starts a client delivery when the server
  has spoken since the client's previous delivery (data or hole) and has no response in
  progress was sent after hearing from an idle server: a client that does not pipeline
  across responses (one request at a time, or bursts that wait for all their answers) has
  then had every earlier request answered. So the last k held responses answer the k known
  requests between the marker and that request (each complete before its response began,
  and framed as its request wants), the others answered lost requests (such pairs keep tag
  gap: they are inferred). A quiet point that finds a request unanswered, or a count that
  does not fit, shows pipelining: quiet points are not trusted on that flow any more, and
  what is held is emitted unpaired (at the latest when the flow ends).
- A response whose request is not known is framed as a GET's answer, unless a status line
  directly follows its head (then as a HEAD's: no body, tag no_body_guessed; also when a
  hole or the end comes first): it waits for the few bytes that decide (the decision depends
  on the bytes, not on how they were cut). A quiet point met while it waits is one if the
  response turns out bodiless.
Residual risks (docs/http.md, "Loss and pairing"): a client that pipelines
across responses but was not seen doing so before the loss; a client sending requests of
fewer than 16 bytes, or with bare LFs; a response body that starts with a status line.
- Parse errors lose no bytes: the side resynchronises on the next request/status line and
  pairing continues in order.
- Resynchronisation takes the first line that is a whole request line (client side) or status
  line (server side), at a line start or right after the hole; mid-line too (a body without
  a final newline puts the next message there): on the server side at any `HTTP/1.`, on the
  client side at a known method followed by a target and `HTTP/x.y` ending the line.
- h11 refusals get a second chance where real servers are lenient: HTTP/1.1 without Host is
  parsed with an empty Host added for h11 (tag missing_host, wire headers kept), `http/1.1`
  status lines as `HTTP/1.1` (tag lenient); anything else h11 refuses goes to a tolerant line
  parser (tags parse_error, lenient; body unknown: body_len null) and the side resynchronises.

A transaction is emitted when its response is complete and its request is complete too (a
response may finish before a long upload): bodies are hashed, never stored.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any

from wirestream.decoders.api import CLIENT, SERVER, Decoder, DecoderContext, ts_seconds
from wirestream.decoders.http.body import BodyExtras
from wirestream.decoders.http.fields import txn_fields
from wirestream.decoders.http.lines import line_state
from wirestream.decoders.http.modes import BODY, CHUNK, GUESSED, TUNNEL, WAIT
from wirestream.decoders.http.msg import Msg, Txn
from wirestream.decoders.http.pairing import FLOAT, NONE, PAIR, WINDOW, Loss, consistent, decide
from wirestream.decoders.http.request import RequestSide
from wirestream.decoders.http.response import ResponseSide
from wirestream.decoders.websocket import handshake_fields, is_websocket

ANOMALY_CAP = 16  # per anomaly name and flow: bad input is counted, not logged without end
PROBE_LIMIT = 8192


@dataclass(frozen=True, slots=True)
class HttpConfig:
    max_header: int = 64 * 1024
    max_headers: int = 500
    max_pending: int = 100
    max_decoded: int = 64 * 1024 * 1024
    max_replay: int = 8 * 1024 * 1024
    extras: BodyExtras | None = None  # opt-in body fields (body.BodyExtras)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> HttpConfig:
        d = cls()
        max_header = max(1024, int(options.get("max_header_bytes", d.max_header)))
        extras = BodyExtras(
            md5=bool(options.get("md5", False)),
            sha1=bool(options.get("sha1", False)),
            sniff=bool(options.get("sniff_mime", False)),
            keep=max(0, int(options.get("extract_max_bytes", 0))),
        )
        return cls(
            extras=extras if extras.any else None,
            max_header=max_header,
            max_headers=max(1, int(options.get("max_headers", d.max_headers))),
            max_pending=max(1, int(options.get("max_pending", d.max_pending))),
            max_decoded=max(0, int(options.get("max_decompressed", d.max_decoded))),
            max_replay=max(2 * max_header, int(options.get("max_replay_bytes", d.max_replay))),
        )


_DEFAULTS = HttpConfig()


class HttpDecoder(Decoder):
    name = "http"
    ports = frozenset({80, 8080, 8000, 8008, 8888, 3128, 18080, 18081, 18082})
    option_defaults = {
        "max_header_bytes": _DEFAULTS.max_header,
        "max_headers": _DEFAULTS.max_headers,
        "max_pending": _DEFAULTS.max_pending,
        "max_decompressed": _DEFAULTS.max_decoded,
        "max_replay_bytes": _DEFAULTS.max_replay,
        "md5": False,
        "sha1": False,
        "sniff_mime": False,
        "extract_max_bytes": 0,
    }

    @classmethod
    def probe(cls, direction: int, data: bytes) -> bool | None:
        if direction == CLIENT:
            buf = data.lstrip(b"\r\n")
            if not buf:
                return None if len(data) < PROBE_LIMIT else False
            return line_state(True, buf, PROBE_LIMIT)
        return line_state(False, data, PROBE_LIMIT)

    def __init__(self, ctx: DecoderContext, options: Mapping[str, Any]) -> None:
        super().__init__(ctx, options)
        self.cfg = HttpConfig.from_options(options)
        self.clock = 0  # +1 per delivery: orders events across the two directions
        self.depth = 0
        self._rid = 0
        self.queue: deque[Any] = deque()  # pending requests (Msg) and Loss markers
        self.npending = 0  # requests in the queue
        self.dropped = 0  # requests given up by the pending limit whose responses are due
        # Quiet points (module doc): clocks of the last server and client events, the
        # request waiting for the server side to tell whether it was idle, and whether the
        # client was seen sending a request while earlier ones were unanswered.
        self.srv_clock = 0
        self.cli_clock = 0
        self.cli_data_clock = 0  # the last client data
        self.srv_lost_clock = -1  # the last server-side loss
        self.pending_quiet: Msg | None = None
        self.quiet_armed = False
        self.pipelining = False
        self.loose = 0  # responses with no request known since the last client data
        self.held: list[Txn] = []  # complete responses whose request body is still streaming
        self.deferred: list[Txn] = []  # produced during restore, emitted at the next call
        self.anomalies: dict[str, int] = {}
        self.replaying = False
        self.closed = False
        # After a protocol switch: ([(direction, bytes)], decoder name) to hand the flow on
        # with, once the delivery that switched is processed (never set between deliveries).
        self.handoff: tuple[list[tuple[int, bytes]], str | None] | None = None
        self.client = RequestSide(self)
        self.server = ResponseSide(self)

    # ---- plugin API
    def on_data(self, direction: int, data: bytes) -> None:
        side = self.client if direction == CLIENT else self.server
        mode = side.mode
        if not self.deferred and (
            (mode == BODY and not side.count.keep) or (mode == CHUNK and direction != CLIENT)
        ):
            # Guard in front of the side's hot path (Side.take_segment): an arrival inside a
            # body changes nothing here but the clock (and, for a chunk, the server's clock,
            # as below); the copy and the rest of this method are skipped.
            clock = self.clock + 1
            if side.take_segment(data, self.ctx.ts_ns, clock):
                self.clock = clock
                if mode == CHUNK:
                    self.srv_clock = clock
                return
        if self.closed or not data:
            return
        self._advance(direction, True)
        side.data(bytes(data), self.ctx.ts_ns, self.clock)
        if self.handoff is not None:
            self._hand_off()

    def on_gap(self, direction: int, length: int) -> None:
        if self.closed:
            return
        self._advance(direction, False)
        (self.client if direction == CLIENT else self.server).gap(int(length))
        if self.handoff is not None:
            self._hand_off()

    def _advance(self, direction: int, carries_data: bool) -> None:
        """One more event on the flow's clock, and on the clocks of its direction (pairing
        reads them): the client's, or the server's."""
        if self.deferred:
            self._flush_deferred()
        self.clock += 1
        if direction == CLIENT:
            self._client_event(carries_data)
        else:
            self.srv_clock = self.clock

    def on_close(self, reason: str) -> None:
        if self.closed:
            return
        if self.deferred:
            self._flush_deferred()
        self.client.close()
        self.server.close()
        self._flush_queue(set())
        for txn in self.held:
            self._emit(txn)
        self.held = []
        self.handoff = None  # the flow is over: nothing to hand on
        self.closed = True

    # ---- used by the sides
    def store_file(self, data: bytes) -> str | None:
        """Extraction through the context, when the runtime offers it (replay does)."""
        store = getattr(self.ctx, "store_file", None)
        return store(data) if store is not None else None

    def next_rid(self) -> int:
        self._rid += 1
        return self._rid

    def anomaly(self, name: str, detail: str = "") -> None:
        if self.replaying:
            return
        n = self.anomalies.get(name, 0) + 1
        self.anomalies[name] = n
        if n <= ANOMALY_CAP:
            self.ctx.anomaly(name, detail)

    def check_headers(
        self,
        msg: Msg,
        raw: list[tuple[bytes, bytes]],
        count: int,
        lengths: list[bytes] | None = None,
        clean: bool = False,
    ) -> None:
        """Limits and request-smuggling signals (RFC 9112 6.3). `lengths`: Content-Length
        values as on the wire, when the parser may have folded duplicates. `clean`: the head
        has at most one Content-Length and no Transfer-Encoding (fast parser)."""
        if count > self.cfg.max_headers:
            msg.tags.add("header_limit")
            self.anomaly("http_header_limit", f"{count} headers, {self.cfg.max_headers} kept")
        if clean:
            return
        if lengths is None:
            lengths = [v.strip() for n, v in raw if n.lower() == b"content-length"]
        chunked = any(n.lower() == b"transfer-encoding" for n, _ in raw)
        if lengths and chunked:
            self.anomaly("http_content_length_with_transfer_encoding", "")
        if len(lengths) > 1:
            if len(set(lengths)) > 1:
                detail = b", ".join(lengths).decode("latin-1")
                self.anomaly("http_conflicting_content_length", detail)
            else:
                self.anomaly("http_duplicate_content_length", lengths[0].decode("latin-1"))

    def push_request(self, msg: Msg, start: int) -> None:
        """A request head at client position `start` (module doc: windows, quiet points)."""
        q = self.queue
        last = q[-1] if q else None
        if isinstance(last, Loss) and not last.server and last.nmax is None:
            last.close_window(start)
        quiet = self.client.quiet
        if quiet is not None and quiet[0] == start:
            self.client.quiet = None
            if quiet[1] == 1:
                self._quiet(None)
            else:  # settled when the server side's undecided response is
                self.pending_quiet = msg
        q.append(msg)
        self.npending += 1
        if self.npending <= self.cfg.max_pending:
            return
        i = 0
        while isinstance(q[i], Loss):
            i += 1
        oldest = q[i]
        del q[i]
        self.npending -= 1
        self.dropped += 1
        if self.pending_quiet is oldest:
            self.pending_quiet = None
        self.anomaly("http_pending_limit", f"more than {self.cfg.max_pending} pending requests")
        self.txn_done(Txn(oldest, None, {"pending_limit"}))
        self._released(oldest)

    def framing_for(self, start_clock: int) -> bytes | None:
        """The framing of a response that begins at `start_clock`: its request's, or None
        when its request is not known (lost, given up, or not settled yet)."""
        if self.dropped:
            return None
        kind, i = decide(self.queue, start_clock)
        return self.queue[i].framing if kind == PAIR else None

    def pair(self, start_clock: int) -> tuple[Msg | None, set[str], bool]:
        """(request, tags, held) for a response that began at `start_clock` (module doc);
        held: its request is not known yet (it waits at a loss marker)."""
        if self.dropped:
            self.dropped -= 1
            return None, {"pending_limit"}, False
        q = self.queue
        kind, i = decide(q, start_clock)
        if kind == NONE:
            self.loose += 1
            return None, set(), False
        for _ in range(i):  # markers whose lost requests are all answered
            q.popleft()
        if kind == PAIR:
            self.npending -= 1
            req = q.popleft()
            if req is self.pending_quiet:  # answered: it was no quiet point to settle
                self.pending_quiet = None
            return req, set(), False
        if kind == WINDOW:
            q[0].seen += 1
            return None, {"gap"}, False
        assert kind == FLOAT
        return None, {"gap"}, True

    def client_loss(self, lost: int, at_boundary: bool) -> None:
        q = self.queue
        last = q[-1] if q else None
        if isinstance(last, Loss) and not last.server:
            last.lost += lost  # no request since the last hole: one window
            return
        if sum(isinstance(e, Loss) for e in q) >= self.cfg.max_pending:
            # Hole after hole with nothing settled (bounded memory): give up what is pending.
            self._flush_queue({"gap"})
            at_boundary = False
        # A server-side hole declared since the client's last data may hold the answers to
        # requests of this hole: then none of the responses to come must be theirs.
        at_boundary = at_boundary and self.srv_lost_clock < self.cli_data_clock
        m = Loss(False, None, self.client.buf.end, lost, at_boundary)
        # Responses that found no request since the last client data answered requests of
        # this hole (the hole was declared late, by the ACK of the packet carrying them).
        m.seen, self.loose = self.loose, 0
        q.append(m)

    def server_loss(self) -> None:
        """Responses were lost: the pending requests are emitted without response; a marker
        stands for those of them whose response may still come."""
        owed: int | None = 0
        for e in self.queue:
            if not isinstance(e, Loss):
                owed = None if owed is None else owed + 1
            elif e.nmax is None or owed is None:
                owed = None
            else:
                owed += max(0, e.nmax - e.seen)
        self.srv_lost_clock = self.clock
        self._flush_queue({"gap"})
        if owed != 0:
            self.queue.append(Loss(True, owed))

    def _client_event(self, data: bool) -> None:
        """A client delivery begins: a request starting right here would be at a quiet point
        if the server spoke since the client's previous event and is idle now (or may be:
        its last response waits for the bytes that decide its framing)."""
        if data:
            state = self.server.idle_state() if self.srv_clock > self.cli_clock else 0
            if state:
                self.client.quiet = [self.client.buf.end, state]
            self.loose = 0
            self.cli_data_clock = self.clock
        self.cli_clock = self.clock

    def gate_decided(self, bodiless: bool) -> None:
        """The server side's response whose framing was undecided is bodiless (it ended at its
        head: the server was idle) or not: a pending quiet point holds, or never did."""
        q = self.client.quiet
        if q is not None and q[1] == 2:
            if bodiless:
                q[1] = 1
            else:
                self.client.quiet = None
        if self.pending_quiet is not None:
            if bodiless:
                self.quiet_armed = True
            else:
                self.pending_quiet = None

    def response_done(self) -> None:
        """After a server-side transaction is passed on: settle an armed quiet point."""
        if self.quiet_armed:
            s, self.pending_quiet, self.quiet_armed = self.pending_quiet, None, False
            if s is not None and any(e is s for e in self.queue):
                self._quiet(s)

    def _quiet(self, s: Msg | None) -> None:
        """A quiet point at request `s` (None: not queued yet): the client sent it after
        hearing from the idle server. Unless this client was seen pipelining, take it that
        every request before `s` has been answered by the responses that began before it:
        the last k responses held at the loss marker answer the k known requests before `s`."""
        q = self.queue
        idx = len(q)
        if s is not None:
            idx = next(k for k, e in enumerate(q) if e is s)
        if (idx == 0 and not self.dropped) or self.pipelining:
            return
        before = list(islice(q, 0, idx))
        head = before[0] if before else None
        if not isinstance(head, Loss) or self.dropped:
            self.pipelining = True  # a request was pending at a quiet point: not lock-step
            return
        last = max(k for k, e in enumerate(before) if isinstance(e, Loss))
        rs = before[last + 1 :]
        held = head.floating
        k = len(rs)
        if len(held) < k or not all(
            r.clock <= t.resp.clock and consistent(r, t.resp)
            for r, t in zip(rs, held[len(held) - k :], strict=True)
        ):
            self.pipelining = True  # the count from the end does not fit: not lock-step
            return
        for _ in range(idx):
            q.popleft()
        unanswered = [e for e in before[:last] if not isinstance(e, Loss)]
        self.npending -= len(unanswered) + k
        for req in unanswered:  # their responses are among the held ones: which, unknown
            self.txn_done(Txn(req, None, {"gap"}))
        for t in held[: len(held) - k]:
            t.hold = False
            self.txn_done(t)
        for req, t in zip(rs, held[len(held) - k :], strict=True):
            t.hold = False
            t.req = req
            if t.resp is not None:  # its framing guess was right (`consistent`)
                t.resp.tags.discard(GUESSED)
            req.paired = True
            self.txn_done(t)
        for req in unanswered + rs:
            self._released(req)

    def response_head(self, txn: Txn) -> None:
        if txn.req is not None:
            self._released(txn.req)

    def request_complete(self, msg: Msg) -> None:
        if not self.held:
            return
        keep = []
        for txn in self.held:
            if txn.req is msg:
                self.txn_done(txn)
            else:
                keep.append(txn)
        self.held = keep

    def txn_done(self, txn: Txn) -> None:
        if txn.hold:
            for e in self.queue:
                if isinstance(e, Loss):
                    e.floating.append(txn)
                    if len(e.floating) > self.cfg.max_pending:
                        # The oldest held responses answer lost requests whatever the count
                        # (at most max_pending known requests can be waiting for theirs).
                        old = e.floating.pop(0)
                        old.hold = False
                        self.txn_done(old)
                    return
            txn.hold = False
        if self.replaying:  # only a restore that could not replay a body gets here
            self.deferred.append(txn)
        elif txn.req is not None and not txn.req.complete:
            self.held.append(txn)
        else:
            self._emit(txn)

    def switch(self, txn: Txn, kind: str, rest: bytes) -> None:
        """CONNECT 2xx / 101: the flow leaves HTTP. `rest`: the server's bytes after the head;
        the client's bytes held after its switch proposal (WAIT) go first, they came first.
        A WebSocket upgrade also gets its handshake record and names the frame decoder."""
        txn.tags.add(kind)
        resp = txn.resp
        ws = kind == "upgrade" and resp is not None and is_websocket(resp.head["headers"])
        if ws:
            txn.tags.add("websocket")
        c = self.client
        held_client = c.buf.tail() if c.mode == WAIT and not c.buf.overflow else b""
        self.txn_done(txn)
        for side in (self.client, self.server):
            side.to_tunnel()
        self._flush_queue(set())
        held, self.held = self.held, []
        for t in held:
            self._emit(t)
        if ws:
            self._emit_websocket(txn)
        self.handoff = ([(CLIENT, held_client), (SERVER, rest)], "websocket" if ws else None)

    def _hand_off(self) -> None:
        """Give the flow back to the runtime (detection, or the decoder the switch named).
        Without a runtime that can (a bare context), the sides stay in TUNNEL mode."""
        leftovers, protocol = self.handoff  # type: ignore[misc]
        self.handoff = None
        hand_off = getattr(self.ctx, "hand_off", None)
        if hand_off is None or self.replaying:
            return
        self.closed = True
        if protocol is None:
            hand_off(leftovers)
        else:
            hand_off(leftovers, protocol)

    def _emit_websocket(self, txn: Txn) -> None:
        req, resp = txn.req, txn.resp
        assert resp is not None
        first = req if req is not None else resp
        flow = self.ctx.flow
        fields = {
            "ts": ts_seconds(first.ts_ns),
            "client": flow.client.as_json(),
            "server": flow.server.as_json(),
        }
        fields.update(
            handshake_fields(
                req.head.get("headers") if req is not None else None,
                req.head.get("uri") if req is not None else None,
                resp.head["headers"],
            )
        )
        if fields["accept_valid"] is False:
            self.anomaly("websocket_invalid_accept", "Sec-WebSocket-Accept does not match the key")
        self.ctx.emit("websocket", fields)

    # ---- internals
    def _released(self, req: Msg) -> None:
        """`req` got its response (or was given up): a client waiting on it may go on."""
        c = self.client
        if c.mode == WAIT and c.wait_rid == req.rid:
            c.resume_after_wait()

    def _flush_queue(self, tags: set[str]) -> None:
        flushed = [e for e in self.queue if not isinstance(e, Loss)]
        held = [t for e in self.queue if isinstance(e, Loss) for t in e.floating]
        self.queue.clear()
        self.npending = 0
        self.dropped = 0
        self.pending_quiet = None
        self.quiet_armed = False
        for req in flushed:
            self.txn_done(Txn(req, None, tags))
        for t in held:
            t.hold = False
            self.txn_done(t)
        for req in flushed:
            if self.client.mode != TUNNEL:
                self._released(req)

    def _flush_deferred(self) -> None:
        deferred, self.deferred = self.deferred, []
        for txn in deferred:
            self.txn_done(txn)

    def _emit(self, txn: Txn) -> None:
        self.depth += 1
        req, resp = txn.req, txn.resp
        for m in (req, resp):
            if m is not None and "decompression_limit" in m.tags:
                self.anomaly(
                    "http_decompression_limit", f"decoded body cut at {self.cfg.max_decoded}"
                )
        first = req if req is not None else resp
        assert first is not None
        flow = self.ctx.flow
        fields = {
            "ts": ts_seconds(first.ts_ns),
            "client": flow.client.as_json(),
            "server": flow.server.as_json(),
            "trans_depth": self.depth,
            "request": req.record() if req is not None else None,
            "response": resp.record(txn.info) if resp is not None else None,
            "tags": txn.all_tags(),
        }
        fields.update(txn_fields(req, resp))
        self.ctx.emit("http", fields)

    # ---- state
    def snapshot(self) -> Any:
        reqs: dict[int, Msg] = {}

        def keep(m: Msg | None) -> None:
            if m is not None:
                reqs[m.rid] = m

        for e in self.queue:
            if not isinstance(e, Loss):
                keep(e)
        for t in self.held + self.deferred:
            keep(t.req)
        keep(self.client.cur)
        if self.server.cur is not None:
            keep(self.server.cur.req)
        return {
            "v": 1,
            "clock": self.clock,
            "depth": self.depth,
            "rid": self._rid,
            "closed": self.closed,
            "anomalies": sorted([k, v] for k, v in self.anomalies.items()),
            "reqs": [reqs[k].to_state() for k in sorted(reqs)],
            "queue": [
                e.to_state(self.client.buf.boundary) if isinstance(e, Loss) else e.rid
                for e in self.queue
            ],
            "npending": self.npending,
            "dropped": self.dropped,
            "quiet": [
                self.srv_clock,
                self.cli_clock,
                self.cli_data_clock,
                self.srv_lost_clock,
                self.pending_quiet.rid if self.pending_quiet is not None else None,
                self.quiet_armed,
                self.pipelining,
                self.loose,
            ],
            "held": [t.to_state() for t in self.held],
            "deferred": [t.to_state() for t in self.deferred],
            "client": self.client.state(),
            "server": self.server.state(),
        }

    @classmethod
    def restore(cls, ctx: DecoderContext, options: Mapping[str, Any], state: Any) -> HttpDecoder:
        self = cls(ctx, options)
        self.clock = state["clock"]
        self.depth = state["depth"]
        self._rid = state["rid"]
        self.closed = state["closed"]
        self.anomalies = {k: v for k, v in state["anomalies"]}
        reqs = {st["rid"]: Msg.from_state(st) for st in state["reqs"]}
        self.queue = deque(
            Loss.from_state(e, reqs) if isinstance(e, dict) else reqs[e] if e else Loss(False)
            for e in state["queue"]  # (0: a loss marker saved by an older version)
        )
        self.npending = state["npending"]
        self.dropped = state["dropped"]
        quiet = state.get("quiet") or [0, 0, 0, -1, None, False, False, 0]
        srv, cli, cdata, slost, pq, self.quiet_armed, self.pipelining, self.loose = quiet
        self.srv_clock, self.cli_clock, self.cli_data_clock, self.srv_lost_clock = (
            srv,
            cli,
            cdata,
            slost,
        )
        self.pending_quiet = reqs[pq] if pq is not None else None
        self.held = [Txn.from_state(t, reqs) for t in state["held"]]
        self.deferred = [Txn.from_state(t, reqs) for t in state["deferred"]]
        self.client.load_refs(state["client"], reqs)
        self.server.load_refs(state["server"], reqs)
        self.replaying = True
        try:
            self.client.load(state["client"])
            self.server.load(state["server"])
        finally:
            self.replaying = False
        return self
