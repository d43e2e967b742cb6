"""SHA-256 whose running state can be saved and restored.

hashlib objects cannot be serialised, but a flow's stream hash (and an HTTP body's) must
survive a move to another process mid-stream, byte for byte. libcrypto's low-level
SHA256_* functions keep their state in a plain struct that we own, so it can be saved;
the saved form is portable (big-endian chaining words, byte length, pending tail), and a
pure-Python implementation of the same state is the fallback where libcrypto is missing.

A ctypes call costs about as much as hashing a 1.5 KB segment, so with libcrypto small
updates are collected (up to BATCH bytes, references to the caller's immutable bytes) and
hashed in one call; every read of the state (digest, save, zeros) takes them first. With
many flows at once, at most MAX_COLLECTING hashers hold collected bytes: the memory bound
does not grow with the number of flows.
"""

from __future__ import annotations

import ctypes
import struct

_CTX_SIZE = 112  # SHA256_CTX: h[8], Nl, Nh, data[16], num, md_len (all 32-bit)
_CTX = struct.Struct("=8I2I64s2I")
_STATE = struct.Struct(">8IQ")  # portable: chaining words, total byte length; tail follows
BATCH = 8 * 1024  # bytes collected before one SHA256_Update
MAX_COLLECTING = 1024  # hashers holding collected bytes at once (then all are hashed)


def _open_libcrypto() -> ctypes.CDLL | None:
    """The usual sonames first: find_library runs ldconfig (milliseconds at every start)."""
    for soname in ("libcrypto.so.3", "libcrypto.so.1.1"):
        try:
            return ctypes.CDLL(soname)
        except OSError:
            pass
    from ctypes.util import find_library  # its imports cost milliseconds: only when needed

    name = find_library("crypto")
    return ctypes.CDLL(name) if name else None


def _load_libcrypto() -> ctypes.CDLL | None:
    try:
        lib = _open_libcrypto()
        if lib is None:
            return None
        lib.SHA256_Init.argtypes = [ctypes.c_void_p]
        lib.SHA256_Update.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        lib.SHA256_Update.restype = None  # (returns 1): no result conversion per call
        lib.SHA256_Final.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    except (OSError, AttributeError):
        return None
    return lib


_LIB = _load_libcrypto()
_UPDATE = _LIB.SHA256_Update if _LIB is not None else None

_K = (
    0x428A2F98, 0x71374491, 0xB5C0FBCF, 0xE9B5DBA5, 0x3956C25B, 0x59F111F1, 0x923F82A4, 0xAB1C5ED5,
    0xD807AA98, 0x12835B01, 0x243185BE, 0x550C7DC3, 0x72BE5D74, 0x80DEB1FE, 0x9BDC06A7, 0xC19BF174,
    0xE49B69C1, 0xEFBE4786, 0x0FC19DC6, 0x240CA1CC, 0x2DE92C6F, 0x4A7484AA, 0x5CB0A9DC, 0x76F988DA,
    0x983E5152, 0xA831C66D, 0xB00327C8, 0xBF597FC7, 0xC6E00BF3, 0xD5A79147, 0x06CA6351, 0x14292967,
    0x27B70A85, 0x2E1B2138, 0x4D2C6DFC, 0x53380D13, 0x650A7354, 0x766A0ABB, 0x81C2C92E, 0x92722C85,
    0xA2BFE8A1, 0xA81A664B, 0xC24B8B70, 0xC76C51A3, 0xD192E819, 0xD6990624, 0xF40E3585, 0x106AA070,
    0x19A4C116, 0x1E376C08, 0x2748774C, 0x34B0BCB5, 0x391C0CB3, 0x4ED8AA4A, 0x5B9CCA4F, 0x682E6FF3,
    0x748F82EE, 0x78A5636F, 0x84C87814, 0x8CC70208, 0x90BEFFFA, 0xA4506CEB, 0xBEF9A3F7, 0xC67178F2,
)  # fmt: skip
_IV = (
    0x6A09E667,
    0xBB67AE85,
    0x3C6EF372,
    0xA54FF53A,
    0x510E527F,
    0x9B05688C,
    0x1F83D9AB,
    0x5BE0CD19,
)
_M = 0xFFFFFFFF


def _compress(h: tuple[int, ...], block: bytes) -> tuple[int, ...]:
    w = list(struct.unpack(">16I", block))
    for i in range(16, 64):
        x, y = w[i - 15], w[i - 2]
        s0 = ((x >> 7 | x << 25) ^ (x >> 18 | x << 14) ^ (x >> 3)) & _M
        s1 = ((y >> 17 | y << 15) ^ (y >> 19 | y << 13) ^ (y >> 10)) & _M
        w.append((w[i - 16] + s0 + w[i - 7] + s1) & _M)
    a, b, c, d, e, f, g, hh = h
    for i in range(64):
        s1 = (e >> 6 | e << 26) ^ (e >> 11 | e << 21) ^ (e >> 25 | e << 7)
        t1 = (hh + (s1 & _M) + ((e & f) ^ (~e & g)) + _K[i] + w[i]) & _M
        s0 = (a >> 2 | a << 30) ^ (a >> 13 | a << 19) ^ (a >> 22 | a << 10)
        t2 = ((s0 & _M) + ((a & b) ^ (a & c) ^ (b & c))) & _M
        a, b, c, d, e, f, g, hh = (t1 + t2) & _M, a, b, c, (d + t1) & _M, e, f, g
    return tuple((x + y) & _M for x, y in zip(h, (a, b, c, d, e, f, g, hh), strict=True))


