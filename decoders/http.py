"""HTTP/1.x decoder: one `http` record per transaction (request + response), built on h11.

Each direction is parsed by its own side machine (decoders/http_side.py); this module pairs
requests with responses, applies the limits, emits records and anomalies, and snapshots the
whole state. For speed, clean heads are parsed without h11 (decoders/http_fast.py, the same
fields h11 gives) and Content-Length bodies are sliced and hashed without it; h11 keeps every
other case, so the records are the same either way.

Options (all optional, in the decoder options mapping):
  max_header_bytes  65536     a head (request/status line + headers) larger than this is a
                                   parse error (tags parse_error, lenient, header_limit)
  max_headers       500       headers kept per message; more: tag header_limit
  max_pending       100       requests awaiting a response; beyond, the oldest is emitted
                                   with no_response + pending_limit and its response, when it
                                   comes, with no_request + pending_limit (as Zeek)
  max_decompressed  64 MiB    decoded (Content-Encoding) bytes hashed per body; beyond: tag
                                   decompression_limit
  max_replay_bytes  8 MiB     bytes of a message in progress kept for snapshots; beyond, a
                                   restore resumes at the next message with tag restored_partial
                                   (the only case where a restore changes the output). Identity
                                   Content-Length bodies are not kept: their digest state is
                                   saved; chunked, read-until-close and content-encoded bodies
                                   are (an inflater's state cannot be saved).

Pairing (responses come back in request order, HTTP/1.1 has no ids):
- A response pairs with the oldest pending request, except across a loss, where position alone
  would pair request N with response N+1 (libhtp#403):
- Server-side loss (gap that the body framing cannot absorb): the transaction in progress is
  emitted with its truncated response; every other pending request is emitted at once with
  response null (tags gap, no_response) since its response may have been in the hole. After
  resynchronising on a status line, responses pair only with requests received after the loss.
- Client-side loss: requests may have been lost whole, so a loss marker goes into the queue.
  A response reaching the marker pairs with the next request only if that request was complete
  before the response began (causality); otherwise it answers a lost request and is emitted
  with request null (tags gap, no_request). Residual risk: a pipelining client whose lost
  request's response starts after its next request was seen is still paired with that one.
- Parse errors lose no bytes: the side resynchronises on the next request/status line and
  pairing continues in order.
- Resynchronisation takes the first line that is a whole request line (client side) or status
  line (server side), at a line start or right after the hole; on the server side also at any
  `HTTP/1.` (a body without a final newline puts the next status line mid-line).
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
from typing import Any

from decoders.api import CLIENT, Decoder, DecoderContext, ts_seconds
from decoders.http_lines import line_state
from decoders.http_msg import Msg, Txn
from decoders.http_side import BODY, TUNNEL, WAIT, RequestSide, ResponseSide

ANOMALY_CAP = 16  # per anomaly name and flow: bad input is counted, not logged without end
PROBE_LIMIT = 8192
_LOSS = object()  # client-side loss marker in the pending queue


@dataclass(frozen=True, slots=True)
class HttpConfig:
    max_header: int = 64 * 1024
    max_headers: int = 500
    max_pending: int = 100
    max_decoded: int = 64 * 1024 * 1024
    max_replay: int = 8 * 1024 * 1024

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> HttpConfig:
        d = cls()
        max_header = max(1024, int(options.get("max_header_bytes", d.max_header)))
        return cls(
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
        self.queue: deque[Any] = deque()  # pending requests (Msg) and _LOSS markers
        self.npending = 0
        self.dropped = 0  # requests given up by the pending limit whose responses are due
        self.held: list[Txn] = []  # complete responses whose request body is still streaming
        self.deferred: list[Txn] = []  # produced during restore, emitted at the next call
        self.anomalies: dict[str, int] = {}
        self.replaying = False
        self.closed = False
        self.client = RequestSide(self)
        self.server = ResponseSide(self)

    # ---- plugin API
    def on_data(self, direction: int, data: bytes) -> None:
        side = self.client if direction == CLIENT else self.server
        n = len(data)
        if side.mode == BODY and n < side.body_left and not side.body_keep and not self.deferred:
            # Hot path, inside a Content-Length body (Side.data's BODY branch, inlined).
            if not n:
                return
            self.clock = clock = self.clock + 1
            start = side.end
            side.end = side.boundary = side.base = start + n
            side.body_left -= n
            side.arr = [[start, self.ctx.ts_ns, clock]]
            side.body_digest.feed(data)  # type: ignore[union-attr]
            return
        if self.closed or not n:
            return
        if self.deferred:
            self._flush_deferred()
        if side.mode == TUNNEL:
            # After CONNECT 2xx / 101 the flow speaks another protocol: hand it back to
            # detection (e.g. TLS inside the tunnel), with these bytes first.
            hand_off = getattr(self.ctx, "hand_off", None)
            if hand_off is not None:
                self.closed = True
                hand_off([(direction, bytes(data))])
                return
        self.clock += 1
        side.data(bytes(data), self.ctx.ts_ns, self.clock)

    def on_gap(self, direction: int, length: int) -> None:
        if self.closed:
            return
        if self.deferred:
            self._flush_deferred()
        self.clock += 1
        (self.client if direction == CLIENT else self.server).gap(int(length))

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
        self.closed = True

    # ---- used by the sides
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

    def push_request(self, msg: Msg) -> None:
        self.queue.append(msg)
        self.npending += 1
        if self.npending <= self.cfg.max_pending:
            return
        i = 0
        while self.queue[i] is _LOSS:
            i += 1
        oldest = self.queue[i]
        del self.queue[i]
        self.npending -= 1
        self.dropped += 1
        self.anomaly("http_pending_limit", f"more than {self.cfg.max_pending} pending requests")
        self.txn_done(Txn(oldest, None, {"pending_limit"}))
        self._released(oldest)

    def peek_framing(self) -> bytes:
        if not self.dropped:
            for e in self.queue:
                if e is not _LOSS:
                    return e.framing
        return b"GET"

    def pair(self, start_clock: int) -> tuple[Msg | None, set[str]]:
        """The request a response that began at `start_clock` answers (see module doc)."""
        if self.dropped:
            self.dropped -= 1
            return None, {"pending_limit"}
        q = self.queue
        while q and q[0] is _LOSS:
            nxt = next((e for e in q if e is not _LOSS), None)
            if nxt is None or nxt.clock > start_clock:
                return None, {"gap"}
            q.popleft()
        if not q:
            return None, set()
        self.npending -= 1
        return q.popleft(), set()

    def client_loss(self) -> None:
        if not self.queue or self.queue[-1] is not _LOSS:
            self.queue.append(_LOSS)

    def server_loss(self) -> None:
        self._flush_queue({"gap"})

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
        if self.replaying:  # only a restore that could not replay a body gets here
            self.deferred.append(txn)
        elif txn.req is not None and not txn.req.complete:
            self.held.append(txn)
        else:
            self._emit(txn)

    def switch(self, txn: Txn, kind: str) -> None:
        """CONNECT 2xx / 101: the flow leaves HTTP; later bytes are not parsed."""
        txn.tags.add(kind)
        self.txn_done(txn)
        for side in (self.client, self.server):
            side.to_tunnel()
        self._flush_queue(set())
        held, self.held = self.held, []
        for t in held:
            self._emit(t)

    # ---- internals
    def _released(self, req: Msg) -> None:
        """`req` got its response (or was given up): a client waiting on it may go on."""
        c = self.client
        if c.mode == WAIT and c.wait_rid == req.rid:
            c.resume_after_wait()

    def _flush_queue(self, tags: set[str]) -> None:
        flushed = [e for e in self.queue if e is not _LOSS]
        self.queue.clear()
        self.npending = 0
        self.dropped = 0
        for req in flushed:
            self.txn_done(Txn(req, None, tags))
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
        self.ctx.emit(
            "http",
            {
                "ts": ts_seconds(first.ts_ns),
                "client": flow.client.as_json(),
                "server": flow.server.as_json(),
                "trans_depth": self.depth,
                "request": req.record() if req is not None else None,
                "response": resp.record(txn.info) if resp is not None else None,
                "tags": txn.all_tags(),
            },
        )

    # ---- state
    def snapshot(self) -> Any:
        reqs: dict[int, Msg] = {}

        def keep(m: Msg | None) -> None:
            if m is not None:
                reqs[m.rid] = m

        for e in self.queue:
            if e is not _LOSS:
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
            "queue": [0 if e is _LOSS else e.rid for e in self.queue],
            "npending": self.npending,
            "dropped": self.dropped,
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
        self.queue = deque(_LOSS if r == 0 else reqs[r] for r in state["queue"])
        self.npending = state["npending"]
        self.dropped = state["dropped"]
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
