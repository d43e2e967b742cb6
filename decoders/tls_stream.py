"""One direction's TLS record layer -> handshake messages, across segment and record
boundaries (a ClientHello may be split over many segments and many records).

Lazy: a message is cut out only when asked for, so the decoder can stop at the hello and
never buffer the certificate chain behind it. Bounded: a record longer than TLS allows or a
handshake message over the cap ends the direction with an error. Each message carries the
capture time of the packet that delivered its first byte.
"""

from __future__ import annotations

from typing import Any

CT_CHANGE_CIPHER_SPEC, CT_ALERT, CT_HANDSHAKE, CT_APPLICATION_DATA = 20, 21, 22, 23
MAX_RECORD = (1 << 14) + 2048  # TLSCiphertext limit (RFC 8446 5.2)
MAX_HANDSHAKE = 64 * 1024  # buffered handshake bytes per direction before giving up

OK, END, ERROR = "", "end", "error"
# Record-level events `next_message` returns in place of a handshake type once `records` is
# set (after the hellos: decoders/tls.py's handshake phase).
EV_CCS, EV_ALERT, EV_ENCRYPTED, EV_APPDATA = -20, -21, -22, -23


def _add_mark(marks: list[list[int]], offset: int, ts_ns: int) -> None:
    """Bytes from `offset` on arrived at `ts_ns` (marks are [offset, ts] in offset order)."""
    if not marks or offset == 0:
        marks[:] = [[0, ts_ns]]
    elif marks[-1][1] != ts_ns:
        marks.append([offset, ts_ns])


def _drop(marks: list[list[int]], n: int, remaining: int) -> None:
    """`n` bytes were consumed from the front of a buffer now holding `remaining` bytes."""
    if not remaining:
        marks.clear()
        return
    kept: list[list[int]] = []
    for off, ts in marks:
        off -= n
        if off <= 0:
            kept = [[0, ts]]
        else:
            kept.append([off, ts])
    marks[:] = kept


