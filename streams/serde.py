"""The one canonical serializer of decoded records.

Key order is the order the record was built in (type, id, uid first, then the schema's
order), separators are compact, non-ASCII stays UTF-8, floats use Python's shortest
round-trip repr, NaN/Infinity are refused. Replay and the Kafka mode both call this, so
the same record is the same bytes everywhere.
"""

from __future__ import annotations

import json
from typing import Any

_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def dumps_record(record: dict[str, Any]) -> bytes:
    return _ENCODER.encode(record).encode("utf-8")


def loads_record(data: bytes | str) -> dict[str, Any]:
    return json.loads(data)
