"""DNS message parsing (RFC 1035): header, first question, every section's records as text,
and EDNS (RFC 6891) with its options, the client subnet (RFC 7871) decoded.

A small parser of our own rather than dpkt.dns: it must never raise on hostile input past
its documented ValueError, must bound name decompression (pointer loops), and must keep
whatever it parsed before the damage (a truncated answer section still gives the question).
Damage in the authority or additional section is kept apart (`section_error`): the question
and answers stay as they were parsed, with no error.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass, field

HEADER = 12
MAX_POINTERS = 32  # compression pointers followed per name: loops end here
MAX_NAME = 255  # wire octets of a name (RFC 1035 3.1)
MAX_ANSWERS = 256  # answers kept per message; beyond: tag answer_limit

QR, AA, TC, RD, RA = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080

TYPE_NAMES = {
    1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 10: "NULL", 11: "WKS", 12: "PTR", 13: "HINFO",
    15: "MX", 16: "TXT", 17: "RP", 18: "AFSDB", 24: "SIG", 25: "KEY", 28: "AAAA", 29: "LOC",
    33: "SRV", 35: "NAPTR", 36: "KX", 37: "CERT", 39: "DNAME", 41: "OPT", 42: "APL", 43: "DS",
    44: "SSHFP", 45: "IPSECKEY", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 49: "DHCID",
    50: "NSEC3", 51: "NSEC3PARAM", 52: "TLSA", 53: "SMIMEA", 55: "HIP", 59: "CDS",
    60: "CDNSKEY", 61: "OPENPGPKEY", 62: "CSYNC", 63: "ZONEMD", 64: "SVCB", 65: "HTTPS",
    99: "SPF", 108: "EUI48", 109: "EUI64", 249: "TKEY", 250: "TSIG", 251: "IXFR", 252: "AXFR",
    253: "MAILB", 254: "MAILA", 255: "ANY", 256: "URI", 257: "CAA",
}  # fmt: skip
RCODE_NAMES = {
    0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
    6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE",
}  # fmt: skip
# IANA "DNS CLASSes" (RFC 6895 3.2); the rest as RFC 3597's CLASS<n>.
CLASS_NAMES = {1: "IN", 3: "CH", 4: "HS", 254: "NONE", 255: "ANY"}
# IANA "DNS EDNS0 Option Codes (OPT)" registry, as of 2024.
EDNS_OPTION_NAMES = {
    1: "LLQ", 2: "UL", 3: "NSID", 5: "DAU", 6: "DHU", 7: "N3U", 8: "ECS", 9: "EXPIRE",
    10: "COOKIE", 11: "TCP_KEEPALIVE", 12: "PADDING", 13: "CHAIN", 14: "KEY_TAG", 15: "EDE",
    16: "CLIENT_TAG", 17: "SERVER_TAG", 18: "REPORT_CHANNEL", 19: "ZONEVERSION",
    20292: "UMBRELLA_IDENT", 26946: "DEVICEID",
}  # fmt: skip
OPT = 41
_NAME_TYPES = frozenset({2, 5, 12, 39})  # NS, CNAME, PTR, DNAME: rdata is one name


def type_name(qtype: int) -> str:
    return TYPE_NAMES.get(qtype, f"TYPE{qtype}")  # RFC 3597 form for the unknown


def rcode_name(rcode: int) -> str:
    return RCODE_NAMES.get(rcode, f"RCODE{rcode}")


def class_name(qclass: int) -> str:
    return CLASS_NAMES.get(qclass, f"CLASS{qclass}")


@dataclass(slots=True)
class Message:
    trans_id: int
    flags: int
    qdcount: int
    ancount: int
    qname: str | None = None
    qtype: int | None = None
    qclass: int | None = None
    answers: list[dict] = field(default_factory=list)
    error: str | None = None  # what broke parsing (the fields above are what came before)
    answer_limit: bool = False
    nscount: int = 0
    arcount: int = 0
    authority: list[dict] = field(default_factory=list)
    additional: list[dict] = field(default_factory=list)  # without the OPT record
    edns: dict | None = None  # the OPT record (RFC 6891), see `edns_fields`
    section_error: str | None = None  # what broke the authority/additional sections
    section_limit: bool = False

    @property
    def is_response(self) -> bool:
        return bool(self.flags & QR)

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF

    @property
    def rcode(self) -> int:
        return self.flags & 0xF

    def flag_fields(self) -> dict[str, bool]:
        f = self.flags
        return {"aa": bool(f & AA), "tc": bool(f & TC), "rd": bool(f & RD), "ra": bool(f & RA)}


_PLAIN = re.compile(rb"[\x20-\x2d\x2f-\x5b\x5d-\x7e]*")  # printable ASCII but '.' and '\'


def _label_text(label: bytes) -> str:
    """Printable ASCII kept (space included); '.' and '\\' escaped with a backslash; any
    other byte as \\DDD (RFC 1035 5.1 presentation form)."""
    if _PLAIN.fullmatch(label):
        return label.decode("ascii")
    out = []
    for b in label:
        if b in (0x2E, 0x5C):
            out.append("\\" + chr(b))
        elif 0x20 <= b <= 0x7E:
            out.append(chr(b))
        else:
            out.append(f"\\{b:03d}")
    return "".join(out)


def read_name(data: bytes, pos: int) -> tuple[str, int]:
    """(name text, offset after the name in place). The root is "."; no trailing dot."""
    labels: list[str] = []
    end = -1
    jumps = 0
    octets = 1
    n_data = len(data)
    while True:
        if pos >= n_data:
            raise ValueError("name runs past the message")
        n = data[pos]
        if n >= 0xC0:
            if pos + 1 >= n_data:
                raise ValueError("truncated compression pointer")
            if end < 0:
                end = pos + 2
            jumps += 1
            if jumps > MAX_POINTERS:
                raise ValueError("compression pointer loop")
            pos = ((n & 0x3F) << 8) | data[pos + 1]
            continue
        if n >= 0x40:
            raise ValueError(f"label type 0x{n:02x}")
        pos += 1
        if n == 0:
            break
        octets += n + 1
        if octets > MAX_NAME or pos + n > n_data:
            raise ValueError("name too long" if octets > MAX_NAME else "truncated label")
        labels.append(_label_text(data[pos : pos + n]))
        pos += n
    return (".".join(labels) if labels else "."), (end if end >= 0 else pos)


def _u16(data: bytes, pos: int) -> int:
    if pos + 2 > len(data):
        raise ValueError("truncated")
    return (data[pos] << 8) | data[pos + 1]


def _txt(rdata: bytes) -> str:
    parts = []
    i = 0
    while i < len(rdata):
        n = rdata[i]
        if i + 1 + n > len(rdata):
            raise ValueError("truncated TXT string")
        s = rdata[i + 1 : i + 1 + n]
        text = "".join(
            "\\" + chr(b) if b in (0x22, 0x5C) else chr(b) if 0x20 <= b <= 0x7E else f"\\{b:03d}"
            for b in s
        )
        parts.append(f'"{text}"')
        i += 1 + n
    return " ".join(parts)


def rdata_text(data: bytes, rtype: int, start: int, length: int) -> str:
    """Text form of one record's data (names may point anywhere earlier in the message)."""
    rdata = data[start : start + length]
    if rtype == 1 and length == 4:
        return str(ipaddress.IPv4Address(rdata))
    if rtype == 28 and length == 16:
        return str(ipaddress.IPv6Address(rdata))
    if rtype in _NAME_TYPES:
        return read_name(data, start)[0]
    if rtype == 15:
        return f"{_u16(data, start)} {read_name(data, start + 2)[0]}"
    if rtype in (16, 99):
        return _txt(rdata)
    if rtype == 33:
        prio, weight, port = _u16(data, start), _u16(data, start + 2), _u16(data, start + 4)
        return f"{prio} {weight} {port} {read_name(data, start + 6)[0]}"
    if rtype == 6:
        mname, pos = read_name(data, start)
        rname, pos = read_name(data, pos)
        if pos + 20 > start + length:
            raise ValueError("truncated SOA")
        nums = [int.from_bytes(data[pos + 4 * i : pos + 4 * i + 4], "big") for i in range(5)]
        return " ".join([mname, rname, *map(str, nums)])
    return rdata.hex()


