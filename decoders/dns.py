"""DNS decoder: one `dns` record per query/response pair, over UDP and TCP.

UDP: each datagram is one message. TCP: messages carry a 2-byte length prefix and may span
segments or share one. Queries wait for their response keyed by (transaction id, qname
case-folded, qtype); a response with no waiting query (mDNS multicast answers, a second copy
of a response) is emitted alone, and queries still waiting when the flow ends are emitted
unanswered. Messages are parsed by decoders/dns_msg.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wirestream.decoders.api import CLIENT, Decoder, DecoderContext, ts_seconds
from wirestream.decoders.dns_msg import (
    HEADER,
    Message,
    class_name,
    parse_message,
    plausible,
    rcode_name,
    type_name,
)

MAX_PENDING = 1000  # queries awaiting a response per flow; beyond, the oldest goes unanswered
ANOMALY_CAP = 16  # anomalies of one name per flow; the rest are only counted


class DnsDecoder(Decoder):
    name = "dns"
    transports = frozenset({"udp", "tcp"})
    ports = frozenset({53, 5353, 5355})
    # sections: parse the authority and additional records into the record (`authority`,
    # `additional`); off, they are skipped (the OPT record is read either way). Opt-in: on
    # DNSSEC-heavy traffic it doubles the decoder's cost (docs/tls-dns.md).
    option_defaults = {"sections": False}

    @classmethod
    def probe(cls, direction: int, data: bytes) -> bool | None:
        """A whole message (UDP) or a length-prefixed one (TCP) with a sane header and a
        well-formed first question; queries from the client, responses from the server."""
        is_client = direction == CLIENT
        if plausible(data, is_client, True):
            return True
        if len(data) < 2:
            return None
        n = int.from_bytes(data[:2], "big")
        if n < HEADER + 5:
            return False
        return plausible(data[2 : 2 + n], is_client, len(data) >= 2 + n)

    def __init__(self, ctx: DecoderContext, options: Mapping[str, Any]) -> None:
        super().__init__(ctx, options)
        self.sections = bool(options.get("sections", False))
        # key -> [ts_ns, trans_id, qname, qtype, qclass, flags, tags], in arrival order
        self.pending: dict[tuple[int, str | None, int | None], list[Any]] = {}
        self.bufs = [bytearray(), bytearray()]  # TCP: bytes of the message in progress
        self.dead = [False, False]  # TCP: framing lost to a gap, direction ignored
        self.gap = False
        self.anomalies: dict[str, int] = {}
        self._transport: str | None = None

    @property
    def transport(self) -> str:
        if self._transport is None:
            self._transport = self.ctx.flow.transport
        return self._transport

    # -- events --
    def on_data(self, direction: int, data: bytes) -> None:
        if self.transport == "udp":
            self._message(data)
            return
        if self.dead[direction]:
            return
        buf = self.bufs[direction]
        buf += data
        while len(buf) >= 2:
            n = (buf[0] << 8) | buf[1]
            if len(buf) < 2 + n:
                break
            message = bytes(buf[2 : 2 + n])
            del buf[: 2 + n]
            self._message(message)

    def on_gap(self, direction: int, length: int) -> None:
        self.gap = True
        if self.transport == "tcp":  # the length prefixes cannot be found again
            self.dead[direction] = True
            self.bufs[direction] = bytearray()

    def on_close(self, reason: str) -> None:
        if any(self.bufs):
            self._anomaly("dns_truncated", "flow ended inside a TCP message")
            self.bufs = [bytearray(), bytearray()]
        pending, self.pending = self.pending, {}
        for query in pending.values():
            self._emit(query, None, 0, ["gap"] if self.gap else [])

    # -- messages --
    def _message(self, data: bytes) -> None:
        try:
            msg = parse_message(data, self.sections)
        except Exception as exc:  # not even a header: nothing to record
            self._anomaly("dns_parse_error", str(exc))
            return
        tags = []
        if msg.error is not None:
            self._anomaly("dns_parse_error", f"id {msg.trans_id}: {msg.error}")
            tags.append("parse_error")
        if msg.answer_limit:
            tags.append("answer_limit")
        key = (msg.trans_id, msg.qname.lower() if msg.qname else None, msg.qtype)
        now = self.ctx.ts_ns
        if msg.is_response:
            query = self.pending.pop(key, None)
            self._emit(query, msg, now, tags)
            return
        earlier = self.pending.pop(key, None)
        if earlier is not None:  # asked again before any answer: the first went unanswered
            self._emit(earlier, None, 0, ["retransmitted"])
        self.pending[key] = [
            now,
            msg.trans_id,
            msg.qname,
            msg.qtype,
            msg.qclass,
            msg.flag_fields(),
            tags,
            msg.edns,
        ]
        if len(self.pending) > MAX_PENDING:
            oldest = next(iter(self.pending))
            self._emit(self.pending.pop(oldest), None, 0, ["pending_limit"])

    def _emit(self, query: list[Any] | None, resp: Message | None, resp_ts: int, tags: list[str]):
        tags = set(tags)
        if query is not None:
            q_ts, trans_id, qname, qtype, qclass, flags, q_tags = query[:7]
            q_edns = query[7] if len(query) > 7 else None  # (older snapshots: 7 fields)
            tags.update(q_tags)
        else:
            q_ts, trans_id, qname, qtype, qclass, flags = resp_ts, None, None, None, None, None
            q_edns = None
            tags.add("no_query")
        if resp is not None:
            trans_id = resp.trans_id
            if query is None:
                qname, qtype, qclass = resp.qname, resp.qtype, resp.qclass
            flags = resp.flag_fields()
        else:
            tags.add("unanswered")
        flow = self.ctx.flow
        self.ctx.emit(
            "dns",
            {
                "ts": ts_seconds(q_ts),
                "client": flow.client.as_json(),
                "server": flow.server.as_json(),
                "transport": self.transport,
                "trans_id": trans_id,
                "query": qname,
                "qtype": qtype,
                "qtype_name": type_name(qtype) if qtype is not None else None,
                "qclass": qclass,
                "rcode": resp.rcode if resp is not None else None,
                "rcode_name": rcode_name(resp.rcode) if resp is not None else None,
                "flags": flags,
                "answers": resp.answers if resp is not None else [],
                "rtt": (resp_ts // 1000 - q_ts // 1000) / 1_000_000
                if resp is not None and query is not None
                else None,
                "tags": sorted(tags),
                # issue 15: after the original fields, so those keep their bytes
                "qclass_name": class_name(qclass) if qclass is not None else None,
                "answer_types": [type_name(a["type"]) for a in resp.answers] if resp else [],
                "authority": (resp.authority if resp else []) if self.sections else None,
                "additional": (resp.additional if resp else []) if self.sections else None,
                "query_edns": q_edns,
                "response_edns": resp.edns if resp is not None else None,
                "section_error": resp.section_error if resp is not None else None,
            },
        )

    def _anomaly(self, name: str, detail: str) -> None:
        n = self.anomalies.get(name, 0) + 1
        self.anomalies[name] = n
        if n <= ANOMALY_CAP:
            self.ctx.anomaly(name, detail[:200])

    # -- state --
    def snapshot(self) -> Any:
        return {
            "v": 1,
            "pending": [[list(k), q] for k, q in self.pending.items()],
            "bufs": [bytes(b) for b in self.bufs],
            "dead": self.dead,
            "gap": self.gap,
            "anomalies": self.anomalies,
        }

    @classmethod
    def restore(cls, ctx: DecoderContext, options: Mapping[str, Any], state: Any) -> Decoder:
        d = cls(ctx, options)
        d.pending = {(k[0], k[1], k[2]): list(q) for k, q in state["pending"]}
        d.bufs = [bytearray(b) for b in state["bufs"]]
        d.dead = list(state["dead"])
        d.gap = state["gap"]
        d.anomalies = dict(state["anomalies"])
        return d
