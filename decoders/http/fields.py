"""The http record's convenience fields (what Zeek's http.log and Suricata's eve http carry at
the top level), derived from the transaction's heads and times when it is emitted.

Pure functions of the kept header pairs and capture times: no state of their own, so a
restore cannot change them, and nothing runs per packet.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

# RFC 6266 / RFC 9110 parameters: `; name = token` or `; name = "quoted string"`.
_PARAM = re.compile(
    r';\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)', re.DOTALL
)
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
# RFC 8187 ext-value: charset ' [ language ] ' value-chars
_EXT_VALUE = re.compile(r"([!#$%&+\-^_`{}~0-9A-Za-z]+)'[^']*'(.*)", re.DOTALL)


_WANTED = frozenset({"host", "user-agent", "referer", "content-type", "content-disposition"})
_LENGTHS = frozenset(len(n) for n in _WANTED)  # most other headers are passed without lower()


def _firsts(headers: list[list[str]] | None) -> dict[str, str]:
    """The first value (stripped) of each header in _WANTED, in one pass."""
    out: dict[str, str] = {}
    for n, v in headers or ():
        if len(n) in _LENGTHS:
            k = n.lower()
            if k in _WANTED and k not in out:
                out[k] = v.strip()
    return out


def mime_type(value: str | None) -> str | None:
    """A Content-Type value's media type without its parameters, lower case (RFC 9110 8.3.1:
    type and subtype are case-insensitive); None when absent or empty."""
    if value is None:
        return None
    mt = value.split(";", 1)[0].strip().lower()
    return mt or None


def _as_utf8(text: str) -> str:
    """Header text was decoded as latin-1; raw UTF-8 filenames (what browsers send and
    accept) are read as UTF-8 when the bytes are valid UTF-8."""
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def _ext_value(value: str) -> str | None:
    m = _EXT_VALUE.fullmatch(value.strip())
    if m is None:
        return None
    charset = m.group(1).lower()
    if charset not in ("utf-8", "iso-8859-1"):  # RFC 8187 3.2.1: the two to support
        return None
    return unquote(m.group(2), encoding=charset, errors="replace")


def disposition_filename(value: str | None) -> str | None:
    """The file name a Content-Disposition value gives (RFC 6266 4.3): `filename*` (RFC 8187
    `charset'lang'pct-encoded`) when present and decodable, else `filename` (token or quoted
    string). Path information is dropped as 4.3 asks (the part after the last `/` or `\\`),
    so the name never carries directories; empty names give None."""
    if value is None:
        return None
    plain = star = None
    for m in _PARAM.finditer(";" + value.split(";", 1)[1] if ";" in value else ""):
        name = m.group(1).lower()
        raw = m.group(2).strip()
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = _QUOTED_PAIR.sub(r"\1", raw[1:-1])
        if name == "filename*" and star is None:
            star = _ext_value(raw)
        elif name == "filename" and plain is None:
            plain = _as_utf8(raw)
    name = star if star is not None else plain
    if name is None:
        return None
    name = re.split(r"[/\\]", name)[-1].strip()
    return name or None


def _seconds(a_ns: int, b_ns: int) -> float:
    """a - b in seconds, from the microsecond times records carry (no float drift)."""
    return (a_ns // 1000 - b_ns // 1000) / 1_000_000


def txn_fields(req: Any, resp: Any) -> dict[str, Any]:
    """The top-level fields of one transaction (`req`, `resp`: decoders.http.msg.Msg or None).

    Times: `latency` = response's first byte - request's last byte (the server's think time
    plus one network path: time to first byte), null when the response began first (an early
    answer to an upload); `response_time` = response's last byte - request's first byte (the
    whole exchange). Both null unless request and response were seen."""
    rh = _firsts(req.head.get("headers")) if req is not None else {}
    sh = _firsts(resp.head.get("headers")) if resp is not None else {}
    filename = disposition_filename(sh.get("content-disposition"))
    if filename is None:
        filename = disposition_filename(rh.get("content-disposition"))
    latency = response_time = None
    if req is not None and resp is not None:
        if resp.ts_ns >= req.end_ns:
            latency = _seconds(resp.ts_ns, req.end_ns)
        response_time = _seconds(max(resp.end_ns, req.end_ns), req.ts_ns)
    return {
        "host": rh.get("host"),
        "user_agent": rh.get("user-agent"),
        "referrer": rh.get("referer"),
        "request_content_type": mime_type(rh.get("content-type")),
        "response_content_type": mime_type(sh.get("content-type")),
        "filename": filename,
        "latency": latency,
        "response_time": response_time,
    }
