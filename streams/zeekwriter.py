"""Zeek-format log files in a directory: `replay --format zeek|zeek-json -o DIR`.

Rows are spooled per log (bounded memory: a SpooledTemporaryFile goes to disk past 4 MiB)
and each file is written at `close()`, because its header names the time of its first
row. #open and #close carry the capture's first and last record times (UTC), never the
wall clock, so the same capture always gives the same bytes. Only logs that got a row
are written, as Zeek does.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import IO, Any

from wirestream.streams.serde import loads_record
from wirestream.streams.zeeklogs import LOGS, fields_of, zeek_json, zeek_rows, zeek_tsv

FORMATS = ("zeek", "zeek-json")
_SPOOL_BYTES = 4 << 20


def _zeek_time(seconds: float) -> str:
    return time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime(seconds))


class ZeekLogWriter:
    """Records in, `<path>.log` files out (Zeek's ASCII TSV, or JSON lines)."""

    def __init__(self, directory: str, use_json: bool = False) -> None:
        self.directory = directory
        self.use_json = use_json
        self._rows: dict[str, IO[str]] = {}
        self._first: float | None = None
        self._last: float | None = None
        self._partial = b""
        self.rows: dict[str, int] = {}
        os.makedirs(directory, exist_ok=True)

    def add(self, record: dict[str, Any]) -> None:
        for ts in (record.get("ts"), record.get("ts_end")):
            if isinstance(ts, int | float):
                self._first = ts if self._first is None else min(self._first, ts)
                self._last = ts if self._last is None else max(self._last, ts)
        for path, values in zeek_rows(record):
            fields = fields_of(path)
            line = zeek_json(values, fields) if self.use_json else zeek_tsv(values, fields)
            spool = self._rows.get(path)
            if spool is None:
                spool = self._rows[path] = tempfile.SpooledTemporaryFile(  # noqa: SIM115
                    _SPOOL_BYTES, mode="w+", encoding="utf-8", newline="\n"
                )  # closed in close()
            spool.write(line + "\n")
            self.rows[path] = self.rows.get(path, 0) + 1

    def write(self, data: bytes) -> None:
        """A `write` for streams.replay.Replay: JSON-lines bytes, split at newlines."""
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if line:
                self.add(loads_record(line))

    def close(self) -> list[str]:
        """Write the log files; returns their paths (sorted)."""
        if self._partial:
            self.add(loads_record(self._partial))
            self._partial = b""
        written = []
        first = _zeek_time(self._first or 0.0)
        last = _zeek_time(self._last or 0.0)
        for path, spool in sorted(self._rows.items()):
            target = os.path.join(self.directory, f"{path}.log")
            spool.seek(0)
            with open(target, "w", encoding="utf-8", newline="\n") as out:
                if not self.use_json:
                    out.write(self._header(path, first))
                for line in spool:
                    out.write(line)
                if not self.use_json:
                    out.write(f"#close\t{last}\n")
            spool.close()
            written.append(target)
        self._rows.clear()
        return written

    @staticmethod
    def _header(path: str, opened: str) -> str:
        fields = fields_of(path)
        return (
            "#separator \\x09\n"
            "#set_separator\t,\n"
            "#empty_field\t(empty)\n"
            "#unset_field\t-\n"
            f"#path\t{path}\n"
            f"#open\t{opened}\n"
            "#fields\t" + "\t".join(name for name, _, _ in fields) + "\n"
            "#types\t" + "\t".join(kind for _, kind, _ in fields) + "\n"
        )


__all__ = ["FORMATS", "LOGS", "ZeekLogWriter"]
