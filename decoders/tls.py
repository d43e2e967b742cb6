"""TLS decoder: one `tls` record per ClientHello/ServerHello pair, with JA3, JA3S and JA4.

Found by content on any TCP port (a handshake record header: `looks_like_hello`), and
attached by port to the protocols that upgrade to TLS in place (SMTP, IMAP, POP3, FTP, XMPP,
LDAP, PostgreSQL: decoders/tls_starttls_rules.py) to follow their STARTTLS dialogue
(decoders/tls_starttls.py). Each direction's records are reassembled into handshake messages
(decoders/tls_stream.py); hello bodies become record fields in decoders/tls_hello.py.

Pairing: hellos pair in order. A ServerHello that is a HelloRetryRequest closes its pair and
parsing goes on for the second ClientHello and its ServerHello (a second record); any other
ServerHello ends the hellos. A hello whose partner can no longer come (that direction hit an
alert, application data, a gap, a parse error or the flow's end) is emitted alone with the
other side null.

After the final ServerHello the record is held while the rest of the handshake is followed
(decoders/tls_session.py: certificates in clear, ChangeCipherSpec, alerts, the first
encrypted records) until it is established, a fatal alert comes, both directions are over
or the flow ends; then it is emitted and the rest of the flow is ignored at the cost of one
test per segment. The fields the hellos gave are fixed when the pair forms (tags included),
so following the handshake only adds fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wirestream.decoders.api import CLIENT, SERVER, Decoder, DecoderContext, ts_seconds
from wirestream.decoders.tls_hello import parse_client_hello_info, parse_server_hello_info
from wirestream.decoders.tls_session import Session, alert_record, session_fields
from wirestream.decoders.tls_starttls import StartTls, from_smtp_v1
from wirestream.decoders.tls_starttls_rules import BY_PORT, PORTS
from wirestream.decoders.tls_stream import ERROR, HandshakeReader

HS_CLIENT_HELLO, HS_SERVER_HELLO, HS_HELLO_REQUEST = 1, 2, 0
UNDECIDED, TLS, PLAIN, OFF = 0, 1, 2, 3  # PLAIN: following a dialogue up to STARTTLS


def looks_like_hello(direction: int, data: bytes) -> bool | None:
    """TLS from the first record-header bytes: a handshake record (type 22) of version 3.x
    (x <= 4), as Zeek's DPD signature starts and Suricata's pattern matches, so three bytes
    are enough (a tunnel's short first segment, a record whose length or body is odd). The
    handshake type, once seen, only tells the direction: the other side's hello (a
    ServerHello from the client, a ClientHello from the server) is not this direction's
    TLS, which lets the probes tell a midstream flow's roles. None while undecidable."""
    n = len(data)
    if n >= 1 and data[0] != 22:
        return False
    if n >= 2 and data[1] != 3:
        return False
    if n >= 3 and data[2] > 4:
        return False
    if n < 3:
        return None
    other_hello = HS_SERVER_HELLO if direction == CLIENT else HS_CLIENT_HELLO
    return n < 6 or data[5] != other_hello


