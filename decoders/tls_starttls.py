"""In-place TLS upgrades (STARTTLS and kin): find where TLS starts inside a plaintext session.

Content detection cannot see this TLS (the flow starts in plaintext), so the TLS decoder is
attached to the ports of decoders/tls_starttls_rules.py and follows the dialogue just enough,
with the rule of the server's port. One mechanism serves every rule: a framer per direction
cuts bytes into units (line heads, XML tags, LDAP or PostgreSQL message heads, single bytes),
the rule classifies each unit, and the k-th counted command is answered by the k-th final
reply (k + 1 after a greeting), so pipelined commands pair up. When the request's answer
accepts, the client bytes held since the request and the server bytes after the answer are
both TLS. A refusal replays the held client bytes as plaintext.

Memory is bounded: units keep a short head, message bodies are skipped by count, the bytes
held after a request are capped, and the dialogue is given up at the rule's point of no
return, after `max_commands` commands, or after MAX_SCAN plaintext bytes in one direction.
"""

from __future__ import annotations

from typing import Any

from wirestream.decoders.api import CLIENT, SERVER
from wirestream.decoders.tls_starttls_rules import (
    ALIEN,
    BY_NAME,
    COMMAND,
    END,
    FINAL_NO,
    FINAL_OK,
    GIVE_UP,
    REQUEST,
    Rule,
)

HEAD = 32  # bytes kept of a line or tag in progress: a tag and a verb, a reply code
BER_HEAD = 64  # bytes kept of an LDAP message's content: id, operation, the StartTLS OID
MAX_PENDING = 64 * 1024  # client bytes held between the request and its answer
MAX_SCAN = 256 * 1024  # plaintext bytes looked at per direction before giving up

SCANNING, ABANDONED, UNANSWERED = 0, 1, 2  # UNANSWERED: given up, a request never answered


class Lines:
    """Units: the first HEAD bytes of each line (CRLF or LF ended)."""

    __slots__ = ("head",)

    def __init__(self) -> None:
        self.head = b""

    def next(self, data: bytes, pos: int) -> tuple[bytes | None, int]:
        nl = data.find(b"\n", pos)
        if nl < 0:
            self.head = (self.head + data[pos : pos + HEAD])[:HEAD]
            return None, len(data)
        unit = (self.head + data[pos : min(nl, pos + HEAD)])[:HEAD]
        self.head = b""
        return unit, nl + 1

    def snapshot(self) -> list[Any]:
        return [self.head]

    def restore(self, state: list[Any]) -> None:
        self.head = bytes(state[0])


class XmlTags:
    """Units: one per tag, its name, with "/" first for an end tag and "/" last for an empty
    element ("starttls/", "/proceed"). Text between tags is skipped."""

    __slots__ = ("head", "in_tag", "last")

    def __init__(self) -> None:
        self.in_tag = False
        self.head = b""  # the tag's first bytes
        self.last = b""  # the tag's last byte so far (is it "/>"?)

    def next(self, data: bytes, pos: int) -> tuple[bytes | None, int]:
        if not self.in_tag:
            lt = data.find(b"<", pos)
            if lt < 0:
                return None, len(data)
            self.in_tag, self.head, self.last, pos = True, b"", b"", lt + 1
        gt = data.find(b">", pos)
        if gt < 0:
            self.head = (self.head + data[pos : pos + HEAD])[:HEAD]
            self.last = data[-1:] if len(data) > pos else self.last
            return None, len(data)
        head = (self.head + data[pos : min(gt, pos + HEAD)])[:HEAD]
        empty = (data[gt - 1 : gt] if gt > pos else self.last) == b"/"
        words = head.split()
        name = words[0].rstrip(b"/") if words else b""
        self.in_tag, self.head, self.last = False, b"", b""
        return name + (b"/" if empty and not name.startswith(b"/") else b""), gt + 1

    def snapshot(self) -> list[Any]:
        return [self.in_tag, self.head, self.last]

    def restore(self, state: list[Any]) -> None:
        self.in_tag, self.head, self.last = state[0], bytes(state[1]), bytes(state[2])