_COLLECTING: list[ResumableSha256] = []  # hashers that started collecting (may repeat)


def _take_all() -> None:
    for h in _COLLECTING:
        h._take()
    _COLLECTING.clear()


EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def hexdigest_of(hasher: ResumableSha256 | None) -> str:
    """Digest of a lazily created hasher (None: nothing was hashed)."""
    return EMPTY_SHA256 if hasher is None else hasher.hexdigest()


class ResumableSha256:
    """hashlib-like SHA-256 (update/hexdigest) with `save()` / `load()` of its running state."""

    __slots__ = ("_addr", "_ctx", "_h", "_length", "_parts", "_plen", "_tail")

    def __init__(self) -> None:
        self._parts: list[bytes] = []  # libcrypto: updates not hashed yet (< BATCH bytes)
        self._plen = 0
        if _LIB is not None:
            self._ctx = ctypes.create_string_buffer(_CTX_SIZE)
            self._addr = ctypes.addressof(self._ctx)  # passed as an int: a cheaper call
            _LIB.SHA256_Init(self._ctx)
        else:
            self._ctx = None
            self._h, self._length, self._tail = _IV, 0, b""

    def update(self, data: bytes) -> None:
        if self._ctx is not None:
            n = len(data)
            if n >= BATCH and not self._parts and type(data) is bytes:
                _UPDATE(self._addr, data, n)  # type: ignore[misc]
                return
            parts = self._parts
            if not parts:
                if len(_COLLECTING) >= MAX_COLLECTING:
                    _take_all()
                _COLLECTING.append(self)
            parts.append(data if type(data) is bytes else bytes(data))
            self._plen += n
            if self._plen >= BATCH:
                self._take()
            return
        self._length += len(data)
        buf = self._tail + bytes(data)
        full = len(buf) - len(buf) % 64
        h = self._h
        for i in range(0, full, 64):
            h = _compress(h, buf[i : i + 64])
        self._h, self._tail = h, buf[full:]

    def _take(self) -> None:
        """Hash the collected updates in one call."""
        parts = self._parts
        if parts:
            data = parts[0] if len(parts) == 1 else b"".join(parts)
            self._parts = []
            self._plen = 0
            _UPDATE(self._addr, data, len(data))  # type: ignore[misc]

    def update_zeros(self, count: int) -> None:
        """Feed `count` zero bytes (a gap counted as zeros) without building a huge buffer."""
        chunk = bytes(min(count, 1 << 16))
        while count > 0:
            n = min(count, len(chunk))
            self.update(chunk[:n] if n < len(chunk) else chunk)
            count -= n

    def hexdigest(self) -> str:
        if self._ctx is not None:
            self._take()
            out = ctypes.create_string_buffer(32)
            ctx = ctypes.create_string_buffer(self._ctx.raw, _CTX_SIZE)
            _LIB.SHA256_Final(out, ctx)  # type: ignore[union-attr]
            return out.raw.hex()
        bit_len = self._length * 8
        pad = b"\x80" + bytes((55 - self._length) % 64) + struct.pack(">Q", bit_len)
        buf = self._tail + pad
        h = self._h
        for i in range(0, len(buf), 64):
            h = _compress(h, buf[i : i + 64])
        return struct.pack(">8I", *h).hex()

    def save(self) -> bytes:
        """The running state in a portable form (same bytes from either implementation)."""
        if self._ctx is not None:
            self._take()
            *h, nl, nh, data, num, _md_len = _CTX.unpack(self._ctx.raw)
            length = ((nh << 32) | nl) // 8
            return _STATE.pack(*h, length) + data[:num]
        return _STATE.pack(*self._h, self._length) + self._tail

    @classmethod
    def load(cls, state: bytes) -> ResumableSha256:
        *h, length = _STATE.unpack_from(state)
        tail = bytes(state[_STATE.size :])
        obj = cls()
        if obj._ctx is not None:
            bits = length * 8
            raw = _CTX.pack(*h, bits & _M, bits >> 32, tail.ljust(64, b"\0"), len(tail), 32)
            obj._ctx = ctypes.create_string_buffer(raw, _CTX_SIZE)
            obj._addr = ctypes.addressof(obj._ctx)
        else:
            obj._h, obj._length, obj._tail = tuple(h), length, tail
        return obj
