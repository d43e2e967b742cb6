"""wirestream command line: `replay` captures embedded (no broker), `probe` and `run` for
the Kafka mode. `python runner.py --help` or `wirestream --help`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from reassembly.limits import SECOND, Limits
from streams.argtypes import non_negative_int, positive_int, seconds

EXIT_OK, EXIT_INPUT_ERROR, EXIT_USAGE = 0, 1, 2


def _seconds(text: str) -> int:
    return int(seconds(text) * SECOND)


def _seconds_or_zero(text: str) -> int:
    return int(seconds(text, allow_zero=True) * SECOND)


def _decoder_list(text: str) -> list[str] | None:
    if text == "all":
        return None
    if text in ("", "none"):
        return []
    return [name.strip() for name in text.split(",") if name.strip()]


def _decoder_option(text: str) -> tuple[str, str, Any]:
    name, sep, value = text.partition("=")
    decoder, dot, option = name.partition(".")
    if not sep or not dot or not decoder or not option:
        raise argparse.ArgumentTypeError(f"expected DECODER.OPTION=VALUE, got {text!r}")
    parsed: Any = value
    try:
        parsed = int(value)
    except ValueError:
        if value.lower() in ("true", "false"):
            parsed = value.lower() == "true"
    return decoder, option, parsed


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--log-format",
        choices=("auto", "console", "json"),
        default="auto",
        help="log format on stderr: console (readable), json (one object per line), "
        "auto = console on a terminal, json otherwise (default: auto)",
    )
    p.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="lowest log level shown (default: info)",
    )


def _add_runtime(p: argparse.ArgumentParser) -> None:
    d = Limits()
    p.add_argument(
        "--decoders",
        type=_decoder_list,
        default=None,
        metavar="LIST",
        help="comma-separated decoders to run (e.g. http), 'all' (default) or 'none' "
        "(reassembly and flow records only)",
    )
    p.add_argument(
        "-O",
        "--decoder-option",
        type=_decoder_option,
        action="append",
        default=[],
        metavar="DECODER.OPTION=VALUE",
        help="set a decoder option, e.g. -O http.max_decompressed=1048576 (repeatable)",
    )
    p.add_argument(
        "--stream-chunks",
        action="store_true",
        help="also emit every reassembled byte as stream_chunk records (base64), for "
        "low-level analysis downstream (off by default: it is the whole traffic again)",
    )
    p.add_argument(
        "--max-flows",
        type=positive_int,
        default=d.max_flows,
        help=f"flows tracked per partition; beyond, the least recently active is evicted "
        f"(default: {d.max_flows})",
    )
    p.add_argument(
        "--max-parked-bytes",
        type=positive_int,
        default=d.max_parked_bytes,
        help=f"out-of-order bytes parked per direction before the first hole is declared "
        f"a gap (default: {d.max_parked_bytes})",
    )
    p.add_argument(
        "--depth",
        type=non_negative_int,
        default=d.max_depth,
        metavar="BYTES",
        help="reassembly depth: deliver at most this many bytes of each direction to the "
        "decoders (the rest is counted as beyond_depth); 0 = no limit (default: 0)",
    )
    p.add_argument(
        "--overlap-policy",
        choices=("first", "last", "bsd", "windows", "linux", "solaris"),
        default=d.overlap_policy,
        help="whose bytes win where out-of-order TCP segments overlap with different data: "
        "first/last copy, or the target OS's rule as Suricata models it "
        f"(default: {d.overlap_policy}, Suricata's default)",
    )
    p.add_argument(
        "--reorder-window",
        type=_seconds_or_zero,
        default=SECOND,
        metavar="SECONDS",
        help="put packets back in timestamp order within this much capture time (captures "
        "from several CPU queues or taps list packets out of order); 0 = file order "
        "(default: 1)",
    )
    p.add_argument(
        "--no-vlan-in-flow-key",
        action="store_true",
        help="leave VLAN ids out of flow keys, for links where the two directions of a "
        "connection carry different tags (Suricata's vlan.use-for-tracking: false)",
    )
    p.add_argument(
        "--tcp-idle-timeout",
        type=_seconds,
        default=d.tcp_idle_timeout_ns,
        metavar="SECONDS",
        help=f"close a TCP flow after this much capture time without packets "
        f"(default: {d.tcp_idle_timeout_ns // SECOND})",
    )
    p.add_argument(
        "--window-stats",
        type=float,
        default=None,
        metavar="SECONDS",
        help="also emit window_stats records: traffic per (protocol, service) in event-time "
        "windows of this size (docs/windows.md) (default: off)",
    )
    p.add_argument(
        "--window-hop",
        type=float,
        default=None,
        metavar="SECONDS",
        help="hopping windows: a new window every SECONDS (default: the size, tumbling)",
    )
    p.add_argument(
        "--window-grace",
        type=float,
        default=None,
        metavar="SECONDS",
        help="wait this much stream time past a window's end for late packets (default: 1)",
    )
    p.add_argument(
        "--udp-idle-timeout",
        type=_seconds,
        default=d.udp_idle_timeout_ns,
        metavar="SECONDS",
        help=f"close a UDP flow after this much capture time without packets "
        f"(default: {d.udp_idle_timeout_ns // SECOND})",
    )


def _runtime_config(args: argparse.Namespace) -> Any:
    from streams.config import RuntimeConfig

    limits = replace(
        Limits(),
        max_flows=args.max_flows,
        max_parked_bytes=args.max_parked_bytes,
        overlap_policy=args.overlap_policy,
        max_depth=args.depth,
        tcp_idle_timeout_ns=args.tcp_idle_timeout,
        udp_idle_timeout_ns=args.udp_idle_timeout,
    )
    options: dict[str, dict[str, Any]] = {}
    for decoder, option, value in args.decoder_option:
        options.setdefault(decoder, {})[option] = value
    extract_dir = getattr(args, "extract_files", None)
    if extract_dir is not None:
        options.setdefault("http", {}).setdefault("extract_max_bytes", args.extract_max_bytes)
    config = RuntimeConfig(
        limits=limits,
        decoders=args.decoders,
        decoder_options=options,
        partitions=getattr(args, "partitions", 1),
        reorder_window_ns=args.reorder_window,
        vlan_in_flow_key=not args.no_vlan_in_flow_key,
        stream_chunks=args.stream_chunks,
        extract_dir=extract_dir,
        extract_max_bytes=getattr(args, "extract_max_bytes", 10 * 1024 * 1024),
        extract_max_files=getattr(args, "extract_max_files", 10_000),
    )
    if args.window_stats is not None:
        from stats.windows import configure

        try:
            configure(config, args.window_stats, args.window_hop, args.window_grace)
        except ValueError as exc:
            print(f"wirestream: error: {exc}", file=sys.stderr)
            raise SystemExit(EXIT_USAGE) from None
    return config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wirestream",
        description="TCP reassembly and protocol decoding, embedded (replay) or as a Kafka "
        "consumer group.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    rp = sub.add_parser(
        "replay",
        help="replay captures in this process (no broker) and print decoded records",
        description="Replay pcap/pcapng captures through reassembly and the decoders; print "
        "one JSON record per line (http, flow, anomaly, ...). A summary goes to stderr.",
    )
    rp.add_argument("pcaps", nargs="+", metavar="PCAP", help="capture files (pcap or pcapng)")
    rp.add_argument(
        "-o",
        "--output",
        default="-",
        metavar="FILE",
        help="where the JSON lines go; '-' = stdout (default)",
    )
    rp.add_argument(
        "--partitions",
        type=positive_int,
        default=1,
        help="virtual partitions: flows are assigned with Kafka's partitioner, each with "
        "its own stream time and limits, as a group on an N-partition topic (default: 1)",
    )
    rp.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="worker processes sharing the partitions (use all cores); needs "
        "--partitions >= workers; output is then grouped by partition (default: 1)",
    )
    rp.add_argument(
        "--state-dir",
        default=None,
        metavar="DIR",
        help="keep the RocksDB state here (default: a temporary directory, removed at exit)",
    )
    rp.add_argument(
        "--no-progress", action="store_true", help="never show the progress bar on stderr"
    )
    rp.add_argument(
        "--extract-files",
        default=None,
        metavar="DIR",
        help="write HTTP bodies into DIR, each named by the sha256 of its content (decoded "
        "when a Content-Encoding applies); the record's request/response gets `extracted`",
    )
    rp.add_argument(
        "--extract-max-bytes",
        type=positive_int,
        default=10 * 1024 * 1024,
        help="bodies larger than this are not extracted (default: 10 MiB)",
    )
    rp.add_argument(
        "--extract-max-files",
        type=positive_int,
        default=10_000,
        help="files written at most, per partition (default: 10000)",
    )
    _add_runtime(rp)
    _add_common(rp)
    rp.set_defaults(func=cmd_replay)

    try:
        from streams import kafka_cli
    except ImportError:
        kafka_cli = None  # type: ignore[assignment]
    if kafka_cli is not None:
        kafka_cli.add_commands(sub, _add_runtime, _add_common, _runtime_config)
    try:
        from enrich import cli as enrich_cli
    except ImportError:
        enrich_cli = None  # type: ignore[assignment]
    if enrich_cli is not None:
        enrich_cli.add_commands(sub, _add_common)
    return parser


def cmd_replay(args: argparse.Namespace) -> int:
    import structlog

    from decoders.registry import check_options
    from state.store import StoreError
    from streams.replay import Replay

    log = structlog.get_logger("wirestream")
    config = _runtime_config(args)
    check_options(config.decoder_options)
    if args.output == "-":
        out = sys.stdout.buffer
        close = False
    else:
        try:
            out = open(args.output, "wb")  # noqa: SIM115 - closed below
        except OSError as exc:
            log.error("cannot_open_output", path=args.output, error=exc.strerror)
            return EXIT_USAGE
        close = True
    try:
        replay = Replay(
            config,
            out.write,
            state_dir=args.state_dir,
            progress=not args.no_progress and sys.stderr.isatty(),
            workers=args.workers,
        )
        summary = replay.run(args.pcaps)
    except StoreError as exc:
        log.error("state_store_error", error=str(exc))
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_OK
    finally:
        if close:
            out.close()
        else:
            try:
                out.flush()
            except BrokenPipeError:
                pass
    log.info("replay_finished", **summary.as_log())
    return EXIT_INPUT_ERROR if summary.errors else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    from decoders.registry import UnknownDecoderError
    from streams.logs import configure_logging

    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_format, args.log_level)
    try:
        return int(args.func(args))
    except UnknownDecoderError as exc:
        parser.error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
