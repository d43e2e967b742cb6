"""`wirestream enrich`, added to runner.py's parser. Heavy imports (aiohttp, kafka) wait
until the command runs."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

from streams.argtypes import positive_int, positive_seconds, seconds_or_zero

DEFAULT_INPUT = "wirestream.http"


def _count(text: str) -> int:
    value = positive_int(text) if text != "0" else 0
    return value


def add_commands(sub: Any, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser(
        "enrich",
        help="enrich records from a topic with lookups on an HTTP service",
        description="Consume records (e.g. wirestream.http), look each up on an HTTP service "
        "(URL from the record's fields), produce it with `enrichment` (the JSON answer) or "
        "`enrichment_error` to the output topic. Non-blocking: many lookups in flight, "
        "same-key records in input order, offsets committed behind what was produced.",
    )
    p.add_argument(
        "--bootstrap-servers",
        metavar="HOST:PORT[,...]",
        default=None,
        help="Kafka bootstrap servers (or env WIRESTREAM_BOOTSTRAP_SERVERS)",
    )
    p.add_argument(
        "--input-topic", default=DEFAULT_INPUT, help=f"records to enrich (default: {DEFAULT_INPUT})"
    )
    p.add_argument(
        "--output-topic",
        default=None,
        help="where enriched records go (default: <input-topic>.enriched)",
    )
    p.add_argument(
        "--url",
        required=True,
        metavar="TEMPLATE",
        help="lookup URL with {dotted.field} placeholders from the record, e.g. "
        "http://127.0.0.1:8080/asset/{server.ip}",
    )
    p.add_argument(
        "--group-id",
        default="wirestream-enrich",
        help="consumer group (default: wirestream-enrich)",
    )
    p.add_argument(
        "--max-in-flight",
        type=positive_int,
        default=100,
        help="concurrent HTTP requests (default: 100)",
    )
    p.add_argument(
        "--max-pending",
        type=positive_int,
        default=2000,
        help="records read but not yet produced; beyond, consumption pauses (default: 2000)",
    )
    p.add_argument(
        "--timeout",
        type=positive_seconds,
        default=2.0,
        metavar="SECONDS",
        help="per-request timeout, connect to last byte (default: 2)",
    )
    p.add_argument(
        "--retries",
        type=_count,
        default=2,
        help="retries after timeouts, connection errors, 5xx, 429 (default: 2)",
    )
    p.add_argument(
        "--backoff",
        type=positive_seconds,
        default=0.1,
        metavar="SECONDS",
        help="first retry backoff, doubled each retry, full jitter (default: 0.1)",
    )
    p.add_argument(
        "--backoff-max",
        type=positive_seconds,
        default=2.0,
        metavar="SECONDS",
        help="longest backoff (default: 2)",
    )
    p.add_argument(
        "--cache-ttl",
        type=seconds_or_zero,
        default=300.0,
        metavar="SECONDS",
        help="keep answers (JSON, or a final 4xx) this long per URL; 0 = no cache (default: 300)",
    )
    p.add_argument(
        "--cache-size", type=_count, default=100_000, help="cached URLs at most (default: 100000)"
    )
    p.add_argument(
        "--commit-interval",
        type=positive_seconds,
        default=1.0,
        metavar="SECONDS",
        help="commit input offsets this often (default: 1)",
    )
    p.add_argument(
        "--exit-when-idle",
        type=positive_seconds,
        default=None,
        metavar="SECONDS",
        help="exit 0 after this long without input, once everything is produced and committed",
    )
    p.add_argument(
        "--session-timeout-ms",
        type=positive_int,
        default=10_000,
        help="consumer group session timeout (default: 10000)",
    )
    p.add_argument(
        "--heartbeat-interval-ms",
        type=positive_int,
        default=3_000,
        help="consumer group heartbeat interval (default: 3000)",
    )
    p.add_argument(
        "--replication-factor",
        type=int,
        default=-1,
        help="replication factor if the output topic is created (default: -1)",
    )
    add_common(p)
    p.set_defaults(func=lambda args: cmd_enrich(args, p))  # fmt: skip


def cmd_enrich(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    bootstrap = args.bootstrap_servers or os.environ.get("WIRESTREAM_BOOTSTRAP_SERVERS")
    if not bootstrap:
        parser.error("--bootstrap-servers is required (or WIRESTREAM_BOOTSTRAP_SERVERS)")
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        parser.error("`enrich` needs aiohttp: pip install 'wirestream[enrich]'")
    from enrich.kafka_io import EnrichSettings, KafkaEnricher
    from enrich.lookup import LookupSettings
    from enrich.template import UrlTemplate

    try:
        UrlTemplate(args.url)
    except ValueError as exc:
        parser.error(str(exc))
    settings = EnrichSettings(
        bootstrap_servers=bootstrap,
        input_topic=args.input_topic,
        output_topic=args.output_topic or f"{args.input_topic}.enriched",
        url=args.url,
        group_id=args.group_id,
        lookup=LookupSettings(
            max_in_flight=args.max_in_flight,
            timeout=args.timeout,
            retries=args.retries,
            backoff=args.backoff,
            backoff_max=args.backoff_max,
            cache_ttl=args.cache_ttl,
            cache_size=args.cache_size,
        ),
        max_pending=args.max_pending,
        commit_interval=args.commit_interval,
        exit_when_idle=args.exit_when_idle,
        session_timeout_ms=args.session_timeout_ms,
        heartbeat_interval_ms=args.heartbeat_interval_ms,
        replication_factor=args.replication_factor,
    )
    return KafkaEnricher(settings).run()
