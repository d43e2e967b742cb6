"""Embedded mode: replay captures through the same tasks a consumer group would run.

Flows are spread over `partitions` virtual partitions with Kafka's partitioner on the
flow key, each with its own task (flow table, stream time, limits, RocksDB store), so a
replay makes the same decisions as a group consuming an N-partition topic.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from wirestream.decoders.registry import select
from wirestream.probe.capture import open_capture
from wirestream.probe.errors import CaptureError
from wirestream.probe.flowkey import kafka_partition
from wirestream.probe.parse import SUPPORTED_LINKTYPES
from wirestream.probe.record import decode_record
from wirestream.state.store import StateStore
from wirestream.streams.config import RuntimeConfig, tune_gc
from wirestream.streams.serde import dumps_record, loads_record
from wirestream.streams.task import Task
from wirestream.streams.workers import run_workers

log = structlog.get_logger("wirestream.replay")

PROGRESS_MIN_BYTES = 20 << 20  # show a progress bar for inputs larger than this


@dataclass
class ReplaySummary:
    packets: int = 0
    bytes: int = 0
    flows: int = 0
    records: Counter[str] = field(default_factory=Counter)
    anomalies: Counter[str] = field(default_factory=Counter)  # anomaly records by name
    undecodable: Counter[str] = field(default_factory=Counter)
    non_ip: int = 0
    defrag: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def as_log(self) -> dict[str, Any]:
        rate = self.packets / self.seconds if self.seconds else 0.0
        return {
            "packets": self.packets,
            "bytes": self.bytes,
            "flows": self.flows,
            "transactions": self.records.get("http", 0),
            "anomalies": self.records.get("anomaly", 0),
            # decoders detached from a flow because a hook raised (plugin bugs)
            "decoder_errors": self.anomalies.get("decoder_error", 0),
            "undecodable_packets": sum(self.undecodable.values()),
            "undecodable_by_kind": dict(sorted(self.undecodable.items())),
            "non_ip_packets": self.non_ip,
            "records": dict(sorted(self.records.items())),
            "seconds": round(self.seconds, 3),
            "packets_per_s": round(rate),
            "capture_errors": len(self.errors),
        }


class Replay:
    """Runs captures through per-partition tasks; records go to `write` as JSON lines."""

    def __init__(
        self,
        config: RuntimeConfig,
        write: Callable[[bytes], Any],
        state_dir: str | None = None,
        progress: bool = False,
        verify_records: bool = False,
        workers: int = 1,
    ) -> None:
        self.config = config
        self.write = write
        self.progress = progress
        self.verify_records = verify_records
        self.summary = ReplaySummary()
        self._own_state_dir = state_dir is None
        self.state_dir = state_dir or tempfile.mkdtemp(prefix="wirestream-replay-")
        decoders = select(config.decoders)  # also fails early on an unknown decoder name
        self.workers = min(workers, config.partitions)
        self.tasks: list[Task] = []
        if self.workers == 1:
            self.tasks = [
                Task(
                    p,
                    config,
                    decoders,
                    self._emit,
                    StateStore(os.path.join(self.state_dir, f"flows-{p}")),
                )
                for p in range(config.partitions)
            ]
        self.source = config.packet_source()
        tune_gc()

    def _emit(self, record_type: str, key: str, record: dict[str, Any]) -> None:
        self.summary.records[record_type] += 1
        if record_type == "anomaly":
            self.summary.anomalies[record["name"]] += 1
        self.write(dumps_record(record) + b"\n")

    def run(self, paths: Sequence[str]) -> ReplaySummary:
        started = time.perf_counter()
        try:
            if self.workers > 1:
                self._run_workers(paths)
            else:
                for path in paths:
                    self._replay_file(path)
                for task in self.tasks:
                    task.close_all("end_of_input")
                    task.commit()
        finally:
            self.summary.seconds = time.perf_counter() - started
            self._finish()
        return self.summary

    def _run_workers(self, paths: Sequence[str]) -> None:
        merged = run_workers(paths, self.workers, self.config, self.state_dir, self.write)
        s = self.summary
        s.records.update(merged["records"])
        s.anomalies.update(merged["anomalies"])
        s.undecodable.update(merged["bad"])
        s.flows = merged["flows"]
        s.defrag = merged["defrag"]
        for error in merged["errors"]:
            self._capture_error_text(error)
        self.source.frames, self.source.bytes = merged["frames"], merged["bytes"]
        self.source.non_ip = merged["non_ip"]

    def _replay_file(self, path: str) -> None:
        tasks = self.tasks
        n = self.config.partitions
        commit_every = self.config.commit_every_packets
        verify = self.verify_records
        counter = 0
        next_commit = commit_every
        try:
            capture = open_capture(path)
        except CaptureError as exc:
            self._capture_error(exc)
            return
        unsupported = unsupported_linktype(capture)
        if unsupported:
            self._capture_error_text(unsupported)
            capture.close()
            return
        bar = self._progress_bar(path, capture)
        partition_of = PartitionCache(n)
        try:
            for whole in self.source.keyed_batches(capture.raw_batches()):
                # Commit exactly every `commit_every` packets, inside a batch if need be
                # (--commit-every 1 snapshots every decoder after every packet).
                for batch in split_at_commits(whole, counter, next_commit, commit_every):
                    if verify:
                        for kp in batch:
                            task = tasks[partition_of(kp.key)]
                            task.process_record(kp.record())
                            assert decode_record(kp.record()).frame == kp.frame
                    elif n == 1:
                        tasks[0].process_batch(batch)
                    else:  # one packet at a time: records interleave in packet order
                        for kp in batch:
                            tasks[partition_of(kp[0])].process_packet(kp[2], kp[0], kp[1])
                    counter += len(batch)
                    if counter >= next_commit:  # outputs never depend on when commits happen
                        next_commit = counter + commit_every
                        for t in tasks:
                            t.commit()
                if bar is not None:
                    bar.update(capture.bytes_read - bar.n)  # redraws at most every 0.5 s
        except CaptureError as exc:
            self._capture_error(exc)
        finally:
            capture.close()
            if bar is not None:
                bar.n = capture.bytes_read
                bar.close()

    def _progress_bar(self, path: str, capture: Any) -> Any:
        if not self.progress or capture.size < PROGRESS_MIN_BYTES:
            return None
        from tqdm import tqdm

        return tqdm(
            total=capture.size,
            unit="B",
            unit_scale=True,
            desc=os.path.basename(path),
            leave=False,
            mininterval=0.5,
        )

    def _capture_error(self, exc: CaptureError) -> None:
        self._capture_error_text(str(exc))

    def _capture_error_text(self, text: str) -> None:
        self.summary.errors.append(text)
        log.error("capture_error", error=text)

    def _finish(self) -> None:
        s = self.summary
        src = self.source
        s.packets, s.bytes, s.non_ip = src.frames, src.bytes, src.non_ip
        s.undecodable.update(src.bad)
        for task in self.tasks:
            s.undecodable.update(task.bad_packets)
            s.flows += task.flows_finished
            if task.store is not None:
                task.store.close()
        if not s.defrag:
            s.defrag = src.defrag.stats.as_dict()
        for kind, count in sorted(s.undecodable.items()):
            log.warning("undecodable_packets", kind=kind, count=count)
        if self._own_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)


def split_at_commits(
    batch: list[Any], counter: int, next_commit: int, commit_every: int
) -> Iterator[list[Any]]:
    """`batch` cut where the packet count reaches a commit point (`counter` packets done,
    the next commit after `next_commit`, then every `commit_every`); usually one piece."""
    start = 0
    while len(batch) - start > next_commit - counter:
        stop = start + max(1, next_commit - counter)
        yield batch[start:stop]
        counter += stop - start
        next_commit = counter + commit_every
        start = stop
    yield batch if start == 0 else batch[start:]


class PartitionCache:
    """`kafka_partition(key, n)` of recently seen flow keys: murmur2 in Python costs more
    than the rest of a packet's keying, and a flow's packets come in runs."""

    __slots__ = ("_known", "_n")

    MAX_KEYS = 1 << 16

    def __init__(self, partitions: int) -> None:
        self._n = partitions
        self._known: dict[bytes, int] = {}

    def __call__(self, key: bytes) -> int:
        part = self._known.get(key)
        if part is None:
            if self._n == 1:
                return 0
            if len(self._known) >= self.MAX_KEYS:
                self._known.clear()
            part = self._known[key] = kafka_partition(key, self._n)
        return part


def unsupported_linktype(capture: Any) -> str | None:
    """A one-line error when the capture's link type is one we cannot parse."""
    if capture.linktype is None or capture.linktype in SUPPORTED_LINKTYPES:
        return None
    offset = 20 if capture.format == "pcap" else 0
    supported = ", ".join(map(str, sorted(SUPPORTED_LINKTYPES)))
    return (
        f"{capture.path}: offset {offset}: unsupported link type {capture.linktype} "
        f"(supported: {supported})"
    )


def replay_records(
    paths: Sequence[str],
    *,
    partitions: int = 1,
    decoders: list[str] | None = None,
    config: RuntimeConfig | None = None,
    verify_records: bool = False,
    workers: int = 1,
) -> list[dict[str, Any]]:
    """Replay `paths` and return the records, parsed back (for tests and notebooks)."""
    config = config or RuntimeConfig()
    config.partitions = partitions
    if decoders is not None:
        config.decoders = decoders
    lines: list[bytes] = []
    Replay(config, lines.append, verify_records=verify_records, workers=workers).run(list(paths))
    return [loads_record(line) for line in b"".join(lines).splitlines()]
