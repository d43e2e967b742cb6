"""A third-party decoder, as a plugin author would write one: a line protocol recognised by
content ("LINECOUNT" greeting), emitting one record per flow with the lines per direction.
It lives outside wirestream and reaches it only through the entry point. docs/plugins.md
walks through it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wirestream.api import CLIENT, Decoder, DecoderContext, ts_seconds

MAGIC = b"LINECOUNT"


class LineCountDecoder(Decoder):
    name = "linecount"
    # -O linecount.weight=0.5 -O linecount.tag=lab -O linecount.count_gaps=false; every
    # decoder also takes -O linecount.ports=7000,7001 (empty by default here).
    option_defaults = {"weight": 1.0, "tag": "", "count_gaps": True}

    @classmethod
    def probe(cls, direction: int, data: bytes) -> bool | None:
        if direction != CLIENT:
            return False
        if len(data) < len(MAGIC):
            return None if MAGIC.startswith(data) else False
        return data.startswith(MAGIC)

    def __init__(self, ctx: DecoderContext, options: Mapping[str, Any]) -> None:
        super().__init__(ctx, options)
        self.lines = [0, 0]
        self.gaps = 0

    def on_data(self, direction: int, data: bytes) -> None:
        self.lines[direction] += data.count(b"\n")

    def on_gap(self, direction: int, length: int) -> None:
        if self.options["count_gaps"]:
            self.gaps += 1

    def on_close(self, reason: str) -> None:
        self.ctx.emit(
            "linecount",
            {
                "ts": ts_seconds(self.ctx.ts_ns),
                "client_lines": self.lines[0],
                "server_lines": self.lines[1],
                "gaps": self.gaps,
                "weighted_lines": (self.lines[0] + self.lines[1]) * self.options["weight"],
                "tag": self.options["tag"],
            },
        )

    def snapshot(self) -> Any:
        return [self.lines, self.gaps]

    @classmethod
    def restore(cls, ctx: DecoderContext, options: Mapping[str, Any], state: Any) -> Decoder:
        decoder = cls(ctx, options)
        decoder.lines, decoder.gaps = list(state[0]), state[1]
        return decoder
