"""Settings of `wirestream replay` (besides the runtime's, streams/runtime_settings.py);
each field is an option (streams/options.py)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from wirestream.streams.argtypes import positive_int
from wirestream.streams.config import RuntimeConfig
from wirestream.streams.options import option

# RuntimeConfig's own default (the Kafka mode commits on its own interval instead).
_COMMIT_EVERY = next(f.default for f in fields(RuntimeConfig) if f.name == "commit_every_packets")


@dataclass(frozen=True, kw_only=True)
class ReplaySettings:
    output: str = option(
        "-",
        flags=("-o",),
        metavar="FILE",
        show=None,
        help="where the JSON lines go; '-' = stdout (default); with --format zeek or "
        "zeek-json: the directory the logs go to",
    )
    format: str = option(
        "json",
        choices=("json", "zeek", "zeek-json"),
        help="json: wirestream's records (docs/records.md); zeek: conn/http/ssl/dns/weird.log "
        "(files/x509.log where populated) in Zeek's TSV format; zeek-json: the same as "
        "Zeek's JSON logs (docs/zeek-logs.md)",
    )
    partitions: int = option(
        1,
        parse=positive_int,
        help="virtual partitions: flows are assigned with Kafka's partitioner, each with "
        "its own stream time and limits, as a group on an N-partition topic",
    )
    workers: int = option(
        1,
        parse=positive_int,
        help="worker processes sharing the partitions (use all cores); needs "
        "--partitions >= workers; output is then grouped by partition",
    )
    state_dir: str | None = option(
        None,
        metavar="DIR",
        help="keep the RocksDB state here (default: a temporary directory, removed at exit)",
    )
    no_progress: bool = option(False, help="never show the progress bar on stderr")
    extract_files: str | None = option(
        None,
        metavar="DIR",
        help="write HTTP bodies into DIR, each named by the sha256 of its content (decoded "
        "when a Content-Encoding applies); the record's request/response gets `extracted`",
    )
    extract_max_bytes: int = option(
        10 * 1024 * 1024,
        parse=positive_int,
        help="with --extract-files: bodies larger than this are not extracted",
    )
    extract_max_files: int = option(
        10_000,
        parse=positive_int,
        help="with --extract-files: files written at most, per partition",
    )
    commit_every: int = option(
        _COMMIT_EVERY,
        parse=positive_int,
        metavar="PACKETS",
        help="save every changed flow's state (decoder snapshots included) every this many "
        "packets, as the Kafka mode does at each commit; records never depend on it, so a "
        "small value tests a decoder's snapshot()",
    )
