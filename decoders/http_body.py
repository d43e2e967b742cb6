"""Incremental body digests: length + sha256 of the (de-chunked) body, and of its decoded form
where Content-Encoding is gzip / x-gzip / deflate.

Bodies are never stored: bytes are hashed as they pass, and decompression runs in bounded
pieces (at most PIECE bytes of output exist at a time), with the total decoded size capped so
a small compressed body cannot inflate without bound (tag `decompression_limit`; the decoded
hash then covers exactly the first `max_decoded` bytes).

Gaps (`skip`) are counted as `missed_bytes`; the raw hash covers only the delivered bytes,
and decoding stops at the first gap (an inflater cannot resume across a hole), so the decoded
fields then cover the bytes decoded before it.

An identity body's digest can be saved and loaded (`save()` / `load()`): its bytes are collected
in pieces and hashed FLUSH bytes at a time with a resumable SHA-256, so a snapshot of a body in
progress costs a few dozen bytes instead of the body itself. A decoded body's inflater state
cannot be saved (zlib), so those are rebuilt by replaying their bytes.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

from reassembly import sha256 as _sha256
from reassembly.sha256 import EMPTY_SHA256, ResumableSha256

PIECE = 64 * 1024
FLUSH = 64 * 1024  # identity body bytes collected before they are hashed in one call
# Resumable hashing needs libcrypto's SHA-256 (the pure-Python fallback is far too slow for
# bodies); without it identity digests are replayed like decoded ones.
RESUMABLE = getattr(_sha256, "_LIB", None) is not None
SUPPORTED_CODINGS = frozenset({"gzip", "x-gzip", "deflate"})
_GZIP_MAGIC = b"\x1f\x8b"


def content_codings(headers: Iterable[tuple[bytes, bytes]]) -> list[str] | None:
    """The decoding steps for a message's Content-Encoding headers, in the order to apply them
    (reverse of the order they were applied by the sender), identity dropped. None when there
    is nothing to decode or a coding is unsupported (e.g. br)."""
    codings: list[str] = []
    for name, value in headers:
        if name.lower() != b"content-encoding":
            continue
        for part in value.split(b","):
            c = part.strip().lower().decode("latin-1")
            if c and c != "identity":
                codings.append(c)
    if not codings or any(c not in SUPPORTED_CODINGS for c in codings):
        return None
    codings.reverse()
    return codings


class _Inflater:
    """One decoding step. gzip may hold several members; deflate may be zlib-wrapped (RFC 9110)
    or raw (what many servers send): detected from the first two bytes."""

    __slots__ = ("_gzip", "_head", "_z", "done", "error", "produced")

    def __init__(self, coding: str) -> None:
        self._gzip = coding != "deflate"
        self._z: Any = zlib.decompressobj(31) if self._gzip else None
        self._head = b""
        self.done = False
        self.error = False
        self.produced = 0

    def process(self, data: bytes) -> Iterator[bytes]:
        if self.done or self.error:
            return
        if self._z is None:
            self._head += data
            if len(self._head) < 2:
                return
            data, self._head = self._head, b""
            cmf, flg = data[0], data[1]
            zlib_wrapped = (cmf & 0x0F) == 8 and (cmf >> 4) <= 7 and ((cmf << 8) | flg) % 31 == 0
            self._z = zlib.decompressobj(15 if zlib_wrapped else -15)
        z = self._z
        more = True
        while more:
            try:
                out = z.decompress(data, PIECE)
            except zlib.error:
                self.error = True
                return
            data = z.unconsumed_tail
            if out:
                yield out
            if z.eof:
                rest = z.unused_data
                if self._gzip and rest[:2] == _GZIP_MAGIC:
                    z = self._z = zlib.decompressobj(31)
                    data = rest
                    continue
                self.done = True
                return
            more = bool(data) or len(out) == PIECE


class BodyDigest:
    """Length and sha256 of a body fed in pieces; optionally of its decoded form too."""

    __slots__ = (
        "_dsha",
        "_max",
        "_parts",
        "_plen",
        "_sha",
        "_stages",
        "_stopped",
        "decode_error",
        "decoded_len",
        "length",
        "limit_hit",
        "missed",
    )

    def __init__(self, codings: list[str] | None, max_decoded: int) -> None:
        self.length = 0
        self.missed = 0
        self._max = max_decoded
        self._parts: list[bytes] = []  # identity: bytes not hashed yet (less than FLUSH)
        self._plen = 0
        self.decoded_len = 0
        self.limit_hit = False
        self.decode_error = False
        self._stopped = False
        if codings:
            self._sha: Any = hashlib.sha256()
            self._stages: list[_Inflater] | None = [_Inflater(c) for c in codings]
            self._dsha: Any = hashlib.sha256()
        else:
            self._sha = None  # created at the first flush
            self._stages = None
            self._dsha = None

    @property
    def resumable(self) -> bool:
        """Can `save()` capture this digest (else its bytes must be replayed)?"""
        return self._stages is None and RESUMABLE

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        if not n:
            return
        self.length += n
        if self._stages is None:
            self._parts.append(data if type(data) is bytes else bytes(data))
            self._plen += n
            if self._plen >= FLUSH:
                self._flush()
            return
        self._sha.update(data)
        if not self._stopped:
            self._push(0, bytes(data))

    def _flush(self) -> None:
        if self._sha is None:
            self._sha = ResumableSha256() if RESUMABLE else hashlib.sha256()
        parts = self._parts
        if parts:
            self._sha.update(parts[0] if len(parts) == 1 else b"".join(parts))
            self._parts = []
            self._plen = 0

    def skip(self, n: int) -> None:
        """`n` body bytes were lost: count them; decoding cannot continue past the hole."""
        self.missed += n
        self._stopped = True

    def save(self) -> list[Any]:
        """State of a resumable digest (identity body), msgpack-able."""
        assert self.resumable
        self._flush()
        return [self.length, self.missed, self._sha.save()]

    @classmethod
    def load(cls, state: list[Any], max_decoded: int) -> BodyDigest:
        d = cls(None, max_decoded)
        d.length, d.missed, sha = state
        d._sha = ResumableSha256.load(sha)
        d._stopped = d.missed > 0
        return d

    def _push(self, i: int, data: bytes) -> None:
        stages = self._stages
        assert stages is not None
        if i == len(stages):
            self._sink(data)
            return
        st = stages[i]
        last = i == len(stages) - 1
        for out in st.process(data):
            st.produced += len(out)
            if not last and st.produced > self._max:  # intermediate step exploding
                self.limit_hit = True
                self._stopped = True
                return
            self._push(i + 1, out)
            if self._stopped:
                return
        if st.error:
            self.decode_error = True
            self._stopped = True

    def _sink(self, data: bytes) -> None:
        room = self._max - self.decoded_len
        if len(data) > room:
            data = data[:room]
            self.limit_hit = True
            self._stopped = True
        self.decoded_len += len(data)
        assert self._dsha is not None
        self._dsha.update(data)

    def raw_sha256(self) -> str:
        if self._stages is None:
            if self._sha is None:  # never flushed: hash the pieces at once
                parts = self._parts
                if not parts:
                    return EMPTY_SHA256
                return hashlib.sha256(parts[0] if len(parts) == 1 else b"".join(parts)).hexdigest()
            self._flush()
        return self._sha.hexdigest()

    def fields(self) -> dict[str, Any]:
        """The body_* (and decoded_body_*, missed_bytes) fields of a request/response record."""
        out: dict[str, Any] = {"body_len": self.length, "body_sha256": self.raw_sha256()}
        if self._dsha is not None:
            out["decoded_body_len"] = self.decoded_len
            out["decoded_body_sha256"] = self._dsha.hexdigest()
        if self.missed:
            out["missed_bytes"] = self.missed
        return out

    def tags(self) -> list[str]:
        tags = []
        if self.limit_hit:
            tags.append("decompression_limit")
        if self.decode_error:
            tags.append("decode_error")
        return tags
