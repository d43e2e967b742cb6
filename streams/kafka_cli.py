"""The Kafka-mode commands, `probe` and `run`, added to runner.py's commands.

Their options are generated from the settings dataclasses (streams/kafka_settings.py,
streams/feature_settings.py, streams/runtime_settings.py) and layered like every
command's: command line > WIRESTREAM_* environment > TOML file (--config) > defaults
(streams/settings_source.py, docs/kafka-mode.md).
"""

from __future__ import annotations

import argparse

from wirestream.streams.commands import Commands, Invocation
from wirestream.streams.exitcodes import UsageError
from wirestream.streams.feature_settings import FeatureSettings
from wirestream.streams.kafka_settings import ProbeSettings, RunSettings
from wirestream.streams.logs import LogSettings
from wirestream.streams.runtime_settings import RuntimeSettings


def _captures(p: argparse.ArgumentParser) -> None:
    p.add_argument("pcaps", nargs="*", metavar="PCAP", help="capture files (pcap or pcapng)")


def add_commands(commands: Commands) -> None:
    """Add `probe` and `run`."""
    commands.add(
        "probe",
        (ProbeSettings, LogSettings),
        cmd_probe,
        positionals=_captures,
        help="produce packet records from captures or an interface to Kafka",
        description="Read pcap/pcapng files (or capture live on an interface) and produce one "
        "record per packet to the packets topic: key = flow key, value = packet record, "
        "partitioned by flow. Creates the topic if missing.",
    )
    commands.add(
        "run",
        (RunSettings, FeatureSettings, RuntimeSettings, LogSettings),
        cmd_run,
        help="run one member of the decoding consumer group",
        description="Consume the packets topic as one member of consumer group "
        "--application-id: reassemble, decode, and produce records to <prefix><type> "
        "topics, with state in RocksDB stores backed by a compacted changelog topic.",
    )


def cmd_probe(inv: Invocation) -> int:
    settings = inv.get(ProbeSettings)
    pcaps = inv.args.pcaps
    if bool(pcaps) == bool(settings.interface):
        raise UsageError("give capture files or --interface IFACE (one of them)")
    if settings.bpf and not settings.interface:
        raise UsageError("--bpf applies to --interface only")
    from wirestream.streams.config import tune_gc
    from wirestream.streams.kafka_probe import Probe

    tune_gc()  # as replay: the collector would rescan every packet's objects
    probe = Probe(settings)
    if settings.interface:
        return probe.run_live(settings.interface, settings.bpf)
    return probe.run_files(pcaps)


def cmd_run(inv: Invocation) -> int:
    config = inv.get(RuntimeSettings).to_config()
    from wirestream.streams.config import tune_gc
    from wirestream.streams.kafka.runtime import KafkaRuntime

    tune_gc()  # as replay: flow tables hold many small objects the collector would rescan
    return KafkaRuntime(inv.get(RunSettings), config, features=inv.get(FeatureSettings)).run()
