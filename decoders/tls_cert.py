"""Certificate handshake messages (TLS <= 1.2: sent in clear) -> x509 fields, with the
`cryptography` package (pyca; pinned in pyproject.toml) doing the DER/X.509 parsing.

Pure functions: the decoder keeps only the resulting fields (msgpack-able), never the DER.
A certificate `cryptography` refuses still gets its fingerprint and an `error`.

Parsing costs about 0.3 ms per certificate, and servers send the same chain on every
connection: the fields are kept by fingerprint in a bounded cache (as Zeek's x509 cache),
so a repeated certificate costs one SHA-256. The cache only memoises a pure function of the
DER bytes: it cannot change a record.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

MAX_CERTS = 10  # certificates parsed per chain; the rest only counted
CACHE_SIZE = 2048  # certificates' fields kept by fingerprint (least recently used out)
_cache: OrderedDict[str, dict[str, Any]] = OrderedDict()


def _epoch(dt: datetime) -> int:
    return int(dt.astimezone(UTC).timestamp())


def _key(cert: x509.Certificate) -> tuple[str | None, int | None]:
    try:
        key = cert.public_key()
    except Exception:  # unsupported key type (e.g. GOST): still a certificate
        return None, None
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ecdsa", key.curve.key_size
    if isinstance(key, dsa.DSAPublicKey):
        return "dsa", key.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "ed448", 456
    return type(key).__name__, None


def _sans(cert: x509.Certificate) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"dns": [], "ip": [], "email": [], "uri": []}
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return out
    out["dns"] = list(ext.get_values_for_type(x509.DNSName))
    out["ip"] = [str(a) for a in ext.get_values_for_type(x509.IPAddress)]
    out["email"] = list(ext.get_values_for_type(x509.RFC822Name))
    out["uri"] = list(ext.get_values_for_type(x509.UniformResourceIdentifier))
    return out


def certificate_fields(der: bytes) -> dict[str, Any]:
    """One DER certificate: `{sha256, version, serial, subject, issuer, not_before, not_after,
    key_type, key_length, sig_alg, san_dns, san_ip, san_email, san_uri}` (names as RFC 4514
    strings, times epoch seconds, serial upper-case hex as Zeek's x509.log), or `{sha256,
    error}` when the DER does not parse."""
    fp = hashlib.sha256(der).hexdigest()
    hit = _cache.get(fp)
    if hit is not None:
        _cache.move_to_end(fp)
        return _copy(hit)
    fields = _parse(der, fp)
    _cache[fp] = fields
    if len(_cache) > CACHE_SIZE:
        _cache.popitem(last=False)
    return _copy(fields)


def _copy(fields: dict[str, Any]) -> dict[str, Any]:
    """A record's own copy (lists too): nothing downstream can alter the cached value."""
    return {k: list(v) if isinstance(v, list) else v for k, v in fields.items()}


def _parse(der: bytes, fp: str) -> dict[str, Any]:
    try:
        cert = x509.load_der_x509_certificate(der)
        key_type, key_length = _key(cert)
        sans = _sans(cert)
        return {
            "sha256": fp,
            "version": cert.version.value + 1,
            "serial": format(cert.serial_number, "X"),
            "subject": cert.subject.rfc4514_string(),
            "issuer": cert.issuer.rfc4514_string(),
            "not_before": _epoch(cert.not_valid_before_utc),
            "not_after": _epoch(cert.not_valid_after_utc),
            "key_type": key_type,
            "key_length": key_length,
            "sig_alg": getattr(cert.signature_algorithm_oid, "_name", None)
            or cert.signature_algorithm_oid.dotted_string,
            "san_dns": sans["dns"],
            "san_ip": sans["ip"],
            "san_email": sans["email"],
            "san_uri": sans["uri"],
        }
    except Exception as exc:  # hostile DER: whatever cryptography raises, the flow goes on
        return {"sha256": fp, "error": f"{type(exc).__name__}: {exc}"[:200]}


def parse_certificate_message(body: bytes) -> list[dict[str, Any]]:
    """A TLS 1.0-1.2 Certificate message body (RFC 5246 7.4.2): a 3-byte length, then each
    certificate with its own 3-byte length. ValueError on broken framing."""
    if len(body) < 3:
        raise ValueError("certificate message shorter than its length")
    total = int.from_bytes(body[:3], "big")
    if total != len(body) - 3:
        raise ValueError(f"certificate list length {total}, message has {len(body) - 3}")
    out: list[dict[str, Any]] = []
    pos = 3
    while pos < len(body):
        if pos + 3 > len(body):
            raise ValueError("truncated certificate length")
        n = int.from_bytes(body[pos : pos + 3], "big")
        pos += 3
        if pos + n > len(body):
            raise ValueError("certificate runs past the message")
        if len(out) < MAX_CERTS:
            out.append(certificate_fields(body[pos : pos + n]))
        pos += n
    return out
