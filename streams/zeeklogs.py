"""wirestream records -> Zeek log rows (conn, http, ssl, dns, weird): one table, pure.

Each log is a list of `(zeek field, zeek type, getter)`; a getter takes the record and
returns the value in Zeek's terms, or None for unset (`-`). A new record field is one line
here (the getters look for the documented record names first, and fall back to what the
record already carries, e.g. a header). Field names, order and types follow Zeek 7's
base scripts (conn.log also with policy/protocols/conn/community-id-logging and
vlan-logging); docs/zeek-logs.md lists what we cannot produce.

`zeek_rows(record)` gives `(path, values)` pairs; `zeek_json(values, fields)` one JSON line
as Zeek's LogAscii::use_json writes it (the Kafka form too: zeek-kafka sends those lines).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

Getter = Callable[[dict[str, Any]], Any]
Field = tuple[str, str, Getter]

# Our decoder names -> Zeek's analyzer names in conn.log's `service`.
_SERVICES = {"tls": "ssl"}
_TLS_VERSIONS = {0x0300: "SSLv3", 0x0301: "TLSv10", 0x0302: "TLSv11", 0x0303: "TLSv12"}
_TLS_VERSIONS[0x0304] = "TLSv13"
_DNS_CLASSES = {1: "C_INTERNET", 3: "C_CHAOS", 4: "C_HESIOD", 254: "C_NONE", 255: "C_ANY"}


def _get(record: dict[str, Any], *path: str) -> Any:
    value: Any = record
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _first(*paths: tuple[str, ...]) -> Getter:
    """The first of several record paths that is set (new names before old ones)."""

    def get(record: dict[str, Any]) -> Any:
        for path in paths:
            value = _get(record, *path)
            if value is not None:
                return value
        return None

    return get


def _path(*path: str) -> Getter:
    return lambda record: _get(record, *path)


def _header(side: str, name: str) -> Getter:
    """A header's first value from the raw pairs (when no top-level field carries it)."""
    lower = name.lower()

    def get(record: dict[str, Any]) -> Any:
        for key, value in _get(record, side, "headers") or ():
            if key.lower() == lower:
                return value
        return None

    return get


def _either(first: Getter, second: Getter) -> Getter:
    def get(record: dict[str, Any]) -> Any:
        value = first(record)
        return second(record) if value is None else value

    return get


_ID: list[Field] = [
    ("uid", "string", _path("uid")),
    ("id.orig_h", "addr", _path("client", "ip")),
    ("id.orig_p", "port", _path("client", "port")),
    ("id.resp_h", "addr", _path("server", "ip")),
    ("id.resp_p", "port", _path("server", "port")),
]


# -- conn.log --
def _service(r: dict[str, Any]) -> Any:
    service = r.get("service")
    if not service:
        return None
    return ",".join(_SERVICES.get(name, name) for name in service.split(","))


def _seen_duration(r: dict[str, Any]) -> bool:
    return bool(r.get("duration"))  # Zeek sets duration and bytes only when duration > 0


def _conn_bytes(direction: str) -> Getter:
    def get(r: dict[str, Any]) -> Any:
        if not _seen_duration(r):
            return None
        d = r[direction]
        # TCP: sequence space, gaps included (as Zeek counts it); others: payload bytes.
        return d["bytes"] + d["missed_bytes"] if r["proto"] == "tcp" else d["bytes"]

    return get


def _vlan(index: int) -> Getter:
    def get(r: dict[str, Any]) -> Any:
        vlans = r.get("vlan") or []
        return vlans[index] if len(vlans) > index else None

    return get


