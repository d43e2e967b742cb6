"""Incremental body digests: length + sha256 of the (de-chunked) body, and of its decoded form
where Content-Encoding is gzip / x-gzip / deflate / br (stacked ones undone in reverse order).

Bodies are never stored: bytes are hashed as they pass, and decompression runs in bounded
pieces (at most PIECE bytes of output exist at a time), with the total decoded size capped so
a small compressed body cannot inflate without bound (tag `decompression_limit`; the decoded
hash then covers exactly the first `max_decoded` bytes). In a stack, an intermediate step may
produce at most 2 x max_decoded + PIECE bytes (a bound on the work, generous enough that a
legitimate stack still yields the first max_decoded bytes).

The decoded output is a function of the body bytes only, never of how they were cut into
segments (a restore re-feeds a body in one piece): a zlib call that fails hands over exactly
what the bytes before the corruption decode to (found again on a copy of the inflater), and
brotli, whose decoder cannot be copied, is fed in steps aligned to fixed offsets of its input
(STEP), so a failing step loses the same output however the body arrived.

Gaps (`skip`) are counted as `missed_bytes`; the raw hash covers only the delivered bytes,
and decoding stops at the first gap (an inflater cannot resume across a hole), so the decoded
fields then cover the bytes decoded before it.

Encoded bodies are hashed and decoded BATCH input bytes at a time (the output does not depend
on the cut, as said above); `fields()` and `skip()` take the bytes still collected first.

An identity body's digest can be saved and loaded (`save()` / `load()`): its bytes are collected
in pieces and hashed FLUSH bytes at a time with a resumable SHA-256, so a snapshot of a body in
progress costs a few dozen bytes instead of the body itself. A decoded body's inflater state
cannot be saved (zlib, brotli), so those are rebuilt by replaying their bytes.

Opt-in extras (`BodyExtras`): MD5 and SHA-1 (what Zeek's files.log carries by default) and the
MIME type sniffed from the first SNIFF bytes (puremagic), all over the body's content: the
decoded bytes when a Content-Encoding is undone, else the body as sent (the bytes
`decoded_body_sha256`, else `body_sha256`, covers). Their hashers cannot be saved, so a body
with extras is replayed on restore like a decoded one (bounded by max_replay_bytes).
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import brotli
import puremagic

from wirestream.reassembly import sha256 as _sha256
from wirestream.reassembly.sha256 import EMPTY_SHA256, ResumableSha256

PIECE = 64 * 1024
FLUSH = 64 * 1024  # identity body bytes collected before they are hashed in one call
# Encoded body bytes collected before they are hashed and decoded in one call: a segment at
# a time, a zlib call's fixed costs (a copy of the inflater and its 32 KiB window, a 32 KiB
# output buffer) cost as much as inflating the segment.
BATCH = 32 * 1024
STEP = 16 * 1024  # brotli input per decoder call, at fixed offsets of the compressed stream
# Resumable hashing needs libcrypto's SHA-256 (the pure-Python fallback is far too slow for
# bodies); without it identity digests are replayed like decoded ones.
RESUMABLE = getattr(_sha256, "_LIB", None) is not None
SUPPORTED_CODINGS = frozenset({"gzip", "x-gzip", "deflate", "br"})
SNIFF = 4096  # content bytes kept for MIME sniffing (puremagic reads at most its first 4 KiB)


@dataclass(frozen=True, slots=True)
class BodyExtras:
    """Which opt-in body fields to compute (see the module doc)."""

    md5: bool = False
    sha1: bool = False
    sniff: bool = False
    keep: int = 0  # extraction: content bytes kept (a body over this is not extracted)

    @property
    def any(self) -> bool:
        return self.md5 or self.sha1 or self.sniff or self.keep > 0


def sniff_mime(head: bytes) -> str | None:
    """puremagic's best match for the content's first bytes, or None (no match, empty)."""
    if not head:
        return None
    try:
        return puremagic.from_string(head, mime=True) or None
    except Exception:  # puremagic.PureError (no match), or its own trouble with odd bytes
        return None


_GZIP_MAGIC = b"\x1f\x8b"


def content_codings(headers: Iterable[tuple[bytes, bytes]]) -> list[str] | None:
    """The decoding steps for a message's Content-Encoding headers, in the order to apply them
    (reverse of the order they were applied by the sender), identity dropped. None when there
    is nothing to decode or a coding is unsupported (e.g. zstd)."""
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


def _inflate(z: Any, data: bytes) -> tuple[bytes, bool]:
    """(output, failed) of one bounded zlib call. When the call fails, zlib's partial output is
    lost with the exception: it is rebuilt on a copy taken before the call, from the longest
    prefix of `data` that decodes without error (bisection: a prefix fails iff it reaches the
    bad byte; the output before an error is below PIECE, so max_length never cuts a probe)."""
    saved = z.copy()
    try:
        return z.decompress(data, PIECE), False
    except zlib.error:
        pass
    lo, hi = 0, len(data)  # data[:lo] decodes, data[:hi] fails
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            saved.copy().decompress(data[:mid], PIECE)
            lo = mid
        except zlib.error:
            hi = mid
    return (saved.decompress(data[:lo], PIECE) if lo else b""), True


class _Inflater:
    """One zlib decoding step. gzip may hold several members (a member may end exactly at a
    segment end: the next one is recognised by its magic whenever its first bytes come);
    deflate may be zlib-wrapped (RFC 9110) or raw (what many servers send): detected from the
    first two bytes."""

    __slots__ = ("_gzip", "_head", "_z", "done", "error", "produced")

    def __init__(self, coding: str) -> None:
        self._gzip = coding != "deflate"
        self._z: Any = zlib.decompressobj(31) if self._gzip else None
        self._head = b""  # bytes seen while no inflater runs (stream start, between members)
        self.done = False
        self.error = False
        self.produced = 0

    def process(self, data: bytes) -> Iterator[bytes]:
        while data and not (self.done or self.error):
            z = self._z
            if z is None:
                head = self._head + data
                if len(head) < 2:
                    self._head = head
                    return
                self._head, data = b"", head
                if self._gzip:  # after a member: another one, or trailing bytes (ignored)
                    if head[:2] != _GZIP_MAGIC:
                        self.done = True
                        return
                    z = zlib.decompressobj(31)
                else:
                    cmf, flg = head[0], head[1]
                    wrapped = (cmf & 0x0F) == 8 and (cmf >> 4) <= 7 and ((cmf << 8) | flg) % 31 == 0
                    z = zlib.decompressobj(15 if wrapped else -15)
                self._z = z
            while True:
                out, failed = _inflate(z, data)
                data = z.unconsumed_tail
                if out:
                    yield out
                if failed:
                    self.error = True
                    return
                if z.eof:
                    data = z.unused_data
                    if self._gzip:
                        self._z = None
                    else:
                        self.done = True
                    break
                if not data and len(out) < PIECE:
                    return

    def flush(self) -> Iterator[bytes]:
        return iter(())

    def close(self) -> None:
        self._z = None
        self.done = True


class _Unbrotli:
    """One brotli decoding step (RFC 7932), in bounded output pieces (brotli >= 1.2's
    output_buffer_limit). The input is cut at fixed offsets (STEP) before it reaches the
    decoder: see the module doc. `flush()` decodes the last partial step at the body's end."""

    __slots__ = ("_buf", "_d", "done", "error", "produced")

    def __init__(self, coding: str) -> None:
        self._d: Any = brotli.Decompressor()
        self._buf = bytearray()
        self.done = False
        self.error = False
        self.produced = 0

    def process(self, data: bytes) -> Iterator[bytes]:
        buf, i, n = self._buf, 0, len(data)
        while i < n and not (self.done or self.error):
            k = min(STEP - len(buf), n - i)
            if not buf and k == STEP:
                step = data[i : i + k]
            else:
                buf += data[i : i + k]
                if len(buf) < STEP:
                    return
                step = bytes(buf)
                buf.clear()
            i += k
            yield from self._step(step)

    def flush(self) -> Iterator[bytes]:
        if self._buf and not (self.done or self.error):
            step = bytes(self._buf)
            self._buf.clear()
            yield from self._step(step)

    def _step(self, step: bytes) -> Iterator[bytes]:
        """Decode one step and everything it makes available. The decoder may hold output
        back even when it says it can take more input: drain until a call returns nothing."""
        d = self._d
        stalled = False
        try:
            out = d.process(step, output_buffer_limit=PIECE)
            while True:
                if out:
                    stalled = False
                    yield out
                elif d.can_accept_more_data() or d.is_finished():
                    break
                elif stalled:  # holds input, yields nothing: give up rather than spin
                    self.error = True
                    return
                else:
                    stalled = True
                out = d.process(b"", output_buffer_limit=PIECE)
        except brotli.error:
            self.error = True
            return
        if d.is_finished():
            self.done = True  # bytes after the stream's end are ignored (as after gzip)

    def close(self) -> None:
        """Free the decoder (its window may be 16 MiB)."""
        self._d = None
        self._buf = bytearray()
        self.done = True


