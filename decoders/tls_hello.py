"""ClientHello / ServerHello bodies -> record fields, and their fingerprints (JA3, JA3S, JA4).

Pure functions over one handshake message body (without its 4-byte handshake header).
Structural damage raises ValueError; the decoder turns that into a `parse_error` tag.
"""

from __future__ import annotations

import hashlib
from typing import Any

HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")

EXT_SNI, EXT_GROUPS, EXT_POINT_FORMATS, EXT_SIG_ALGS = 0, 10, 11, 13
EXT_ALPN, EXT_SUPPORTED_VERSIONS = 16, 43
EXT_SESSION_TICKET, EXT_PRE_SHARED_KEY = 35, 41

_JA4_VERSIONS = {
    0x0304: "13",
    0x0303: "12",
    0x0302: "11",
    0x0301: "10",
    0x0300: "s3",
    0x0002: "s2",
    0xFEFF: "d1",
    0xFEFD: "d2",
    0xFEFC: "d3",
}


def is_grease(value: int) -> bool:
    """RFC 8701 reserved values 0x0a0a, 0x1a1a, ... 0xfafa (ciphers, extensions, groups...)."""
    return (value & 0x0F0F) == 0x0A0A and (value >> 8) == (value & 0xFF)


def version_text(value: int) -> str:
    """The one text form of a protocol version in records: "0x0303"."""
    return f"0x{value:04x}"


class _Reader:
    """Bounds-checked big-endian reads over a bytes object."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def left(self) -> int:
        return self.end - self.pos

    def take(self, n: int) -> bytes:
        if n > self.end - self.pos:
            raise ValueError("truncated")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def take_all(self) -> bytes:
        return self.take(self.end - self.pos)

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def vector(self, len_bytes: int) -> _Reader:
        n = int.from_bytes(self.take(len_bytes), "big")
        sub = _Reader(self.data, self.pos, self.pos + n)
        if sub.end > self.end:
            raise ValueError("truncated vector")
        self.pos = sub.end
        return sub


def _u16_list(r: _Reader) -> list[int]:
    if r.left() % 2:
        raise ValueError("odd u16 list")
    return [r.u16() for _ in range(r.left() // 2)]


def _extensions(r: _Reader) -> list[tuple[int, bytes]]:
    """The extension block (absent when the message ends after compression)."""
    if r.left() == 0:
        return []
    block = r.vector(2)
    out = []
    while block.left():
        etype = block.u16()
        out.append((etype, block.vector(2).take_all()))
    return out


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def parse_client_hello(body: bytes) -> dict[str, Any]:
    """ClientHello body -> the `client_hello` object of a tls record (keys in record order)."""
    return parse_client_hello_info(body)[0]


def parse_client_hello_info(body: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """(`client_hello` object, what resumption detection needs: `session_id` hex, `ticket`
    (a non-empty SessionTicket extension), `psk` (a pre_shared_key extension))."""
    r = _Reader(body)
    version = r.u16()
    r.take(32)  # random
    session_id = r.vector(1).take_all()
    ciphers = _u16_list(r.vector(2))
    r.vector(1)  # compression methods
    exts = _extensions(r)
    sni = None
    alpn: list[str] = []
    versions: list[int] = []
    groups: list[int] = []
    formats: list[int] = []
    sig_algs: list[int] = []
    for etype, data in exts:
        e = _Reader(data)
        try:
            if etype == EXT_SNI and sni is None and data:
                names = e.vector(2)
                while names.left():
                    kind, name = names.u8(), names.vector(2).take_all()
                    if kind == 0:
                        sni = _text(name)
                        break
            elif etype == EXT_ALPN and data:
                protos = e.vector(2)
                while protos.left():
                    alpn.append(_text(protos.vector(1).take_all()))
            elif etype == EXT_SUPPORTED_VERSIONS:
                versions = _u16_list(e.vector(1))
            elif etype == EXT_GROUPS:
                groups = _u16_list(e.vector(2))
            elif etype == EXT_POINT_FORMATS:
                formats = list(e.vector(1).take_all())
            elif etype == EXT_SIG_ALGS:
                sig_algs = _u16_list(e.vector(2))
        except ValueError as exc:
            raise ValueError(f"extension {etype}: {exc}") from None
    ext_types = [t for t, _ in exts]
    ja3_string = ja3_text(version, ciphers, ext_types, groups, formats)
    info = {
        "session_id": session_id.hex(),
        "ticket": any(t == EXT_SESSION_TICKET and d for t, d in exts),
        "psk": EXT_PRE_SHARED_KEY in ext_types,
    }
    fields = {
        "version": version_text(version),
        "sni": sni,
        "alpn": alpn,
        "supported_versions": [version_text(v) for v in versions],
        "cipher_suites": ciphers,
        "extensions": ext_types,
        "elliptic_curves": groups,
        "ec_point_formats": formats,
        "ja3": hashlib.md5(ja3_string.encode()).hexdigest(),
        "ja3_string": ja3_string,
        "ja4": ja4(
            version,
            versions,
            EXT_SNI in ext_types,
            ciphers,
            ext_types,
            alpn_first_raw(exts),
            sig_algs,
        ),
    }
    return fields, info


def parse_server_hello(body: bytes) -> dict[str, Any]:
    """ServerHello body -> the `server_hello` object of a tls record (keys in record order)."""
    return parse_server_hello_info(body)[0]


def parse_server_hello_info(body: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """(`server_hello` object, the negotiated parameters: `version` (supported_versions, else
    legacy_version), `cipher`, `alpn` (the protocol chosen, or None), `session_id` hex, `psk`
    (a pre_shared_key extension: a PSK was accepted), `ja4s`)."""
    r = _Reader(body)
    version = r.u16()
    random = r.take(32)
    session_id = r.vector(1).take_all()
    cipher = r.u16()
    r.u8()  # compression method
    exts = _extensions(r)
    selected = None
    negotiated = version
    for etype, data in exts:
        if etype == EXT_SUPPORTED_VERSIONS and len(data) == 2:
            negotiated = int.from_bytes(data, "big")
            selected = version_text(negotiated)
    ext_types = [t for t, _ in exts]
    ja3s_string = ja3s_text(version, cipher, ext_types)
    alpn_raw = alpn_first_raw(exts)
    info = {
        "version": negotiated,
        "cipher": cipher,
        "alpn": _text(alpn_raw) if alpn_raw else None,
        "session_id": session_id.hex(),
        "psk": EXT_PRE_SHARED_KEY in ext_types,
        "ja4s": ja4s(negotiated, cipher, ext_types, alpn_raw),
    }
    fields = {
        "version": version_text(version),
        "selected_version": selected,
        "cipher_suite": cipher,
        "extensions": ext_types,
        "ja3s": hashlib.md5(ja3s_string.encode()).hexdigest(),
        "ja3s_string": ja3s_string,
        "hello_retry_request": random == HRR_RANDOM,
    }
    return fields, info


def _dashed(values: list[int]) -> str:
    return "-".join(str(v) for v in values if not is_grease(v))


def ja3_text(
    version: int, ciphers: list[int], exts: list[int], groups: list[int], formats: list[int]
) -> str:
    """Salesforce JA3: decimal fields, GREASE dropped from every list (point formats are u8)."""
    return ",".join(
        [str(version), _dashed(ciphers), _dashed(exts), _dashed(groups), _dashed(formats)]
    )


def ja3s_text(version: int, cipher: int, exts: list[int]) -> str:
    """JA3S: version, cipher, extensions (GREASE dropped, as tshark does)."""
    return f"{version},{cipher},{_dashed(exts)}"


def alpn_first_raw(exts: list[tuple[int, bytes]]) -> bytes:
    """The first ALPN protocol's raw bytes (b"" when there is none)."""
    for etype, data in exts:
        if etype == EXT_ALPN:
            try:
                protos = _Reader(data).vector(2)
                return protos.vector(1).take_all() if protos.left() else b""
            except ValueError:
                return b""
    return b""


