"""SMTP STARTTLS (RFC 3207): find where TLS starts inside a plaintext SMTP session.

Content detection cannot see this TLS (the flow starts with "220 ..."), so the TLS decoder
is attached to SMTP ports and follows the command/reply dialogue just enough: every client
line is one command and gets exactly one final reply line ("NNN " or "NNN"), the greeting
being reply 1, so the reply to command k is final reply k + 1 even if the client pipelines.
After STARTTLS's 2xx reply both directions are TLS. Only line heads are kept (bounded); the
dialogue is abandoned at the first mail transaction command (STARTTLS must come before it).
"""

from __future__ import annotations

from typing import Any

from decoders.api import CLIENT

SMTP_PORTS = frozenset({25, 587})
HEAD = 16  # bytes kept of a line in progress: enough for a verb or a reply code
MAX_COMMANDS = 64  # commands scanned before STARTTLS; past that, give up
MAX_PENDING = 64 * 1024  # client bytes held between STARTTLS and its reply
_TRANSACTION = (b"MAIL", b"RCPT", b"DATA", b"BDAT")

SCANNING, ABANDONED = 0, 1


class SmtpStartTls:
    __slots__ = ("cmds", "heads", "pending", "replies", "starttls_at", "state")

    def __init__(self) -> None:
        self.cmds = 0
        self.replies = 0
        self.starttls_at = 0  # command number of STARTTLS, 0 while none is outstanding
        self.heads = [b"", b""]  # head of the line in progress, per direction
        self.pending = b""  # client bytes after STARTTLS, waiting for the reply
        self.state = SCANNING

    @property
    def abandoned(self) -> bool:
        return self.state == ABANDONED

    def feed(self, direction: int, data: bytes) -> tuple[bytes, bytes] | None:
        """None while plaintext; (client TLS bytes, server TLS bytes) when TLS starts."""
        if self.state == ABANDONED:
            return None
        if direction == CLIENT:
            self._client(data)
            return None
        return self._server(data)

    def _lines(self, direction: int, data: bytes, pos: int) -> tuple[bytes | None, int]:
        """The next complete line's head and the offset after it, or (None, len)."""
        nl = data.find(b"\n", pos)
        if nl < 0:
            self.heads[direction] = (self.heads[direction] + data[pos : pos + HEAD])[:HEAD]
            return None, len(data)
        head = (self.heads[direction] + data[pos : min(nl, pos + HEAD)])[:HEAD]
        self.heads[direction] = b""
        return head, nl + 1

    def _client(self, data: bytes) -> None:
        if self.starttls_at:
            self.pending += data
            if len(self.pending) > MAX_PENDING:
                self.state = ABANDONED
            return
        pos = 0
        while self.state == SCANNING:
            head, pos = self._lines(CLIENT, data, pos)
            if head is None:
                return
            self.cmds += 1
            verb = head.strip().upper()
            if verb == b"STARTTLS":
                self.starttls_at = self.cmds
                self.pending = data[pos:]
                return
            if verb.startswith(_TRANSACTION) or self.cmds > MAX_COMMANDS:
                self.state = ABANDONED

    def _server(self, data: bytes) -> tuple[bytes, bytes] | None:
        pos = 0
        while self.state == SCANNING:
            head, pos = self._lines(1 - CLIENT, data, pos)
            if head is None:
                return None
            if not head[:3].isdigit():
                if self.replies == 0:  # the greeting is not SMTP
                    self.state = ABANDONED
                continue
            if head[3:4] == b"-":
                continue
            self.replies += 1
            if self.starttls_at and self.replies == self.starttls_at + 1:
                if head[:1] == b"2":
                    return self.pending, data[pos:]
                pending, self.pending, self.starttls_at = self.pending, b"", 0
                self._client(pending)  # refused: what followed STARTTLS is plaintext again
        return None

    def snapshot(self) -> list[Any]:
        return [self.cmds, self.replies, self.starttls_at, self.heads, self.pending, self.state]

    @classmethod
    def restore(cls, state: list[Any]) -> SmtpStartTls:
        s = cls()
        s.cmds, s.replies, s.starttls_at, heads, s.pending, s.state = state
        s.heads = [bytes(h) for h in heads]
        s.pending = bytes(s.pending)
        return s
