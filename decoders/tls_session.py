"""The TLS handshake after the hellos, as far as it is visible: certificates sent in clear
(TLS <= 1.2), ChangeCipherSpec, plaintext alerts, the first encrypted records; and the
record fields they give (established, resumed, alerts, certificates) with the negotiated
parameters' names (version, cipher, ALPN, JA4S).

Sans-IO and pure state: the decoder (decoders/tls.py) feeds it handshake messages and
record-level events (decoders/tls_stream.py's EV_*) and asks `over` after each.

Definitions, as Zeek's SSL analyzer and base/protocols/ssl/main.zeek have them:
- established: a direction is encrypted from its ChangeCipherSpec on (or from its first
  application_data record: TLS 1.3 without the compatibility CCS); the handshake is
  established when an encrypted record comes while both directions are encrypted (TLS 1.2:
  the second Finished; TLS 1.3: the client's encrypted Finished).
- resumed: the ServerHello echoes the client's non-empty session id (TLS < 1.3), or the
  server accepts the client's pre_shared_key (TLS 1.3), or the client sends its
  ChangeCipherSpec after offering a session ticket without a ClientKeyExchange (ticket
  resumption, RFC 5077 3.1).
"""

from __future__ import annotations

from typing import Any

from wirestream.decoders.api import CLIENT, SERVER
from wirestream.decoders.tls_cert import parse_certificate_message
from wirestream.decoders.tls_names import alert_fields, cipher_name, version_name
from wirestream.decoders.tls_stream import EV_ALERT, EV_APPDATA, EV_CCS

HS_CERTIFICATE, HS_CLIENT_KEY_EXCHANGE = 11, 16
TLS13 = 0x0304


def _resumed_by_hellos(client: dict[str, Any], server: dict[str, Any]) -> bool:
    sid = client.get("session_id") or ""
    version = server.get("version", 0)
    if sid and sid.strip("0") and sid == server.get("session_id") and version < TLS13:
        return True
    return bool(client.get("psk") and server.get("psk"))


def alert_record(direction: int, level: int, description: int) -> dict[str, Any]:
    return {"from": "client" if direction == CLIENT else "server"} | alert_fields(
        level, description
    )


class Session:
    """From the final ServerHello until the handshake is over (`over`)."""

    __slots__ = (
        "alerts",
        "certs",
        "cke",
        "client",
        "enc",
        "established",
        "over",
        "resumed",
        "server",
    )

    def __init__(self, client: dict[str, Any] | None, server: dict[str, Any] | None) -> None:
        self.client = client or {}  # parse_client_hello_info's second value
        self.server = server or {}  # parse_server_hello_info's second value
        self.enc = [False, False]
        self.cke = False  # the client sent a ClientKeyExchange
        self.established = False
        self.resumed = _resumed_by_hellos(self.client, self.server)
        self.alerts: list[dict[str, Any]] = []
        self.certs: list[list[dict[str, Any]] | None] = [None, None]
        self.over = False

    def on_message(self, direction: int, mtype: int, body: bytes) -> None:
        """A plaintext handshake message after the hellos."""
        if mtype == HS_CLIENT_KEY_EXCHANGE and direction == CLIENT:
            self.cke = True
        elif (
            mtype == HS_CERTIFICATE
            and self.certs[direction] is None
            and self.server.get("version", 0) < TLS13
        ):
            try:
                self.certs[direction] = parse_certificate_message(body)
            except ValueError:
                self.certs[direction] = []

    def on_event(self, direction: int, event: int, data: bytes) -> None:
        """A record-level event (tls_stream.EV_*)."""
        if event == EV_CCS:
            self.enc[direction] = True
            if direction == CLIENT and self.client.get("ticket") and not self.cke:
                self.resumed = True
            return
        if event == EV_ALERT:
            self.alerts.append(alert_record(direction, data[0], data[1]))
            if data[0] == 2:  # fatal: the handshake is over
                self.over = True
            return
        if event == EV_APPDATA:
            self.enc[direction] = True
        if self.enc[CLIENT] and self.enc[SERVER]:  # an encrypted record, both sides encrypted
            self.established = True
            self.over = True

    # -- state --
    def to_state(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "server": self.server,
            "enc": self.enc,
            "cke": self.cke,
            "established": self.established,
            "resumed": self.resumed,
            "alerts": self.alerts,
            "certs": self.certs,
            "over": self.over,
        }

    @classmethod
    def from_state(cls, st: dict[str, Any]) -> Session:
        s = cls(st["client"], st["server"])
        s.enc = list(st["enc"])
        s.cke = st["cke"]
        s.established = st["established"]
        s.resumed = st["resumed"]
        s.alerts = list(st["alerts"])
        s.certs = [None if c is None else list(c) for c in st["certs"]]
        s.over = st["over"]
        return s


def session_fields(
    client: dict[str, Any] | None,
    server: dict[str, Any] | None,
    session: Session | None,
    early_alerts: list[dict[str, Any]],
) -> dict[str, Any]:
    """The tls record's issue-15 fields. `session`: None for a record emitted at pairing time
    (a HelloRetryRequest pair, a hello alone); `early_alerts`: plaintext alerts met before
    the hellos were over."""
    server = server or {}
    if session is None:
        established = False
        resumed = bool(client and server) and _resumed_by_hellos(client or {}, server)
        alerts = list(early_alerts)
        certs: list[list[dict[str, Any]] | None] = [None, None]
    else:
        established, resumed = session.established, session.resumed
        alerts = list(early_alerts) + session.alerts
        certs = session.certs
    version = server.get("version")
    cipher = server.get("cipher")
    return {
        "version": version_name(version) if version is not None else None,
        "cipher": cipher_name(cipher) if cipher is not None else None,
        "alpn": server.get("alpn"),
        "ja4s": server.get("ja4s"),
        "established": established,
        "resumed": resumed,
        "alerts": alerts,
        "server_certificates": certs[SERVER] or [],
        "client_certificates": certs[CLIENT] or [],
    }