def _alnum(b: int) -> bool:
    return 0x30 <= b <= 0x39 or 0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A


def ja4_alpn(first: bytes) -> str:
    """JA4's two ALPN characters: first and last character, or of the hex form if either end
    is not alphanumeric; "00" when there is none."""
    if not first:
        return "00"
    if _alnum(first[0]) and _alnum(first[-1]):
        return chr(first[0]) + chr(first[-1])
    hexed = first.hex()
    return hexed[0] + hexed[-1]


def _hash12(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def ja4(
    legacy_version: int,
    supported_versions: list[int],
    has_sni: bool,
    ciphers: list[int],
    exts: list[int],
    alpn_first: bytes,
    sig_algs: list[int],
) -> str:
    """FoxIO JA4 (TLS over TCP) per technical_details/JA4.md: GREASE ignored everywhere."""
    versions = [v for v in supported_versions if not is_grease(v)]
    version = max(versions) if versions else legacy_version
    ciphers = [c for c in ciphers if not is_grease(c)]
    exts = [e for e in exts if not is_grease(e)]
    a = (
        f"t{_JA4_VERSIONS.get(version, '00')}{'d' if has_sni else 'i'}"
        f"{min(len(ciphers), 99):02d}{min(len(exts), 99):02d}{ja4_alpn(alpn_first)}"
    )
    b = _hash12(",".join(f"{c:04x}" for c in sorted(ciphers))) if ciphers else "0" * 12
    kept = sorted(e for e in exts if e not in (EXT_SNI, EXT_ALPN))
    if kept:
        text = ",".join(f"{e:04x}" for e in kept)
        sigs = [s for s in sig_algs if not is_grease(s)]
        if sigs:
            text += "_" + ",".join(f"{s:04x}" for s in sigs)
        c = _hash12(text)
    else:
        c = "0" * 12
    return f"{a}_{b}_{c}"


def ja4s(version: int, cipher: int, exts: list[int], alpn_chosen: bytes) -> str:
    """FoxIO JA4S (technical_details/JA4S.md), TLS over TCP: `t` + version (the
    supported_versions extension's, else legacy_version) + extension count (2 digits, capped
    at 99) + the chosen ALPN's first and last character (JA4's rule, `00` when none) `_`
    the chosen cipher in 4 hex digits `_` 12 hex of SHA-256 of the extensions in wire order
    (4-digit hex, comma-joined; `000000000000` when none). Nothing is sorted or dropped: a
    ServerHello carries no GREASE (RFC 8701 3) and its order is the server's own."""
    a = f"t{_JA4_VERSIONS.get(version, '00')}{min(len(exts), 99):02d}{ja4_alpn(alpn_chosen)}"
    c = _hash12(",".join(f"{e:04x}" for e in exts)) if exts else "0" * 12
    return f"{a}_{cipher:04x}_{c}"
