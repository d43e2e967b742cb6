"""Replay on every core: the virtual partitions are spread over worker processes, as a
consumer group spreads a topic's partitions over its members (flows never cross
partitions, so nothing is shared).

Each worker reads the captures itself, parses and keys every packet (cheap: a few µs),
and processes only the packets of its own partitions (the expensive part: reassembly and
decoding) — like a group member that reads its partitions of the packets topic. No packet
crosses a process boundary. IP defragmentation runs in every worker over the whole
capture, so all workers see the same datagrams.

Each partition's records go to their own file, and the parent concatenates them in
partition order: the output is the same for any number of workers (grouped by partition;
a one-process replay interleaves partitions in packet order instead, with the same
records).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any


def _worker_main(
    conn: Connection,
    paths: Sequence[str],
    partitions: list[int],
    config: Any,
    state_dir: str,
    out_dir: str,
) -> None:
    from wirestream.decoders.registry import select
    from wirestream.probe.capture import open_capture
    from wirestream.probe.errors import CaptureError
    from wirestream.state.store import StateStore
    from wirestream.streams.config import tune_gc
    from wirestream.streams.serde import dumps_record
    from wirestream.streams.task import Task

    tune_gc()
    decoders = select(config.decoders)
    records: Counter[str] = Counter()
    anomalies: Counter[str] = Counter()
    files = {p: open(os.path.join(out_dir, f"part-{p}.jsonl"), "wb") for p in partitions}  # noqa: SIM115

    def emitter(partition: int) -> Callable[[str, str, dict[str, Any]], None]:
        write = files[partition].write

        def emit(record_type: str, _key: str, record: dict[str, Any]) -> None:
            records[record_type] += 1
            if record_type == "anomaly":
                anomalies[record["name"]] += 1
            write(dumps_record(record) + b"\n")

        return emit

    n = config.partitions
    tasks: list[Task | None] = [None] * n
    for p in partitions:
        store = StateStore(os.path.join(state_dir, f"flows-{p}"))
        tasks[p] = Task(p, config, decoders, emitter(p), store)
    source = config.packet_source()
    errors: list[str] = []
    commit_every = config.commit_every_packets
    mine = 0
    next_commit = commit_every
    from wirestream.streams.replay import PartitionCache, split_at_commits, unsupported_linktype

    partition_of = PartitionCache(n)

    def keep(key: bytes) -> bool:
        return tasks[partition_of(key)] is not None

    for path in paths:
        try:
            capture = open_capture(path)
            unsupported = unsupported_linktype(capture)
            if unsupported:
                errors.append(unsupported)
                capture.close()
                continue
            with capture:
                for whole in source.keyed_batches(capture.raw_batches(), keep):
                    for batch in split_at_commits(whole, mine, next_commit, commit_every):
                        for kp in batch:
                            tasks[partition_of(kp[0])].process_packet(kp[2], kp[0], kp[1])  # type: ignore[union-attr]
                        mine += len(batch)
                        if mine >= next_commit:  # outputs never depend on when commits happen
                            next_commit = mine + commit_every
                            for t in tasks:
                                if t is not None:
                                    t.commit()
        except CaptureError as exc:
            errors.append(str(exc))
    bad: Counter[str] = Counter(source.bad)
    flows = 0
    for task in tasks:
        if task is None:
            continue
        task.close_all("end_of_input")
        task.commit()
        task.store.close()  # type: ignore[union-attr]
        bad.update(task.bad_packets)
        flows += task.flows_finished
    for f in files.values():
        f.close()
    conn.send(
        {
            "records": dict(records),
            "anomalies": dict(anomalies),
            "task_bad": dict(bad - Counter(source.bad)),
            "source_bad": dict(source.bad),
            "flows": flows,
            "frames": source.frames,
            "bytes": source.bytes,
            "non_ip": source.non_ip,
            "defrag": source.defrag.stats.as_dict(),
            "errors": errors,
        }
    )
    conn.close()


def run_workers(
    paths: Sequence[str], workers: int, config: Any, state_dir: str, write: Callable[[bytes], Any]
) -> dict[str, Any]:
    """Replay `paths` with `workers` processes; returns the merged summary fields."""
    ctx = mp.get_context("spawn")  # no inherited RocksDB handles or threads
    out_dir = os.path.join(state_dir, "out")
    os.makedirs(out_dir, exist_ok=True)
    conns: list[Connection] = []
    procs = []
    try:
        for index in range(workers):
            parent, child = ctx.Pipe(duplex=False)
            owned = [p for p in range(config.partitions) if p % workers == index]
            proc = ctx.Process(
                target=_worker_main,
                args=(child, list(paths), owned, config, state_dir, out_dir),
                name=f"wirestream-worker-{index}",
                daemon=True,
            )
            proc.start()
            child.close()
            conns.append(parent)
            procs.append(proc)
        results = []
        for conn, proc in zip(conns, procs, strict=True):
            try:
                results.append(conn.recv())
            except EOFError:
                raise RuntimeError(f"{proc.name} died (exit code {proc.exitcode})") from None
            proc.join()
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
    for p in range(config.partitions):
        with open(os.path.join(out_dir, f"part-{p}.jsonl"), "rb") as f:
            while chunk := f.read(1 << 20):
                write(chunk)
    shutil.rmtree(out_dir, ignore_errors=True)
    merged: dict[str, Any] = {
        "records": Counter(),
        "anomalies": Counter(),
        "bad": Counter(),
        "flows": 0,
    }
    for result in results:
        merged["records"].update(result["records"])
        merged["anomalies"].update(result["anomalies"])
        merged["bad"].update(result["task_bad"])
        merged["flows"] += result["flows"]
    first = results[0]  # every worker read the same captures
    merged["bad"].update(first["source_bad"])
    for field in ("frames", "bytes", "non_ip", "defrag", "errors"):
        merged[field] = first[field]
    return merged
