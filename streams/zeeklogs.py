"""wirestream records -> Zeek log rows (conn, http, files, ssl, x509, dns, weird): one
table, pure.

Each log is a list of `(zeek field, zeek type, getter)`; a getter takes the record (or, for
x509 and files, one certificate or one HTTP body of it) and returns the value in Zeek's
terms, or None for unset (`-`). A new record field is one line here. Field names, order and
types follow Zeek 6/7's default scripts (conn.log also with
policy/protocols/conn/community-id-logging and vlan-logging, ssl.log with validate-certs);
docs/zeek-logs.md lists what we cannot produce.

`zeek_rows(record)` gives `(path, values)` pairs; `zeek_json(values, fields)` one JSON line
as Zeek's LogAscii::use_json writes it (the Kafka form too: zeek-kafka sends those lines).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
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


def _content_len(message: dict[str, Any]) -> Any:
    """The body's content size: decoded when a Content-Encoding was undone (what Zeek's
    files framework sees), else the body as sent."""
    decoded = message.get("decoded_body_len")
    return decoded if decoded is not None else message.get("body_len")


def _has_file(r: dict[str, Any], side: str) -> bool:
    """A files.log row for this side: a body with content (Zeek opens no file without)."""
    message = r.get(side)
    return isinstance(message, dict) and bool(_content_len(message))


def fuid(record_id: str, side: str) -> str:
    """Deterministic file id: `F` + 16 base32 characters of sha256(record id, side), the
    same shape as our flow uids (Zeek's fuids are random per run)."""
    digest = hashlib.sha256(f"{record_id}:{side}".encode()).digest()
    return "F" + base64.b32encode(digest[:10]).decode("ascii").lower()


def _fuid_of(r: dict[str, Any], side: str) -> Any:
    return fuid(str(r.get("id")), side) if _has_file(r, side) else None


def _filename_of(r: dict[str, Any], side: str) -> Any:
    """The record's `filename` (Content-Disposition: the response's, else the request's)
    on the side whose headers carry Content-Disposition and whose body is a file."""
    name = r.get("filename")
    if name is None or not _has_file(r, side):  # Zeek names files, not messages
        return None
    if side == "request" and _header("response", "Content-Disposition")(r) is not None:
        return None
    return name if _header(side, "Content-Disposition")(r) is not None else None


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
    ("orig_fuids", "vector[string]", _listed(lambda r: _fuid_of(r, "request"))),
    ("orig_filenames", "vector[string]", _listed(lambda r: _filename_of(r, "request"))),
    ("orig_mime_types", "vector[string]", _listed(_path("request", "body_mime"))),
    ("resp_fuids", "vector[string]", _listed(lambda r: _fuid_of(r, "response"))),
    ("resp_filenames", "vector[string]", _listed(lambda r: _filename_of(r, "response"))),
    ("resp_mime_types", "vector[string]", _listed(_path("response", "body_mime"))),
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


def _last_alert(r: dict[str, Any]) -> Any:
    alerts = r.get("alerts") or []
    return alerts[-1].get("description_name") if alerts else None


def _parsed(certs: Any) -> list[dict[str, Any]]:
    """Certificates the parser read (Zeek logs no x509 for one OpenSSL refuses)."""
    return [c for c in certs or [] if "error" not in c]


def _chain_fps(key: str) -> Getter:
    """Zeek >= 4.1: both vectors are set (maybe empty) once any certificate was seen,
    unset otherwise (TLS 1.3, resumption)."""

    def get(r: dict[str, Any]) -> Any:
        if not (r.get("server_certificates") or r.get("client_certificates")):
            return None
        return [c["sha256"] for c in _parsed(r.get(key))]

    return get


# Zeek 6/7 default columns: subject, issuer, client_subject and client_issuer are excluded
# by SSL::log_include_*_certificate_subject_issuer = F (x509.log carries them);
# validation_status comes from policy/protocols/ssl/validate-certs (local.zeek).
SSL: list[Field] = [
    ("ts", "time", _path("ts")),
    *_ID,
    ("version", "string", _tls_version),
    ("cipher", "string", _first(("cipher",), ("server_hello", "cipher_name"))),
    ("curve", "string", _first(("curve",))),  # no record field (ServerKeyExchange unread)
    ("server_name", "string", _first(("server_name",), ("client_hello", "sni"))),
    ("resumed", "bool", _path("resumed")),
    ("last_alert", "string", _last_alert),
    ("next_protocol", "string", _path("alpn")),
    ("established", "bool", _path("established")),
    ("ssl_history", "string", lambda r: None),
    ("cert_chain_fps", "vector[string]", _chain_fps("server_certificates")),
    ("client_cert_chain_fps", "vector[string]", _chain_fps("client_certificates")),
    ("sni_matches_cert", "bool", lambda r: None),
    ("validation_status", "string", lambda r: None),
]


# -- x509.log: one row per parsed certificate of a tls record (items from _x509_items) --
_KEY_ALGS = {"rsa": ("rsaEncryption", "rsa"), "dsa": ("dsaEncryption", "dsa"),
             "ecdsa": ("id-ecPublicKey", "ec"), "ed25519": ("ED25519", None),
             "ed448": ("ED448", None)}  # fmt: skip


def _x509_items(r: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for key, client in (("server_certificates", False), ("client_certificates", True)):
        for depth, cert in enumerate(r.get(key) or []):
            if "error" not in cert:
                yield {"ts": r.get("ts"), "cert": cert, "host": depth == 0, "client": client}


def _cert(name: str) -> Getter:
    return lambda item: item["cert"].get(name)


def _key_alg(index: int) -> Getter:
    return lambda item: (_KEY_ALGS.get(item["cert"].get("key_type")) or (None, None))[index]


def _key_length(item: dict[str, Any]) -> Any:
    return item["cert"].get("key_length") if _key_alg(1)(item) is not None else None


def _san(name: str) -> Getter:
    return lambda item: item["cert"].get(name) or None  # Zeek: unset when none


X509: list[Field] = [
    ("ts", "time", _path("ts")),
    ("fingerprint", "string", _cert("sha256")),
    ("certificate.version", "count", _cert("version")),
    ("certificate.serial", "string", _cert("serial")),
    ("certificate.subject", "string", _cert("subject")),
    ("certificate.issuer", "string", _cert("issuer")),
    ("certificate.not_valid_before", "time", _cert("not_before")),
    ("certificate.not_valid_after", "time", _cert("not_after")),
    ("certificate.key_alg", "string", _key_alg(0)),
    ("certificate.sig_alg", "string", _cert("sig_alg")),
    ("certificate.key_type", "string", _key_alg(1)),
    ("certificate.key_length", "count", _key_length),
    ("certificate.exponent", "string", lambda item: None),
    ("certificate.curve", "string", lambda item: None),
    ("san.dns", "vector[string]", _san("san_dns")),
    ("san.uri", "vector[string]", _san("san_uri")),
    ("san.email", "vector[string]", _san("san_email")),
    ("san.ip", "vector[addr]", _san("san_ip")),
    ("basic_constraints.ca", "bool", lambda item: None),
    ("basic_constraints.path_len", "count", lambda item: None),
    ("host_cert", "bool", _path("host")),
    ("client_cert", "bool", _path("client")),
]


# -- files.log: one row per HTTP body with content (items from _file_items) --
def _file_items(r: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for side in ("request", "response"):
        if _has_file(r, side):
            yield {"record": r, "side": side, "body": r[side]}


def _rec(getter: Getter) -> Getter:
    return lambda item: getter(item["record"])


def _body(name: str) -> Getter:
    return lambda item: item["body"].get(name)


def _intact(name: str) -> Getter:
    """A hash of the content, unset when bytes were lost (Zeek's hashes need them all)."""
    return lambda item: None if item["body"].get("missed_bytes") else item["body"].get(name)


def _analyzers(item: dict[str, Any]) -> list[str]:
    body = item["body"]
    names = ["SHA256"]
    names += ["MD5"] if "body_md5" in body else []
    names += ["SHA1"] if "body_sha1" in body else []
    names += ["EXTRACT"] if body.get("extracted") else []
    return sorted(names)


def _total_bytes(item: dict[str, Any]) -> Any:
    """Content-Length when no Content-Encoding applies (as Zeek's HTTP analyzer sets the
    file's size), else unset."""
    if "decoded_body_len" in item["body"]:
        return None
    value = _header(item["side"], "Content-Length")(item["record"])
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _extracted_size(item: dict[str, Any]) -> Any:
    return _content_len(item["body"]) if item["body"].get("extracted") else None


FILES: list[Field] = [
    ("ts", "time", _rec(_path("ts"))),
    ("fuid", "string", lambda item: fuid(str(item["record"].get("id")), item["side"])),
    *[(name, kind, _rec(get)) for name, kind, get in _ID],
    ("source", "string", lambda item: "HTTP"),
    ("depth", "count", lambda item: 0),  # no multipart entities: the body is one file
    ("analyzers", "set[string]", _analyzers),
    ("mime_type", "string", _body("body_mime")),
    ("filename", "string", lambda item: _filename_of(item["record"], item["side"])),
    ("duration", "interval", lambda item: None),  # no body start/end times
    ("local_orig", "bool", lambda item: None),
    ("is_orig", "bool", lambda item: item["side"] == "request"),
    ("seen_bytes", "count", lambda item: _content_len(item["body"])),
    ("total_bytes", "count", _total_bytes),
    ("missing_bytes", "count", lambda item: item["body"].get("missed_bytes") or 0),
    ("overflow_bytes", "count", lambda item: 0),
    ("timedout", "bool", lambda item: False),
    ("parent_fuid", "string", lambda item: None),
    ("md5", "string", _intact("body_md5")),
    ("sha1", "string", _intact("body_sha1")),
    ("sha256", "string", lambda item: _intact("decoded_body_sha256")(item)
     or _intact("body_sha256")(item)),
    ("extracted", "string", _body("extracted")),
    ("extracted_cutoff", "bool", lambda item: None),
    ("extracted_size", "count", _extracted_size),
]  # fmt: skip


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

Rows = Callable[[dict[str, Any]], Iterable[dict[str, Any]]]


def _one(record: dict[str, Any]) -> Iterable[dict[str, Any]]:
    return (record,)


# Record type -> its logs: (path, fields, rows), where `rows` gives the items the getters
# read: the record itself (one row), or one item per certificate / per HTTP body. A log
# with no item gets no row (and no file: the writer writes only logs that got rows).
LOGS: dict[str, list[tuple[str, list[Field], Rows]]] = {
    "flow": [("conn", CONN, _one)],
    "http": [("http", HTTP, _one), ("files", FILES, _file_items)],
    "tls": [("ssl", SSL, _one), ("x509", X509, _x509_items)],
    "dns": [("dns", DNS, _one)],
    "anomaly": [("weird", WEIRD, _one)],
}  # Anomalies without endpoints (none today) still map.
_FIELDS = {path: fields for logs in LOGS.values() for path, fields, _ in logs}
PATHS = tuple(_FIELDS)


def zeek_rows(record: dict[str, Any]) -> Iterator[tuple[str, list[Any]]]:
    """The Zeek log rows of one record: `(path, values in the log's field order)`."""
    for path, fields, rows in LOGS.get(record.get("type", ""), ()):
        for item in rows(record):
            yield path, [get(item) for _, _, get in fields]


def fields_of(path: str) -> list[Field]:
    return _FIELDS[path]


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
