"""The output record: the input record plus `enrichment` or `enrichment_error`."""

from __future__ import annotations

import base64
from typing import Any

from wirestream.streams.serde import dumps_record, loads_record


def parse(value: bytes) -> dict[str, Any] | None:
    try:
        record = loads_record(value)
    except (ValueError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


def enriched(record: dict[str, Any], value: Any) -> bytes:
    out = dict(record)
    out["enrichment"] = value
    return dumps_record(out)


def failed(record: dict[str, Any], error: dict[str, Any]) -> bytes:
    out = dict(record)
    out["enrichment_error"] = error
    return dumps_record(out)


def unreadable(value: bytes) -> bytes:
    """An input value that is not a JSON object still goes out (never lost)."""
    return dumps_record(
        {
            "enrichment_error": {"kind": "input", "detail": "the input is not a JSON object",
                                 "status": None, "attempts": 0, "final": True},
            "input_b64": base64.b64encode(value).decode("ascii"),
        }
    )  # fmt: skip