def parse_header(data: bytes) -> Message:
    if len(data) < HEADER:
        raise ValueError(f"{len(data)} bytes, shorter than a header")
    return Message(
        trans_id=_u16(data, 0),
        flags=_u16(data, 2),
        qdcount=_u16(data, 4),
        ancount=_u16(data, 6),
        nscount=_u16(data, 8),
        arcount=_u16(data, 10),
    )


def _client_subnet(data: bytes) -> dict:
    """RFC 7871 6: family, source and scope prefix lengths, the address bytes (only as many
    as the source prefix needs) padded to a whole address."""
    if len(data) < 4:
        raise ValueError("ECS option shorter than 4 bytes")
    family, source, scope = _u16(data, 0), data[2], data[3]
    raw = data[4:]
    address: str | None = None
    if family == 1 and len(raw) <= 4:
        address = str(ipaddress.IPv4Address(raw.ljust(4, b"\0")))
    elif family == 2 and len(raw) <= 16:
        address = str(ipaddress.IPv6Address(raw.ljust(16, b"\0")))
    return {"family": family, "source_prefix": source, "scope_prefix": scope, "address": address}


def edns_fields(udp_size: int, ttl: int, rdata: bytes) -> dict:
    """The OPT pseudo-record (RFC 6891 6.1.2-6.1.3): requestor's UDP payload size (the
    CLASS field), the extended RCODE's upper 8 bits, version and DO flag (the TTL field), the
    options in wire order (`data` hex), and the client subnet option decoded (or null)."""
    options = []
    ecs = None
    i, n = 0, len(rdata)
    while i < n:
        if i + 4 > n:
            raise ValueError("truncated EDNS option header")
        code, length = _u16(rdata, i), _u16(rdata, i + 2)
        value = rdata[i + 4 : i + 4 + length]
        if len(value) < length:
            raise ValueError("EDNS option runs past the record")
        options.append(
            {"code": code, "name": EDNS_OPTION_NAMES.get(code, f"OPT{code}"), "data": value.hex()}
        )
        if code == 8 and ecs is None:
            ecs = _client_subnet(value)
        i += 4 + length
    return {
        "udp_size": udp_size,
        "ext_rcode": ttl >> 24,
        "version": (ttl >> 16) & 0xFF,
        "do": bool(ttl & 0x8000),
        "options": options,
        "client_subnet": ecs,
    }