class BerMessages:
    """Units: the first BER_HEAD bytes of the content of each LDAPMessage (a BER SEQUENCE with
    a definite length, RFC 4511 §5.1), when the message is complete; the rest is skipped by
    count. Bytes that are not a SEQUENCE header give the unit b"" (the rule gives up)."""

    __slots__ = ("head", "header", "need")

    def __init__(self) -> None:
        self.header = b""  # tag and length bytes so far
        self.head = b""
        self.need = -1  # content bytes still to come; -1 while reading the header

    def next(self, data: bytes, pos: int) -> tuple[bytes | None, int]:
        end = len(data)
        while pos < end:
            if self.need < 0:
                self.header += data[pos : pos + 1]
                pos += 1
                length = self._length()
                if length is None:
                    continue
                if length < 0:
                    self.header = b""
                    return b"", pos
                self.need = length
            take = min(self.need, end - pos)
            room = BER_HEAD - len(self.head)
            if room > 0:
                self.head += data[pos : pos + min(take, room)]
            self.need -= take
            pos += take
            if self.need == 0:
                unit, self.header, self.head, self.need = self.head, b"", b"", -1
                return unit, pos
        return None, pos

    def _length(self) -> int | None:
        """The content length once the header is complete; None: need more; -1: not BER."""
        h = self.header
        if h[0] != 0x30:
            return -1
        if len(h) < 2:
            return None
        if h[1] < 0x80:
            return h[1]
        n = h[1] & 0x7F
        if not 1 <= n <= 4:
            return -1
        return int.from_bytes(h[2 : 2 + n], "big") if len(h) == 2 + n else None

    def snapshot(self) -> list[Any]:
        return [self.header, self.head, self.need]

    def restore(self, state: list[Any]) -> None:
        self.header, self.head, self.need = bytes(state[0]), bytes(state[1]), state[2]


class PgMessages:
    """Units: the 8-byte head (length, code) of each PostgreSQL startup-phase message, whose
    Int32 length counts itself; the rest is skipped by count."""

    __slots__ = ("head", "need")

    def __init__(self) -> None:
        self.head = b""
        self.need = 0  # body bytes still to skip

    def next(self, data: bytes, pos: int) -> tuple[bytes | None, int]:
        if self.need:
            take = min(self.need, len(data) - pos)
            self.need -= take
            pos += take
            if self.need:
                return None, pos
        take = 8 - len(self.head)
        self.head += data[pos : pos + take]
        pos = min(pos + take, len(data))
        if len(self.head) < 8:
            return None, pos
        unit, self.head = self.head, b""
        self.need = max(int.from_bytes(unit[:4], "big") - 8, 0)
        return unit, pos

    def snapshot(self) -> list[Any]:
        return [self.head, self.need]

    def restore(self, state: list[Any]) -> None:
        self.head, self.need = bytes(state[0]), state[1]


class Bytes:
    """Units: single bytes (PostgreSQL's one-byte answers)."""

    __slots__ = ()

    def next(self, data: bytes, pos: int) -> tuple[bytes | None, int]:
        if pos >= len(data):
            return None, pos
        return data[pos : pos + 1], pos + 1

    def snapshot(self) -> list[Any]:
        return []

    def restore(self, state: list[Any]) -> None:
        pass


FRAMERS = {"line": Lines, "xml": XmlTags, "ber": BerMessages, "pg": PgMessages, "byte": Bytes}