CONN: list[Field] = [
    ("ts", "time", _path("ts")),
    *_ID,
    ("proto", "enum", _path("proto")),
    ("service", "string", _service),
    ("duration", "interval", lambda r: r["duration"] if _seen_duration(r) else None),
    ("orig_bytes", "count", _conn_bytes("client_to_server")),
    ("resp_bytes", "count", _conn_bytes("server_to_client")),
    ("conn_state", "string", _path("state")),
    ("local_orig", "bool", lambda r: None),  # no Site::local_nets
    ("local_resp", "bool", lambda r: None),
    (
        "missed_bytes",
        "count",
        lambda r: r["client_to_server"]["missed_bytes"] + r["server_to_client"]["missed_bytes"],
    ),
    ("history", "string", lambda r: r.get("history") or None),
    ("orig_pkts", "count", _path("client_to_server", "packets")),
    ("orig_ip_bytes", "count", _path("client_to_server", "ip_bytes")),
    ("resp_pkts", "count", _path("server_to_client", "packets")),
    ("resp_ip_bytes", "count", _path("server_to_client", "ip_bytes")),
    ("tunnel_parents", "set[string]", lambda r: None),  # no tunnel decapsulation
    ("ip_proto", "count", _path("ip_proto")),
    ("community_id", "string", _path("community_id")),
    ("vlan", "int", _vlan(0)),
    ("inner_vlan", "int", _vlan(1)),
]


# -- http.log --
def _http_version(r: dict[str, Any]) -> Any:
    # Zeek's `version` is the reply's (the request's only when no reply was seen).
    version = _get(r, "response", "version") or _get(r, "request", "version")
    return version[5:] if isinstance(version, str) and version.startswith("HTTP/") else version


def _info(key: str) -> Getter:
    def get(r: dict[str, Any]) -> Any:
        informational = _get(r, "response", "informational") or []
        return informational[-1].get(key) if informational else None  # Zeek keeps the last

    return get


def _body_len(side: str) -> Getter:
    """Zeek's *_body_len is the body's uncompressed size (after Content-Encoding)."""

    def get(r: dict[str, Any]) -> Any:
        message = r.get(side) or {}
        decoded = message.get("decoded_body_len")
        return decoded if decoded is not None else message.get("body_len") or 0

    return get


def _listed(getter: Getter) -> Getter:
    """A vector field from one value (e.g. the response's sniffed MIME type)."""

    def get(r: dict[str, Any]) -> Any:
        value = getter(r)
        if value is None or isinstance(value, list):
            return value
        return [value]

    return get


HTTP: list[Field] = [
    ("ts", "time", _path("ts")),
    *_ID,
    ("trans_depth", "count", _path("trans_depth")),
    ("method", "string", _path("request", "method")),
    ("host", "string", _either(_first(("host",), ("request", "host")), _header("request", "Host"))),
    ("uri", "string", _path("request", "uri")),
    (
        "referrer",
        "string",
        _either(_first(("referrer",), ("request", "referrer")), _header("request", "Referer")),
    ),
    ("version", "string", _http_version),
    (
        "user_agent",
        "string",
        _either(
            _first(("user_agent",), ("request", "user_agent")), _header("request", "User-Agent")
        ),
    ),
    ("origin", "string", _either(_first(("origin",)), _header("request", "Origin"))),
    ("request_body_len", "count", _body_len("request")),
    ("response_body_len", "count", _body_len("response")),
    ("status_code", "count", _path("response", "status")),
    ("status_msg", "string", _path("response", "reason")),
    ("info_code", "count", _info("status")),
    ("info_msg", "string", _info("reason")),
    ("tags", "set[enum]", lambda r: []),  # Zeek's HTTP::Tags (URI_SQLI, ...): none of ours
    ("username", "string", lambda r: None),
    ("password", "string", lambda r: None),
    ("proxied", "set[string]", lambda r: None),
    ("orig_fuids", "vector[string]", lambda r: None),
    ("orig_filenames", "vector[string]", _listed(_path("request", "filename"))),
    ("orig_mime_types", "vector[string]", _listed(_path("request", "mime_type"))),
    ("resp_fuids", "vector[string]", lambda r: None),
    ("resp_filenames", "vector[string]", _listed(_path("response", "filename"))),
    ("resp_mime_types", "vector[string]", _listed(_path("response", "mime_type"))),
]