def skip_name(data: bytes, pos: int) -> int:
    """The offset after the name at `pos`, without reading it (no pointer is followed)."""
    n_data = len(data)
    while True:
        if pos >= n_data:
            raise ValueError("name runs past the message")
        n = data[pos]
        if n >= 0xC0:
            if pos + 1 >= n_data:
                raise ValueError("truncated compression pointer")
            return pos + 2
        if n >= 0x40:
            raise ValueError(f"label type 0x{n:02x}")
        pos += 1 + n
        if n == 0:
            return pos


_RR_HEAD = struct.Struct("!HHIH")  # type, class, ttl, rdlength


def _rr(data: bytes, pos: int, what: str, text: bool = True) -> tuple[str, int, int, int, int, int]:
    """(owner name, type, class, ttl, rdata start, rdata length) of the record at `pos`;
    without `text` the name is skipped ("" in its place)."""
    if text:
        name, pos = read_name(data, pos)
    else:
        name, pos = "", skip_name(data, pos)
    if pos + 10 > len(data):
        raise ValueError(f"{what}: truncated record header")
    rtype, rclass, ttl, length = _RR_HEAD.unpack_from(data, pos)
    pos += 10
    if pos + length > len(data):
        raise ValueError(f"{what}: rdata runs past the message")
    return name, rtype, rclass, ttl, pos, length


def _find_opt(data: bytes, pos: int, msg: Message) -> None:
    """Walk past the authority and additional records without reading them (skip_name and
    _rr inlined: this runs for every response), and parse the OPT record into `msg.edns`."""
    if not msg.arcount:
        return  # no additional record: no OPT to find
    n = len(data)
    unpack = _RR_HEAD.unpack_from
    ns = msg.nscount
    for i in range(ns + msg.arcount):
        while True:  # the owner name
            if pos >= n:
                raise ValueError(f"record {i + 1} after the answers: name runs past the message")
            b = data[pos]
            if b >= 0xC0:
                pos += 2
                break
            if b >= 0x40:
                raise ValueError(f"record {i + 1} after the answers: label type 0x{b:02x}")
            pos += 1 + b
            if b == 0:
                break
        if pos + 10 > n:
            raise ValueError(f"record {i + 1} after the answers: truncated record header")
        rtype, rclass, ttl, length = unpack(data, pos)
        start = pos + 10
        pos = start + length
        if pos > n:
            raise ValueError(f"record {i + 1} after the answers: rdata runs past the message")
        if rtype == OPT and i >= ns and msg.edns is None:
            msg.edns = edns_fields(rclass, ttl, data[start:pos])


