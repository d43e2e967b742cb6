"""Zeek JSON logs as records of their own, one type per log: `zeek-conn`, `zeek-http`,
`zeek-files`, `zeek-ssl`, `zeek-x509`, `zeek-dns`, `zeek-weird` (option `--zeek-topics`).

A TaskExtension that watches the task's records (no packets: the batch path stays as it
is) and emits, for each record that maps to a Zeek log, the JSON object Zeek's
LogAscii::use_json writes (streams/zeeklogs.py). Kafka mode sends each record type to
topic `<prefix><type>`, so the logs land in `<prefix>zeek-conn`, `<prefix>zeek-http`,
... as zeek-kafka's one topic per log; the message key is the flow's uid. Replay prints
them among the other records. Stateless: nothing to save.
"""

from __future__ import annotations

import json
from typing import Any

from wirestream.probe.packet import Packet
from wirestream.streams.session import Emit
from wirestream.streams.zeeklogs import zeek_json_lines

NAME = "zeek"
TYPE_PREFIX = "zeek-"


class ZeekJsonRecords:
    """TaskExtension: record in, its Zeek JSON log line(s) out as `zeek-<path>` records."""

    name = NAME
    packets = False

    def __init__(self, partition: int, emit: Emit, options: dict[str, Any]) -> None:
        self._emit = emit

    def on_packet(self, pkt: Packet, flow: Any) -> None:
        return None  # (not called: packets = False)

    def on_record(self, record_type: str, record: dict[str, Any]) -> None:
        for path, line in zeek_json_lines(record):
            self._emit(TYPE_PREFIX + path, record.get("uid", ""), json.loads(line))

    def advance(self, now_ns: int) -> None:
        return None

    def close(self) -> None:
        return None

    def snapshot(self) -> Any:
        return None

    def restore(self, state: Any) -> None:
        return None


def configure(config: Any) -> None:
    """Add the Zeek JSON records to a RuntimeConfig."""
    if ZeekJsonRecords not in config.extensions:
        config.extensions.append(ZeekJsonRecords)