# -- ssl.log --
def _tls_version(r: dict[str, Any]) -> Any:
    named = _first(("version",), ("server_hello", "version_name"))(r)
    if named is not None:
        return named
    hello = r.get("server_hello") or {}
    raw = hello.get("selected_version") or hello.get("version")
    try:
        number = int(raw, 16) if isinstance(raw, str) else raw
    except ValueError:
        return None
    return _TLS_VERSIONS.get(number) if number is not None else None


SSL: list[Field] = [
    ("ts", "time", _path("ts")),
    *_ID,
    ("version", "string", _tls_version),
    ("cipher", "string", _first(("cipher",), ("server_hello", "cipher_name"))),
    ("curve", "string", _first(("curve",))),
    ("server_name", "string", _first(("server_name",), ("client_hello", "sni"))),
    ("resumed", "bool", _first(("resumed",))),
    ("last_alert", "string", _first(("last_alert",))),
    ("next_protocol", "string", _first(("next_protocol",), ("server_hello", "alpn"))),
    ("established", "bool", _first(("established",))),
    ("ssl_history", "string", _first(("ssl_history",))),
    ("cert_chain_fps", "vector[string]", _first(("cert_chain_fps",))),
    ("client_cert_chain_fps", "vector[string]", _first(("client_cert_chain_fps",))),
    ("subject", "string", _first(("subject",))),
    ("issuer", "string", _first(("issuer",))),
    ("client_subject", "string", lambda r: None),
    ("client_issuer", "string", lambda r: None),
    ("sni_matches_cert", "bool", _first(("sni_matches_cert",))),
    ("validation_status", "string", lambda r: None),
]


# -- dns.log --
# Zeek logs one name of these records, not their whole data: MX the exchange, SRV the
# target (the last field of our text), SOA the primary name server (the first).
_LAST_WORD, _FIRST_WORD = frozenset((15, 33)), frozenset((6,))


def _answer(answer: dict[str, Any]) -> Any:
    data = answer.get("data")
    if isinstance(data, str) and data:
        if answer.get("type") in _LAST_WORD:
            return data.rsplit(" ", 1)[-1]
        if answer.get("type") in _FIRST_WORD:
            return data.split(" ", 1)[0]
    return data


def _class_name(r: dict[str, Any]) -> Any:
    return _DNS_CLASSES.get(r.get("qclass"))  # type: ignore[arg-type]


def _answers(r: dict[str, Any]) -> Any:
    return [_answer(a) for a in r.get("answers") or []] or None


def _ttls(r: dict[str, Any]) -> Any:
    answers = r.get("answers") or []
    return [float(a["ttl"]) for a in answers if a.get("ttl") is not None] or None


DNS: list[Field] = [
    ("ts", "time", _path("ts")),
    *_ID,
    ("proto", "enum", _path("transport")),
    ("trans_id", "count", _path("trans_id")),
    ("rtt", "interval", _path("rtt")),
    ("query", "string", _path("query")),
    ("qclass", "count", _path("qclass")),
    ("qclass_name", "string", _either(_path("qclass_name"), _class_name)),
    ("qtype", "count", _path("qtype")),
    ("qtype_name", "string", _path("qtype_name")),
    ("rcode", "count", _path("rcode")),
    ("rcode_name", "string", _path("rcode_name")),
    ("AA", "bool", lambda r: bool(_get(r, "flags", "aa"))),
    ("TC", "bool", lambda r: bool(_get(r, "flags", "tc"))),
    ("RD", "bool", lambda r: bool(_get(r, "flags", "rd"))),
    ("RA", "bool", lambda r: bool(_get(r, "flags", "ra"))),
    ("Z", "count", lambda r: _get(r, "flags", "z") or 0),
    ("answers", "vector[string]", _answers),
    ("TTLs", "vector[interval]", _ttls),
    ("rejected", "bool", _first(("rejected",))),
]  # fmt: skip