class StartTls:
    """Follows one plaintext dialogue under `rule` until TLS starts or it is given up."""

    __slots__ = (
        "commands",
        "finals",
        "framers",
        "pending",
        "request_at",
        "rule",
        "scanned",
        "server_units",
        "state",
    )

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.framers = [FRAMERS[rule.client_units](), FRAMERS[rule.server_units]()]
        self.commands = 0  # counted client commands
        self.finals = 0  # final server replies
        self.server_units = 0
        self.request_at = 0  # command number of the TLS request, 0 while none is outstanding
        self.pending = b""  # client bytes after the request, waiting for the answer
        self.scanned = [0, 0]
        self.state = SCANNING

    @property
    def abandoned(self) -> bool:
        return self.state != SCANNING

    @property
    def unanswered(self) -> bool:
        """Given up with a request outstanding and MAX_PENDING client bytes behind it: odd
        (a client does not send that much before the server answers), worth an anomaly."""
        return self.state == UNANSWERED

    def feed(self, direction: int, data: bytes) -> tuple[bytes, bytes] | None:
        """None while plaintext; (client TLS bytes, server TLS bytes) when TLS starts."""
        if self.state != SCANNING:
            return None
        self.scanned[direction] += len(data)
        if self.scanned[direction] > MAX_SCAN:
            self.state = ABANDONED
            return None
        if direction == CLIENT:
            self._client(data)
            return None
        return self._server(data)

    def _client(self, data: bytes) -> None:
        if self.request_at:
            self.pending += data
            if len(self.pending) > MAX_PENDING:
                self.state = UNANSWERED
            return
        framer, rule, pos = self.framers[CLIENT], self.rule, 0
        while self.state == SCANNING:
            unit, pos = framer.next(data, pos)
            if unit is None:
                return
            verdict = rule.client(unit)
            if verdict == GIVE_UP:
                self.state = ABANDONED
                return
            if verdict in (REQUEST, COMMAND):
                self.commands += 1
            if verdict == REQUEST:
                self.request_at = self.commands
                self.pending = data[pos:]
                return
            if self.commands > rule.max_commands:
                self.state = ABANDONED

    def _server(self, data: bytes) -> tuple[bytes, bytes] | None:
        framer, rule, pos = self.framers[SERVER], self.rule, 0
        while self.state == SCANNING:
            unit, pos = framer.next(data, pos)
            if unit is None:
                return None
            verdict = rule.server(unit)
            self.server_units += 1
            if verdict == END or (verdict == ALIEN and self.server_units == 1):
                self.state = ABANDONED  # not this protocol, or no TLS can follow
                return None
            if verdict not in (FINAL_OK, FINAL_NO):
                continue
            self.finals += 1
            if self.request_at and self.finals == self.request_at + rule.greeting:
                if verdict == FINAL_OK:
                    return self.pending, data[pos:]
                pending, self.pending, self.request_at = self.pending, b"", 0
                self._client(pending)  # refused: what followed the request is plaintext
        return None

    def snapshot(self) -> dict[str, Any]:
        return {
            "rule": self.rule.name,
            "commands": self.commands,
            "finals": self.finals,
            "server_units": self.server_units,
            "request_at": self.request_at,
            "pending": self.pending,
            "scanned": self.scanned,
            "state": self.state,
            "framers": [f.snapshot() for f in self.framers],
        }

    @classmethod
    def restore(cls, state: dict[str, Any]) -> StartTls:
        s = cls(BY_NAME[state["rule"]])
        s.commands, s.finals = state["commands"], state["finals"]
        s.server_units, s.request_at = state["server_units"], state["request_at"]
        s.pending, s.scanned = bytes(state["pending"]), list(state["scanned"])
        s.state = state["state"]
        for framer, fs in zip(s.framers, state["framers"], strict=True):
            framer.restore(fs)
        return s


def from_smtp_v1(state: list[Any]) -> StartTls:
    """The SMTP-only dialogue of TLS decoder snapshots "v": 1 ([commands, final replies,
    command number of STARTTLS, line heads, held client bytes, state]), so that flows saved
    by the previous version go on after an upgrade."""
    s = StartTls(BY_NAME["smtp"])
    s.commands, s.finals, s.request_at, heads, pending, s.state = state
    s.server_units = s.finals
    s.pending = bytes(pending)
    for framer, head in zip(s.framers, heads, strict=True):
        framer.restore([head])
    return s