class TlsDecoder(Decoder):
    name = "tls"
    transports = frozenset({"tcp"})
    ports = PORTS  # STARTTLS: the flow starts in plaintext, content detection cannot tell

    @classmethod
    def probe(cls, direction: int, data: bytes) -> bool | None:
        return looks_like_hello(direction, data)

    def __init__(self, ctx: DecoderContext, options: Mapping[str, Any]) -> None:
        super().__init__(ctx, options)
        self.mode = UNDECIDED
        self.readers = [HandshakeReader(), HandshakeReader()]
        self.upgrade: StartTls | None = None
        # Hellos waiting for their partner: [ts_ns, fields or None (unparsable), tags, info
        # (tls_hello's *_info second value, or None)].
        self.hellos: list[list[list[Any]]] = [[], []]
        # After the final ServerHello: the record's fields so far, and the handshake followed.
        self.held: dict[str, Any] | None = None
        self.session: Session | None = None
        self.done = [False, False]  # the direction can bring no more hellos
        self.finished = False
        self.tags: list[str] = []  # flow-level tags, on every record of the flow

    # -- events --
    def on_data(self, direction: int, data: bytes) -> None:
        if self.finished or self.mode == OFF:
            return
        if self.mode == UNDECIDED:
            if not data:
                return
            if self.ctx.flow.transport != "tcp":
                self.mode = OFF
            elif data[0] == 22:  # a handshake record (what the probe saw, or implicit TLS)
                self.mode = TLS
            elif self.ctx.flow.server.port in BY_PORT:
                self.mode, self.upgrade = PLAIN, StartTls(BY_PORT[self.ctx.flow.server.port])
            else:
                self.mode = OFF
            if self.mode == OFF:
                return
        if self.mode == PLAIN:
            self._plain(direction, data)
        else:
            self._feed(direction, data)

    def on_gap(self, direction: int, length: int) -> None:
        if self.finished or self.mode in (UNDECIDED, OFF):
            return
        if self.mode == PLAIN:  # the dialogue cannot be followed across a hole
            self.mode, self.upgrade = OFF, None
            return
        if not self.done[direction]:
            if self.session is None:
                self._tag("gap")
            self._end(direction)
            self._settle()

    def on_close(self, reason: str) -> None:
        if self.mode == TLS and not self.finished:
            self._end(CLIENT)
            self._end(SERVER)
            self._settle()

    # -- parsing --
    def _plain(self, direction: int, data: bytes) -> None:
        assert self.upgrade is not None
        switched = self.upgrade.feed(direction, data)
        if self.upgrade.abandoned:
            if self.upgrade.unanswered:
                rule = self.upgrade.rule.name
                self.ctx.anomaly("tls_starttls_unanswered", f"{rule}: no answer to the request")
            self.mode, self.upgrade = OFF, None
        elif switched is not None:
            self.mode, self.upgrade = TLS, None
            self._tag("starttls")
            self._feed(CLIENT, switched[0])
            self._feed(SERVER, switched[1])

    def _feed(self, direction: int, data: bytes) -> None:
        if self.done[direction] or self.finished:
            return
        self.readers[direction].feed(data, self.ctx.ts_ns)
        if self.session is None:
            self._hellos(direction)
        if self.session is not None:
            # Both directions: bytes behind the final ServerHello wait in the readers.
            self._follow(direction)
            self._follow(1 - direction)
            self._settle()

    def _follow(self, direction: int) -> None:
        """The handshake after the hellos (tls_session.py). A broken record layer ends the
        direction quietly: the hello fields are out, nothing else depends on it."""
        reader = self.readers[direction]
        while self.session is not None and not self.done[direction] and not self.session.over:
            msg = reader.next_message()
            if msg is None:
                if reader.status:
                    self._end(direction)
                return
            mtype, body, _ts = msg
            if mtype < 0:
                self.session.on_event(direction, mtype, body)
            else:
                self.session.on_message(direction, mtype, body)

    def _hellos(self, direction: int) -> None:
        reader = self.readers[direction]
        want = HS_CLIENT_HELLO if direction == CLIENT else HS_SERVER_HELLO
        while not self.finished and not self.done[direction] and self.session is None:
            msg = reader.next_message()
            if msg is None:
                if reader.status:
                    if reader.status == ERROR and reader.error:
                        self._tag(reader.error[0].removeprefix("tls_"))
                        self.ctx.anomaly(*reader.error)
                    self._end(direction)
                break
            mtype, body, ts_ns = msg
            if mtype == want:
                self.hellos[direction].append(self._parse(direction, body, ts_ns))
            elif not (mtype == HS_HELLO_REQUEST and direction == SERVER):
                self.ctx.anomaly("tls_unexpected_handshake", f"type {mtype} before the hello")
                self._end(direction)
            self._settle()
        self._settle()

    def _parse(self, direction: int, body: bytes, ts_ns: int) -> list[Any]:
        parse = parse_client_hello_info if direction == CLIENT else parse_server_hello_info
        try:
            fields, info = parse(body)
            return [ts_ns, fields, [], info]
        except Exception as exc:  # malformed hello: never let it out, say so in the record
            what = "client_hello" if direction == CLIENT else "server_hello"
            self.ctx.anomaly("tls_parse_error", f"{what}: {type(exc).__name__}: {exc}"[:200])
            return [ts_ns, None, ["parse_error"], None]

    def _end(self, direction: int) -> None:
        self.done[direction] = True
        self.readers[direction].release()

    def _tag(self, tag: str) -> None:
        if tag not in self.tags:
            self.tags.append(tag)

    # -- records --
    def _settle(self) -> None:
        clients, servers = self.hellos
        while not self.finished and self.session is None:
            if clients and servers:
                self._emit(clients.pop(0), servers.pop(0))
            elif servers and self.done[CLIENT]:
                self._emit(None, servers.pop(0))
            elif clients and self.done[SERVER]:
                self._emit(clients.pop(0), None)
            else:
                break
        if self.session is not None:
            if self.session.over or (self.done[CLIENT] and self.done[SERVER]):
                self._emit_held()
            return
        if self.done[CLIENT] and self.done[SERVER]:
            self.finished = True

    def _early_alerts(self) -> list[dict[str, Any]]:
        """Plaintext alerts that ended a direction before the hellos were over."""
        return [
            alert_record(d, level, desc)
            for d in (CLIENT, SERVER)
            for level, desc in self.readers[d].alerts
        ]

    def _emit(self, ch: list[Any] | None, sh: list[Any] | None) -> None:
        tags = set(self.tags)
        for hello in (ch, sh):
            if hello is not None:
                tags.update(hello[2])
        flow = self.ctx.flow
        fields = {
            "ts": ts_seconds((ch or sh)[0]),  # type: ignore[index]
            "client": flow.client.as_json(),
            "server": flow.server.as_json(),
            "client_hello": ch[1] if ch else None,
            "server_hello": sh[1] if sh else None,
            "tags": sorted(tags),
        }
        c_info = ch[3] if ch and len(ch) > 3 else None
        s_info = sh[3] if sh and len(sh) > 3 else None
        if sh is not None and not (sh[1] is not None and sh[1]["hello_retry_request"]):
            # The final ServerHello: hold the record and follow the handshake.
            fields["info"] = [c_info, s_info]
            self.held = fields
            self.session = Session(c_info, s_info)
            for reader in self.readers:
                reader.records = True
            return
        fields.update(session_fields(c_info, s_info, None, self._early_alerts()))
        self.ctx.emit("tls", fields)

    def _emit_held(self) -> None:
        fields, session = self.held, self.session
        assert fields is not None and session is not None
        c_info, s_info = fields.pop("info")
        fields.update(session_fields(c_info, s_info, session, self._early_alerts()))
        self.held = self.session = None
        self.finished = True
        self.readers = [HandshakeReader(), HandshakeReader()]
        self.ctx.emit("tls", fields)

    # -- state --
    def snapshot(self) -> Any:
        return {
            "v": 2,
            "mode": self.mode,
            "readers": [r.snapshot() for r in self.readers],
            "upgrade": self.upgrade.snapshot() if self.upgrade else None,
            "hellos": self.hellos,
            "done": self.done,
            "finished": self.finished,
            "tags": self.tags,
            "held": self.held,
            "session": self.session.to_state() if self.session is not None else None,
        }

    @classmethod
    def restore(cls, ctx: DecoderContext, options: Mapping[str, Any], state: Any) -> Decoder:
        d = cls(ctx, options)
        d.mode = state["mode"]
        d.readers = [HandshakeReader.restore(r) for r in state["readers"]]
        if state["v"] == 1:  # SMTP-only STARTTLS state
            d.upgrade = from_smtp_v1(state["smtp"]) if state["smtp"] else None
        else:
            d.upgrade = StartTls.restore(state["upgrade"]) if state["upgrade"] else None
        d.hellos = [[list(h) for h in side] for side in state["hellos"]]
        d.done = list(state["done"])
        d.finished = state["finished"]
        d.tags = list(state["tags"])
        d.held = state.get("held")
        st = state.get("session")
        d.session = Session.from_state(st) if st is not None else None
        return d