# -- weird.log --
WEIRD: list[Field] = [
    ("ts", "time", _path("ts")),
    *_ID,
    ("name", "string", _path("name")),
    ("addl", "string", lambda r: r.get("detail") or None),
    ("notice", "bool", lambda r: False),
    ("peer", "string", lambda r: None),  # a cluster node name: not ours
    ("source", "string", lambda r: (r.get("decoder") or "").upper() or None),
]

# Record type -> (log path, fields). Anomalies without endpoints (none today) still map.
LOGS: dict[str, tuple[str, list[Field]]] = {
    "flow": ("conn", CONN),
    "http": ("http", HTTP),
    "tls": ("ssl", SSL),
    "dns": ("dns", DNS),
    "anomaly": ("weird", WEIRD),
}
PATHS = tuple(path for path, _ in LOGS.values())


def zeek_rows(record: dict[str, Any]) -> Iterator[tuple[str, list[Any]]]:
    """The Zeek log rows of one record: `(path, values in the log's field order)`."""
    entry = LOGS.get(record.get("type", ""))
    if entry is None:
        return
    path, fields = entry
    yield path, [get(record) for _, _, get in fields]


def fields_of(path: str) -> list[Field]:
    for log_path, fields in LOGS.values():
        if log_path == path:
            return fields
    raise KeyError(path)


# -- the two text forms --
_SEPARATOR, _SET_SEPARATOR, _EMPTY, _UNSET = "\t", ",", "(empty)", "-"


def _escape(text: str, in_set: bool = False) -> str:
    """Zeek's ASCII escaping: the separator, (in sets) the set separator, and control
    characters as \\xHH; a value that would read as `-` or `(empty)` gets its first
    character escaped."""
    if text in (_UNSET, _EMPTY):
        return f"\\x{ord(text[0]):02x}" + text[1:]
    out = []
    for ch in text:
        if ch < " " or ch == "\x7f" or (in_set and ch == _SET_SEPARATOR):
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def _tsv_atom(value: Any, kind: str, in_set: bool = False) -> str:
    if kind in ("time", "interval"):
        return f"{value:.6f}"
    if kind == "bool":
        return "T" if value else "F"
    if kind in ("count", "int", "port"):
        return str(int(value))
    if kind == "string" and not value:
        return _EMPTY
    return _escape(str(value), in_set)


def tsv_value(value: Any, kind: str) -> str:
    if value is None:
        return _UNSET
    if kind.startswith(("set[", "vector[")):
        if not value:
            return _EMPTY
        inner = kind[kind.index("[") + 1 : -1]
        return _SET_SEPARATOR.join(_tsv_atom(v, inner, True) for v in value)
    return _tsv_atom(value, kind)


def zeek_tsv(values: list[Any], fields: list[Field]) -> str:
    return _SEPARATOR.join(
        tsv_value(value, kind) for value, (_, kind, _) in zip(values, fields, strict=True)
    )


def _json_atom(value: Any, kind: str) -> Any:
    if kind in ("time", "interval"):
        return round(float(value), 6)
    if kind in ("count", "int", "port"):
        return int(value)
    if kind == "bool":
        return bool(value)
    return str(value)


_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def zeek_json(values: list[Any], fields: list[Field]) -> str:
    """One line as LogAscii::use_json=T writes it: flat dotted names, unset fields left
    out, times as epoch seconds, sets and vectors as arrays."""
    out: dict[str, Any] = {}
    for value, (name, kind, _) in zip(values, fields, strict=True):
        if value is None:
            continue
        if kind.startswith(("set[", "vector[")):
            inner = kind[kind.index("[") + 1 : -1]
            out[name] = [_json_atom(v, inner) for v in value]
        else:
            out[name] = _json_atom(value, kind)
    return _JSON.encode(out)


def zeek_json_lines(record: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """`(path, JSON line)` for one record: what a Kafka writer would send to the topic
    of `path` (zeek-kafka's one topic per log)."""
    for path, values in zeek_rows(record):
        yield path, zeek_json(values, fields_of(path))
