"""`python -m devkafka fetch` caches the jars; `python -m devkafka start [--dir DIR]` runs a
one-node Apache Kafka in the foreground, prints its bootstrap address, and stops it on
Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path

from devkafka import broker as kafka


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m devkafka", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="fetch and cache the Apache Kafka jars with Maven")
    start = sub.add_parser("start", help="run a one-node broker until interrupted")
    start.add_argument("--dir", type=Path, help="data directory (kept; default: temporary)")
    args = ap.parse_args(argv)
    try:
        if args.command == "fetch":
            print(kafka.ensure_jars())
            return 0
        workdir = args.dir or Path(tempfile.mkdtemp(prefix="wirestream-kafka-"))
        broker = kafka.new_broker(workdir).start()
    except kafka.BrokerUnavailable as exc:
        print(f"devkafka: {exc}", file=sys.stderr)
        return 3
    print(f"Apache Kafka {kafka.KAFKA_VERSION} at {broker.bootstrap} (data: {workdir})")
    sys.stdout.flush()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        assert broker.proc is not None
        broker.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