def _sections(data: bytes, pos: int, msg: Message, full: bool) -> None:
    """Authority and additional records: `{name, type, type_name, class, ttl, data}` (only
    when `full`: otherwise they are skipped and the lists stay empty); the OPT record becomes
    `msg.edns` either way."""
    if not full:
        _find_opt(data, pos, msg)
        return
    for count, out, label in (
        (msg.nscount, msg.authority, "authority"),
        (msg.arcount, msg.additional, "additional"),
    ):
        for i in range(count):
            name, rtype, rclass, ttl, start, length = _rr(data, pos, f"{label} {i + 1}", full)
            pos = start + length
            if rtype == OPT and label == "additional":
                if msg.edns is None:
                    msg.edns = edns_fields(rclass, ttl, data[start : start + length])
                continue
            if not full:
                continue
            if len(out) >= MAX_ANSWERS:
                msg.section_limit = True
                continue
            out.append(
                {
                    "name": name,
                    "type": rtype,
                    "type_name": type_name(rtype),
                    "class": rclass,
                    "ttl": ttl,
                    "data": rdata_text(data, rtype, start, length),
                }
            )


def parse_message(data: bytes, sections: bool = True) -> Message:
    """ValueError only when not even the header is there; later damage sets `error`.
    `sections`: read the authority and additional records (else only find the OPT record)."""
    msg = parse_header(data)
    pos = HEADER
    try:
        if msg.qdcount:
            qname, pos = read_name(data, pos)
            qtype, qclass = _u16(data, pos), _u16(data, pos + 2)
            msg.qname, msg.qtype, msg.qclass = qname, qtype, qclass
            pos += 4
            for _ in range(msg.qdcount - 1):  # further questions: skipped, only checked
                pos = read_name(data, pos)[1] + 4
        if pos > len(data):
            raise ValueError("truncated question")
        for i in range(msg.ancount):
            name, pos = read_name(data, pos)
            if pos + 10 > len(data):
                raise ValueError(f"answer {i + 1}: truncated record header")
            rtype = _u16(data, pos)
            ttl = int.from_bytes(data[pos + 4 : pos + 8], "big")
            length = _u16(data, pos + 8)
            pos += 10
            if pos + length > len(data):
                raise ValueError(f"answer {i + 1}: rdata runs past the message")
            if len(msg.answers) < MAX_ANSWERS:
                text = rdata_text(data, rtype, pos, length)
                msg.answers.append({"name": name, "type": rtype, "ttl": ttl, "data": text})
            else:
                msg.answer_limit = True
            pos += length
    except ValueError as exc:
        msg.error = str(exc)
        return msg
    try:
        _sections(data, pos, msg, sections)
    except ValueError as exc:
        msg.section_error = str(exc)
    return msg


_NETBIOS = re.compile(rb"\x20[A-P]{32}", re.DOTALL)  # RFC 1001 first-level encoded name


def plausible(data: bytes, direction_is_client: bool, complete: bool) -> bool | None:
    """Content probe for one message: a sane header and a well-formed first question.
    `complete`: the message is all there (UDP); otherwise a cut-off one may answer None."""
    if len(data) < HEADER:
        return False if complete else None
    flags = _u16(data, 2)
    qd, an, ns, ar = (_u16(data, i) for i in (4, 6, 8, 10))
    is_response = bool(flags & QR)
    if is_response == direction_is_client or flags & 0x0040 or not 1 <= qd <= 4:
        return False
    opcode = (flags >> 11) & 0xF
    if opcode not in (0, 2, 4, 5):
        return False
    if not is_response and (flags & 0xF or (opcode == 0 and (an or ns or ar > 2))):
        return False
    if max(an, ns, ar) > 256:
        return False
    try:
        if data[HEADER] >= 0x40:  # the first name cannot be compressed: nothing precedes it
            return False
        _, pos = read_name(data, HEADER)
        qtype, qclass = _u16(data, pos), _u16(data, pos + 2)
        if _NETBIOS.fullmatch(data, HEADER, HEADER + 33):
            return False  # NetBIOS name service (port 137): DNS-shaped, a protocol of its own
    except (ValueError, IndexError):  # damaged, or (TCP) not all there yet
        return None if not complete and len(data) < HEADER + MAX_NAME + 4 else False
    return qtype != 0 and (qclass & 0x7FFF) in (1, 3, 4, 254, 255)
