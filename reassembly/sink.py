"""What a flow delivers to: the runtime's per-flow consumer (decoder dispatch, records)."""

from __future__ import annotations

from typing import Protocol


class StreamSink(Protocol):
    """Receives one flow's reassembled streams; directions are decoders.api.CLIENT/SERVER."""

    def on_data(self, direction: int, data: bytes) -> None: ...

    def on_gap(self, direction: int, length: int) -> None: ...

    def on_close(self, reason: str) -> None: ...

    def role_hint(self, data: bytes) -> int | None:
        """For a flow seen without its handshake: which role (CLIENT/SERVER) the sender of
        these first payload bytes plays, judged by content, or None when unsure."""
        ...

    def anomaly(self, name: str, detail: str) -> None: ...
