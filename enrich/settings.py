"""Settings of `wirestream enrich`; each option field is an option of the command
(streams/options.py), layered like every command's (command line > WIRESTREAM_*
environment > TOML file > defaults). No aiohttp or kafka here: building the command line
must stay cheap."""

from __future__ import annotations

from dataclasses import dataclass

from wirestream.streams.argtypes import positive_int, positive_seconds, seconds_or_zero
from wirestream.streams.kafka_settings import BrokerSettings, GroupSettings
from wirestream.streams.options import nested, option

DEFAULT_INPUT = "wirestream.http"


def count(text: str) -> int:
    """A whole number >= 0."""
    return positive_int(text) if text != "0" else 0


@dataclass(frozen=True, slots=True, kw_only=True)
class LookupSettings:
    max_in_flight: int = option(100, parse=positive_int, help="concurrent HTTP requests")
    timeout: float = option(  # seconds per attempt, connect to last byte
        2.0,
        parse=positive_seconds,
        metavar="SECONDS",
        help="per-request timeout, connect to last byte",
    )
    retries: int = option(  # attempts after the first, for transient failures
        2, parse=count, help="retries after timeouts, connection errors, 5xx, 429"
    )
    backoff: float = option(  # first backoff; doubles per retry, full jitter
        0.1,
        parse=positive_seconds,
        metavar="SECONDS",
        help="first retry backoff, doubled each retry, full jitter",
    )
    backoff_max: float = option(
        2.0, parse=positive_seconds, metavar="SECONDS", help="longest backoff"
    )
    cache_ttl: float = option(
        300.0,
        parse=seconds_or_zero,
        metavar="SECONDS",
        help="keep answers (JSON, or a final 4xx) this long per URL; 0 = no cache",
    )
    cache_size: int = option(100_000, parse=count, help="cached URLs at most")
    max_body: int = 1 << 20


@dataclass(frozen=True, kw_only=True)
class EnrichSettings(GroupSettings, BrokerSettings):
    input_topic: str = option(DEFAULT_INPUT, help="records to enrich")
    output_topic: str | None = option(
        None, help="where enriched records go (default: <input-topic>.enriched)"
    )
    url: str = option(
        metavar="TEMPLATE",
        help="lookup URL with {dotted.field} placeholders from the record, e.g. "
        "http://127.0.0.1:8080/asset/{server.ip}",
    )
    group_id: str = option("wirestream-enrich", help="consumer group")
    lookup: LookupSettings = nested(LookupSettings)
    max_pending: int = option(
        2_000,
        parse=positive_int,
        help="records read but not yet produced; beyond, consumption pauses",
    )
    commit_interval: float = option(
        1.0,
        parse=positive_seconds,
        metavar="SECONDS",
        help="commit input offsets this often",
    )
    drain_timeout: float = 10.0
    exit_when_idle: float | None = option(
        None,
        parse=positive_seconds,
        metavar="SECONDS",
        help="exit 0 after this long without input, once everything is produced and committed",
    )
    max_poll_records: int = 500
    stats_interval: float = 10.0
