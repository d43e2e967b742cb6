"""Exceptions of the probe package, each carrying a short stable reason for counting."""

from __future__ import annotations


class CaptureError(Exception):
    """A capture file cannot be read (further): not a capture, truncated, or corrupt.

    Records decoded before the damage have already been yielded; `offset` is the byte
    offset in the file where the damage starts.
    """

    def __init__(self, path: str, offset: int, message: str) -> None:
        super().__init__(path, offset, message)
        self.path = path
        self.offset = offset
        self.message = message

    def __str__(self) -> str:
        return f"{self.path}: offset {self.offset}: {self.message}"


class ParseError(Exception):
    """A frame is malformed. `kind` is a short stable identifier (e.g. "truncated_ipv4")
    meant for counters and anomaly records; it never contains packet data."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind

    def __str__(self) -> str:
        return self.kind


class RecordError(ValueError):
    """A packet record cannot be decoded; `reason` is short and stable (dead-letter reason)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class FlowKeyError(ValueError):
    """A flow key cannot be decoded; `reason` is short and stable."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason
