"""Settings of the processing runtime shared by `replay` and `run` (reassembly limits,
decoders, windowed statistics); each field is an option of both commands
(streams/options.py). The defaults of the limits are Limits' own (reassembly/limits.py)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from typing import Any

from wirestream.reassembly.limits import SECOND, Limits
from wirestream.streams.argtypes import non_negative_int, positive_int, seconds
from wirestream.streams.exitcodes import UsageError
from wirestream.streams.options import option

_LIMITS = Limits()
OVERLAP_POLICIES = ("first", "last", "bsd", "windows", "linux", "solaris")


def nanoseconds(text: str) -> int:
    """Seconds on the command line, nanoseconds inside (capture time)."""
    return int(seconds(text) * SECOND)


def nanoseconds_or_zero(text: str) -> int:
    return int(seconds(text, allow_zero=True) * SECOND)


def _in_seconds(ns: int) -> str:
    return f"{ns / SECOND:g}"


def parse_decoder_list(text: str) -> list[str] | None:
    if text == "all":
        return None
    if text in ("", "none"):
        return []
    return [name.strip() for name in text.split(",") if name.strip()]


def parse_decoder_option(text: str) -> tuple[str, str, Any]:
    """DECODER.OPTION=VALUE; the value stays text until the decoder's `option_defaults`
    give it a type (decoders.options)."""
    name, sep, value = text.partition("=")
    decoder, dot, option_name = name.partition(".")
    if not sep or not dot or not decoder or not option_name:
        raise argparse.ArgumentTypeError(f"expected DECODER.OPTION=VALUE, got {text!r}")
    return decoder, option_name, value


def parse_community_id_seed(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 0xFFFF:
        raise argparse.ArgumentTypeError("the Community ID seed is a 16-bit number (0..65535)")
    return value


@dataclass(frozen=True, kw_only=True)
class RuntimeSettings:
    decoders: list[str] | None = option(
        None,
        parse=parse_decoder_list,
        metavar="LIST",
        help="comma-separated decoders to run (e.g. http), 'all' (default) or 'none' "
        "(reassembly and flow records only)",
    )
    decoder_option: list[tuple[str, str, Any]] = option(
        [],
        parse=parse_decoder_option,
        repeat=True,
        flags=("-O",),
        metavar="DECODER.OPTION=VALUE",
        help="set a decoder option, e.g. -O http.max_decompressed=1048576 or "
        "-O http.ports=80,8080 (repeatable; typed by the decoder's defaults, docs/plugins.md)",
    )
    stream_chunks: bool = option(
        False,
        help="also emit every reassembled byte as stream_chunk records (base64), for "
        "low-level analysis downstream (off by default: it is the whole traffic again)",
    )
    max_flows: int = option(
        _LIMITS.max_flows,
        parse=positive_int,
        help="flows tracked per partition; beyond, the least recently active is evicted",
    )
    max_parked_bytes: int = option(
        _LIMITS.max_parked_bytes,
        parse=positive_int,
        help="out-of-order bytes parked per direction before the first hole is declared a gap",
    )
    depth: int = option(
        _LIMITS.max_depth,
        parse=non_negative_int,
        metavar="BYTES",
        help="reassembly depth: deliver at most this many bytes of each direction to the "
        "decoders (the rest is counted as beyond_depth); 0 = no limit",
    )
    overlap_policy: str = option(
        _LIMITS.overlap_policy,
        choices=OVERLAP_POLICIES,
        help="whose bytes win where out-of-order TCP segments overlap with different data: "
        "first/last copy, or the target OS's rule as Suricata models it (bsd: Suricata's "
        "default)",
    )
    reorder_window: int = option(
        SECOND,
        parse=nanoseconds_or_zero,
        show=_in_seconds,
        metavar="SECONDS",
        help="put packets back in timestamp order within this much capture time (captures "
        "from several CPU queues or taps list packets out of order); 0 = file order",
    )
    no_vlan_in_flow_key: bool = option(
        False,
        help="leave VLAN ids out of flow keys, for links where the two directions of a "
        "connection carry different tags (Suricata's vlan.use-for-tracking: false)",
    )
    tcp_idle_timeout: int = option(
        _LIMITS.tcp_idle_timeout_ns,
        parse=nanoseconds,
        show=_in_seconds,
        metavar="SECONDS",
        help="close a TCP flow after this much capture time without packets",
    )
    community_id_seed: int = option(
        0,
        parse=parse_community_id_seed,
        metavar="N",
        help="seed of the Community ID v1 hash on every flow's records (0..65535; sensors "
        "whose records are joined must use the same)",
    )
    zeek_topics: bool = option(
        False,
        help="also emit each record's Zeek JSON log lines as records of type zeek-conn, "
        "zeek-http, zeek-files, zeek-ssl, zeek-x509, zeek-dns or zeek-weird; Kafka mode "
        "sends them to topics <prefix>zeek-conn ... as zeek-kafka does (docs/zeek-logs.md)",
    )
    window_stats: float | None = option(
        None,
        parse=float,
        metavar="SECONDS",
        help="also emit window_stats records: traffic per (protocol, service) in event-time "
        "windows of this size (docs/windows.md) (default: off)",
    )
    window_hop: float | None = option(
        None,
        parse=float,
        metavar="SECONDS",
        help="hopping windows: a new window every SECONDS (default: the size, tumbling)",
    )
    window_grace: float | None = option(
        None,
        parse=float,
        metavar="SECONDS",
        help="wait this much stream time past a window's end for late packets (default: 1)",
    )
    udp_idle_timeout: int = option(
        _LIMITS.udp_idle_timeout_ns,
        parse=nanoseconds,
        show=_in_seconds,
        metavar="SECONDS",
        help="close a UDP flow after this much capture time without packets",
    )

    def to_config(self, partitions: int = 1) -> Any:
        """The RuntimeConfig these settings describe; UsageError for what cannot work."""
        from wirestream.decoders.registry import check_options, select
        from wirestream.streams.config import RuntimeConfig

        limits = replace(
            Limits(),
            max_flows=self.max_flows,
            max_parked_bytes=self.max_parked_bytes,
            overlap_policy=self.overlap_policy,
            max_depth=self.depth,
            tcp_idle_timeout_ns=self.tcp_idle_timeout,
            udp_idle_timeout_ns=self.udp_idle_timeout,
        )
        options: dict[str, dict[str, Any]] = {}
        for decoder, name, value in self.decoder_option:
            options.setdefault(decoder, {})[name] = value
        selected = [cls.name for cls in select(self.decoders)] if options else None
        options = check_options(options, selected)
        if self.window_stats is None:
            for flag in ("window_hop", "window_grace"):
                if getattr(self, flag) is not None:
                    raise UsageError(
                        f"--{flag.replace('_', '-')} does nothing without --window-stats"
                    )
        config = RuntimeConfig(
            limits=limits,
            decoders=self.decoders,
            decoder_options=options,
            partitions=partitions,
            reorder_window_ns=self.reorder_window,
            vlan_in_flow_key=not self.no_vlan_in_flow_key,
            stream_chunks=self.stream_chunks,
            community_id_seed=self.community_id_seed,
        )
        if self.zeek_topics:
            from wirestream.streams.zeektopics import configure as zeek_topics

            zeek_topics(config)
        if self.window_stats is not None:
            from wirestream.stats.windows import configure

            try:
                configure(config, self.window_stats, self.window_hop, self.window_grace)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        return config
