"""STARTTLS rules: for each protocol that upgrades a plaintext session to TLS in place (the
ones Zeek and tshark follow), how the client asks, how the server answers, where asking can no
longer happen, and the server ports the TLS decoder is attached to.

A rule is data plus two pure functions over one protocol unit (decoders/tls_starttls.py cuts
the units and does the bookkeeping shared by all rules): `client(unit)` says whether a client
unit is the TLS request, another command that gets exactly one final reply, something that
gets none, or a point after which TLS can no longer be asked for; `server(unit)` says whether
a server unit is a final reply (positive or not), an intermediate one, one that ends the
dialogue, or one no server of this protocol sends. The k-th counted command is answered by
the k-th final reply (k + 1 when the server's greeting is a final reply), which follows
pipelining clients without matching tags or ids.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# Client unit verdicts.
OTHER, COMMAND, REQUEST, GIVE_UP = 0, 1, 2, 3
# Server unit verdicts.
INTERIM, FINAL_OK, FINAL_NO, END, ALIEN = 0, 1, 2, 3, 4


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    ports: frozenset[int]
    client_units: str  # how client bytes are cut into units (decoders/tls_starttls.FRAMERS)
    server_units: str
    client: Callable[[bytes], int]
    server: Callable[[bytes], int]
    greeting: bool  # the server speaks first, and its greeting is final reply 1
    max_commands: int = 64  # counted commands before the request; past that, give up


def _verb(head: bytes) -> bytes:
    return head.strip().upper()


def _numeric_reply(head: bytes) -> int:
    """SMTP and FTP replies: "NNN text" (or "NNN") ends a reply, "NNN-text" continues it,
    other lines may sit inside an FTP multi-line reply. A 1yz reply is preliminary (RFC 959
    §4.2: "120 ready in nnn minutes" before the greeting, "150" before a transfer's end):
    the final reply comes after it."""
    if not head[:3].isdigit():
        return ALIEN
    if head[3:4] == b"-" or head[:1] == b"1":
        return INTERIM
    return FINAL_OK if head[:1] == b"2" else FINAL_NO


# -- SMTP --
_SMTP_TRANSACTION = (b"MAIL", b"RCPT", b"DATA", b"BDAT")


def smtp_client(head: bytes) -> int:
    """RFC 3207: "STARTTLS" on its own line. It must come before the mail transaction
    (MAIL, RCPT, DATA, BDAT), so any of those ends the search."""
    verb = _verb(head)
    if verb == b"STARTTLS":
        return REQUEST
    return GIVE_UP if verb.startswith(_SMTP_TRANSACTION) else COMMAND


# -- FTP --
_FTP_TLS = (b"AUTH TLS", b"AUTH SSL", b"AUTH TLS-C")
_FTP_TRANSFER = (b"RETR", b"STOR", b"STOU", b"APPE", b"LIST", b"NLST", b"MLSD")


def ftp_client(head: bytes) -> int:
    """RFC 4217 §4: "AUTH TLS" (and the older "AUTH SSL"), accepted with 234. It may follow a
    login, so the search ends only at the first file transfer or listing."""
    verb = _verb(head)
    if verb in _FTP_TLS:
        return REQUEST
    return GIVE_UP if verb.startswith(_FTP_TRANSFER) else COMMAND


# -- POP3 --
def pop3_client(head: bytes) -> int:
    """RFC 2595 §4: "STLS", only in the AUTHORIZATION state: a password (PASS, APOP) or a SASL
    exchange (AUTH, RFC 5034) ends the search."""
    verb = _verb(head)
    if verb == b"STLS":
        return REQUEST
    return GIVE_UP if verb.startswith((b"PASS", b"APOP", b"AUTH")) else COMMAND


def pop3_server(head: bytes) -> int:
    """Status lines "+OK" / "-ERR" end a reply; other lines are multi-line bodies (CAPA)."""
    if head.startswith(b"+OK"):
        return FINAL_OK
    return FINAL_NO if head.startswith(b"-ERR") else ALIEN


# -- IMAP --
def imap_client(head: bytes) -> int:
    """RFC 3501 §6.2.1 (RFC 9051 §6.2.1): "tag STARTTLS", only in the not-authenticated state:
    LOGIN or AUTHENTICATE ends the search."""
    words = head.split()
    verb = words[1].upper() if len(words) > 1 else b""
    if verb == b"STARTTLS":
        return REQUEST
    return GIVE_UP if verb in (b"LOGIN", b"AUTHENTICATE") else COMMAND


def imap_server(head: bytes) -> int:
    """Every command gets one tagged status ("tag OK" / "tag NO" / "tag BAD"); untagged
    ("* ...") and continuation ("+ ...") lines are interim. A PREAUTH greeting (already
    authenticated) or BYE ends the dialogue."""
    words = head.split()
    if not words:
        return ALIEN
    if words[0] == b"*":
        status = words[1].upper() if len(words) > 1 else b""
        return END if status in (b"PREAUTH", b"BYE") else INTERIM
    if words[0] == b"+":
        return INTERIM
    status = words[1].upper() if len(words) > 1 else b""
    if status == b"OK":
        return FINAL_OK
    return FINAL_NO if status in (b"NO", b"BAD") else ALIEN


# -- XMPP (units: tag names, "/" first for an end tag, "/" last for an empty element) --
_XMPP_AFTER_TLS = {b"auth", b"auth/", b"iq", b"message", b"presence"}


def xmpp_client(tag: bytes) -> int:
    """RFC 6120 §5.4.2: the element <starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/> (TLS
    starts after its end). SASL (<auth>) or stanzas (<iq>, <message>, <presence>) mean the
    stream went on without TLS."""
    if tag in (b"starttls/", b"/starttls"):
        return REQUEST
    return GIVE_UP if tag in _XMPP_AFTER_TLS else OTHER


def xmpp_server(tag: bytes) -> int:
    """<proceed/> accepts, <failure/> refuses (the server then closes the stream);
    a stream error ends the dialogue."""
    if tag in (b"proceed/", b"/proceed"):
        return FINAL_OK
    if tag in (b"failure/", b"/failure"):
        return FINAL_NO
    return END if tag == b"stream:error" else INTERIM


# -- LDAP (units: the head of one LDAPMessage's content, RFC 4511 §4.1.1) --
LDAP_STARTTLS_OID = b"1.3.6.1.4.1.1466.20037"
_LDAP_EXTENDED_REQUEST, _LDAP_EXTENDED_RESPONSE, _LDAP_UNBIND = 0x77, 0x78, 0x42


def _ldap_op(head: bytes) -> tuple[int, int, bytes] | None:
    """(messageID, protocolOp tag, what follows the tag) of an LDAPMessage's content."""
    if len(head) < 3 or head[0] != 0x02 or not 1 <= head[1] <= 4 or len(head) < head[1] + 3:
        return None
    n = head[1]
    return int.from_bytes(head[2 : 2 + n], "big"), head[2 + n], head[3 + n :]


def ldap_client(head: bytes) -> int:
    """RFC 4511 §4.14: an ExtendedRequest named 1.3.6.1.4.1.1466.20037; every extended request
    gets exactly one ExtendedResponse, so they are the counted commands. Unbind (or bytes that
    are not an LDAPMessage) ends the search."""
    op = _ldap_op(head)
    if op is None or op[1] == _LDAP_UNBIND:
        return GIVE_UP
    if op[1] != _LDAP_EXTENDED_REQUEST:
        return OTHER
    return REQUEST if LDAP_STARTTLS_OID in op[2] else COMMAND


def ldap_server(head: bytes) -> int:
    """The ExtendedResponse's resultCode: success (0) accepts. An unsolicited notification
    (messageID 0, e.g. Notice of Disconnection) or bytes that are not an LDAPMessage end it."""
    op = _ldap_op(head)
    if op is None:
        return END
    msgid, tag, rest = op
    if tag != _LDAP_EXTENDED_RESPONSE:
        return INTERIM
    if msgid == 0:
        return END
    skip = 1 if rest[:1] < b"\x80" else 1 + (rest[0] & 0x7F)  # the response's length
    result = rest[skip : skip + 3]
    return FINAL_OK if result == b"\x0a\x01\x00" else FINAL_NO


# -- PostgreSQL (client units: the 8-byte head of a startup-phase message; server: bytes) --
PG_SSL_REQUEST, PG_GSSENC_REQUEST = 80877103, 80877104


def postgres_client(head: bytes) -> int:
    """PostgreSQL protocol §55.2.10 (SSL Session Encryption): SSLRequest, an 8-byte message
    with code 80877103. A GSSENCRequest is answered by one byte like it; any other message
    (StartupMessage, CancelRequest) means the session goes on without TLS."""
    if len(head) < 8 or int.from_bytes(head[:4], "big") != 8:
        return GIVE_UP
    code = int.from_bytes(head[4:8], "big")
    if code == PG_SSL_REQUEST:
        return REQUEST
    return COMMAND if code == PG_GSSENC_REQUEST else GIVE_UP


def postgres_server(byte: bytes) -> int:
    """One byte: 'S' (TLS follows), 'N' (no). 'G' (GSSAPI encryption follows) or anything
    else (an ErrorResponse from an old server) ends the dialogue."""
    if byte == b"S":
        return FINAL_OK
    return FINAL_NO if byte == b"N" else END


RULES: tuple[Rule, ...] = (
    Rule("smtp", frozenset({25, 587}), "line", "line", smtp_client, _numeric_reply, True),
    Rule("imap", frozenset({143}), "line", "line", imap_client, imap_server, False),
    Rule("pop3", frozenset({110}), "line", "line", pop3_client, pop3_server, True),
    Rule("ftp", frozenset({21}), "line", "line", ftp_client, _numeric_reply, True),
    Rule("xmpp", frozenset({5222, 5269}), "xml", "xml", xmpp_client, xmpp_server, False),
    Rule("ldap", frozenset({389}), "ber", "ber", ldap_client, ldap_server, False),
    Rule("postgres", frozenset({5432}), "pg", "byte", postgres_client, postgres_server, False),
)
BY_NAME = {rule.name: rule for rule in RULES}
BY_PORT = {port: rule for rule in RULES for port in rule.ports}
PORTS = frozenset(BY_PORT)