class HandshakeReader:
    """Records -> handshake messages. Until `records` is set, a ChangeCipherSpec is skipped and
    an alert or application data ends the direction (the hellos are over; a plaintext alert
    is kept in `alerts`). Once set, those records come out as events (EV_*, with the alert's
    two bytes), and after this direction's ChangeCipherSpec handshake records are encrypted:
    EV_ENCRYPTED, never cut into messages."""

    __slots__ = (
        "alerts",
        "buf",
        "buf_marks",
        "ccs",
        "error",
        "hs",
        "hs_marks",
        "records",
        "status",
    )

    def __init__(self) -> None:
        self.buf = bytearray()  # record-layer bytes not yet cut into records
        self.buf_marks: list[list[int]] = []
        self.hs = bytearray()  # handshake-layer bytes not yet cut into messages
        self.hs_marks: list[list[int]] = []
        self.status = OK
        self.error: tuple[str, str] | None = None  # (anomaly name, detail) when status is ERROR
        self.records = False  # return record-level events (see the class doc)
        self.ccs = False  # this direction sent a ChangeCipherSpec
        self.alerts: list[list[int]] = []  # plaintext alerts met while `records` was unset

    def feed(self, data: bytes, ts_ns: int) -> None:
        if self.status or not data:
            return
        _add_mark(self.buf_marks, len(self.buf), ts_ns)
        self.buf += data

    def _fail(self, name: str, detail: str) -> None:
        self.status, self.error = ERROR, (name, detail)
        self.release()

    def release(self) -> None:
        self.buf, self.hs = bytearray(), bytearray()
        self.buf_marks, self.hs_marks = [], []

    def next_message(self) -> tuple[int, bytes, int] | None:
        """(handshake type, body, ts_ns) of the next complete message, or None (more bytes
        needed, or `status` says the direction is over)."""
        while not self.status:
            hs = self.hs
            if len(hs) >= 4:
                length = int.from_bytes(hs[1:4], "big")
                if length > MAX_HANDSHAKE:
                    self._fail("tls_buffer_limit", f"handshake message of {length} bytes")
                    return None
                if len(hs) >= 4 + length:
                    msg = (hs[0], bytes(hs[4 : 4 + length]), self.hs_marks[0][1])
                    del hs[: 4 + length]
                    _drop(self.hs_marks, 4 + length, len(hs))
                    return msg
            buf = self.buf
            if len(buf) < 5:
                return None
            ctype, major, length = buf[0], buf[1], int.from_bytes(buf[3:5], "big")
            if not CT_CHANGE_CIPHER_SPEC <= ctype <= CT_APPLICATION_DATA or major != 3:
                self._fail("tls_record_invalid", f"record header {bytes(buf[:5]).hex()}")
                return None
            if length > MAX_RECORD:
                self._fail("tls_record_invalid", f"record of {length} bytes")
                return None
            if len(buf) < 5 + length:
                return None
            ts = self.buf_marks[0][1]
            fragment = bytes(buf[5 : 5 + length])
            del buf[: 5 + length]
            _drop(self.buf_marks, 5 + length, len(buf))
            if self.records:
                event = self._event(ctype, fragment, ts)
                if event is not None:
                    return event
                continue
            if ctype == CT_HANDSHAKE:
                if fragment:
                    _add_mark(self.hs_marks, len(hs), ts)
                    hs += fragment
                    if len(hs) > MAX_HANDSHAKE + 4:
                        self._fail("tls_buffer_limit", f"{len(hs)} handshake bytes buffered")
            elif ctype == CT_CHANGE_CIPHER_SPEC:
                self.ccs = True
            else:  # alert or application data: hellos are over
                if ctype == CT_ALERT and len(fragment) == 2:
                    self.alerts.append([fragment[0], fragment[1]])
                self.status = END
                self.release()
        return None

    def _event(self, ctype: int, fragment: bytes, ts: int) -> tuple[int, bytes, int] | None:
        """One record after the hellos (`records` set): an event, or None when a handshake
        record's bytes only joined the message buffer."""
        if ctype == CT_HANDSHAKE and not self.ccs:
            if fragment:
                hs = self.hs
                _add_mark(self.hs_marks, len(hs), ts)
                hs += fragment
                if len(hs) > MAX_HANDSHAKE + 4:
                    self._fail("tls_buffer_limit", f"{len(hs)} handshake bytes buffered")
            return None
        if ctype == CT_CHANGE_CIPHER_SPEC:
            self.ccs = True
            return EV_CCS, b"", ts
        if ctype == CT_ALERT:
            # A plaintext alert is two bytes; an encrypted one carries at least a MAC or tag.
            return (EV_ALERT, fragment, ts) if len(fragment) == 2 else (EV_ENCRYPTED, b"", ts)
        if ctype == CT_APPLICATION_DATA:
            return EV_APPDATA, b"", ts
        return EV_ENCRYPTED, b"", ts

    def snapshot(self) -> list[Any]:
        return [
            bytes(self.buf),
            self.buf_marks,
            bytes(self.hs),
            self.hs_marks,
            self.status,
            list(self.error) if self.error else None,
            {"records": self.records, "ccs": self.ccs, "alerts": self.alerts},
        ]

    @classmethod
    def restore(cls, state: list[Any]) -> HandshakeReader:
        r = cls()
        buf, buf_marks, hs, hs_marks, r.status, error = state[:6]
        extra = state[6] if len(state) > 6 else {}  # (older snapshots: six fields)
        r.records = extra.get("records", False)
        r.ccs = extra.get("ccs", False)
        r.alerts = [list(a) for a in extra.get("alerts", [])]
        r.buf, r.hs = bytearray(buf), bytearray(hs)
        r.buf_marks = [list(m) for m in buf_marks]
        r.hs_marks = [list(m) for m in hs_marks]
        r.error = (error[0], error[1]) if error else None
        return r
