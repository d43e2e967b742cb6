"""`wirestream enrich`, added to runner.py's commands; its options are generated from
enrich/settings.py. Heavy imports (aiohttp, kafka) wait until the command runs."""

from __future__ import annotations

from dataclasses import replace

from wirestream.enrich.settings import EnrichSettings
from wirestream.streams.commands import Commands, Invocation
from wirestream.streams.exitcodes import UsageError
from wirestream.streams.logs import LogSettings


def add_commands(commands: Commands) -> None:
    commands.add(
        "enrich",
        (EnrichSettings, LogSettings),
        cmd_enrich,
        help="enrich records from a topic with lookups on an HTTP service",
        description="Consume records (e.g. wirestream.http), look each up on an HTTP service "
        "(URL from the record's fields), produce it with `enrichment` (the JSON answer) or "
        "`enrichment_error` to the output topic. Non-blocking: many lookups in flight, "
        "same-key records in input order, offsets committed behind what was produced.",
    )


def cmd_enrich(inv: Invocation) -> int:
    settings = inv.get(EnrichSettings)
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        raise UsageError("`enrich` needs aiohttp: pip install 'wirestream[enrich]'") from None
    from wirestream.enrich.kafka_io import KafkaEnricher
    from wirestream.enrich.template import UrlTemplate

    try:
        UrlTemplate(settings.url)
    except ValueError as exc:
        raise UsageError(f"--url: {exc}") from None
    output = settings.output_topic or f"{settings.input_topic}.enriched"
    return KafkaEnricher(replace(settings, output_topic=output)).run()