def _stage(coding: str) -> _Inflater | _Unbrotli:
    return _Unbrotli(coding) if coding == "br" else _Inflater(coding)


class BodyDigest:
    """Length and sha256 of a body fed in pieces; optionally of its decoded form too."""

    __slots__ = (
        "_dsha",
        "_epend",
        "_hashers",
        "_head",
        "_imax",
        "_kept",
        "_max",
        "_parts",
        "_plen",
        "_sha",
        "_stages",
        "_stopped",
        "_x",
        "decode_error",
        "decoded_len",
        "length",
        "limit_hit",
        "missed",
    )

    def __init__(
        self, codings: list[str] | None, max_decoded: int, extras: BodyExtras | None = None
    ) -> None:
        x = self._x = extras if extras is not None and extras.any else None
        if x is not None:  # (nothing allocated for them when the extras are off)
            self._hashers: list[Any] = []
            if x.md5:
                self._hashers.append(hashlib.md5())
            if x.sha1:
                self._hashers.append(hashlib.sha1())
            self._head = bytearray()
            self._kept = bytearray()  # extraction: the content, up to keep + 1 bytes
        self.length = 0
        self.missed = 0
        self._max = max_decoded
        self._imax = 2 * max_decoded + PIECE  # output of an intermediate step in a stack
        self._parts: list[bytes] = []  # identity: bytes not hashed yet (less than FLUSH)
        self._plen = 0
        self._epend = 0  # encoded: bytes in `_parts`, not hashed nor decoded yet
        self.decoded_len = 0
        self.limit_hit = False
        self.decode_error = False
        self._stopped = False
        if codings:
            self._sha: Any = hashlib.sha256()
            self._stages: list[_Inflater | _Unbrotli] | None = [_stage(c) for c in codings]
            self._dsha: Any = hashlib.sha256()
        else:
            self._sha = None  # created at the first flush
            self._stages = None
            self._dsha = None

    @property
    def resumable(self) -> bool:
        """Can `save()` capture this digest (else its bytes must be replayed)?"""
        return self._stages is None and RESUMABLE and self._x is None

    def _content(self, data: bytes) -> None:
        """Content bytes for the extras (identity: as flushed; encoded: as decoded)."""
        for h in self._hashers:
            h.update(data)
        x = self._x
        assert x is not None
        head = self._head
        if x.sniff and len(head) < SNIFF:
            head += data[: SNIFF - len(head)]
        kept = self._kept
        if x.keep and len(kept) <= x.keep:
            kept += data[: x.keep + 1 - len(kept)]

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
        self._parts.append(data if type(data) is bytes else bytes(data))
        self._epend += n
        if self._epend >= BATCH:
            self._take()

    def _take(self) -> None:
        """Encoded body: hash and decode the collected bytes in one piece."""
        parts = self._parts
        if not parts:
            return
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self._parts = []
        self._epend = 0
        self._sha.update(data)
        if not self._stopped:
            self._push(0, data)

    def _flush(self) -> None:
        if self._sha is None:
            self._sha = ResumableSha256() if RESUMABLE else hashlib.sha256()
        parts = self._parts
        if parts:
            data = parts[0] if len(parts) == 1 else b"".join(parts)
            self._sha.update(data)
            if self._x is not None:
                self._content(data)
            self._parts = []
            self._plen = 0

    def skip(self, n: int) -> None:
        """`n` body bytes were lost: count them; decoding cannot continue past the hole."""
        self.missed += n
        if self._stages is not None:
            self._take()
        if not self._stopped and self._stages is not None:
            self._finish()  # what was delivered before the hole is decoded
            self._stop()
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
        else:
            self._run(i, stages[i].process(data))

    def _run(self, i: int, outs: Iterator[bytes]) -> None:
        """Pass step `i`'s output pieces on; an intermediate step is cut at `_imax` bytes
        (after handing on what fits, so the next steps still decode its first bytes)."""
        stages = self._stages
        assert stages is not None
        st = stages[i]
        last = i == len(stages) - 1
        for out in outs:
            cut = False
            if not last and st.produced + len(out) > self._imax:
                out = out[: self._imax - st.produced]
                cut = True
            st.produced += len(out)
            if out:
                self._push(i + 1, out)
            if cut and not self._stopped:
                self.limit_hit = True
                self._stop()
            if self._stopped:
                return
        if st.error:
            self.decode_error = True
            self._stop()

    def _stop(self) -> None:
        """Nothing more is decoded: free the decoders now (a body may stay open for long)."""
        self._stopped = True
        for st in self._stages or ():
            st.close()

    def _finish(self) -> None:
        """End of the decoded input: steps holding input back (brotli) decode it now."""
        stages = self._stages
        assert stages is not None
        for i, st in enumerate(stages):
            if self._stopped:
                return
            self._run(i, st.flush())

    def _sink(self, data: bytes) -> None:
        room = self._max - self.decoded_len
        if len(data) > room:
            data = data[:room]
            self.limit_hit = True
            self._stop()
        self.decoded_len += len(data)
        assert self._dsha is not None
        self._dsha.update(data)
        if self._x is not None:
            self._content(data)

    def raw_sha256(self) -> str:
        if self._stages is None:
            if self._sha is None:  # never flushed: hash the pieces at once
                parts = self._parts
                if not parts:
                    return EMPTY_SHA256
                return hashlib.sha256(parts[0] if len(parts) == 1 else b"".join(parts)).hexdigest()
            self._flush()
        else:
            self._take()
        return self._sha.hexdigest()

    def fields(self) -> dict[str, Any]:
        """The body_* (and decoded_body_*, missed_bytes) fields of a request/response record,
        then the extras asked for (body_md5, body_sha1, body_mime)."""
        if self._x is not None and self._stages is None:
            self._flush()  # the extras see identity bytes as they are flushed
        out: dict[str, Any] = {"body_len": self.length, "body_sha256": self.raw_sha256()}
        if self._stages is not None and not self._stopped:
            self._finish()
            self._stop()  # the body is complete: nothing more is decoded
        if self._dsha is not None:
            out["decoded_body_len"] = self.decoded_len
            out["decoded_body_sha256"] = self._dsha.hexdigest()
        if self.missed:
            out["missed_bytes"] = self.missed
        x = self._x
        if x is not None:
            hashers = iter(self._hashers)
            if x.md5:
                out["body_md5"] = next(hashers).hexdigest()
            if x.sha1:
                out["body_sha1"] = next(hashers).hexdigest()
            if x.sniff:
                out["body_mime"] = sniff_mime(bytes(self._head))
        return out

    def content(self) -> bytes | None:
        """For extraction: the whole content, or None (extraction off, empty, over the bound,
        bytes lost, or decoding stopped early). Call after `fields()`."""
        x = self._x
        if x is None or not x.keep or not self._kept or len(self._kept) > x.keep:
            return None
        if self.missed or self.limit_hit or self.decode_error:
            return None
        return bytes(self._kept)

    def tags(self) -> list[str]:
        tags = []
        if self.limit_hit:
            tags.append("decompression_limit")
        if self.decode_error:
            tags.append("decode_error")
        return tags
