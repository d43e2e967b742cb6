"""Benchmark of `wirestream enrich` (asyncio + aiohttp) against a blocking thread-pool
version of the same stage, both between two topics of a local Apache Kafka (devkafka/), both
looking records up on a local HTTP service that answers after a fixed delay.

    .venv/bin/python bench/enrich_bench.py                       # 1000 rec/s, then a sweep
    .venv/bin/python bench/enrich_bench.py --rates 1000,2000 --seconds 10 --json out.json

Per run: fresh topics (4 partitions) and group; a paced producer offers RATE records/s for
SECONDS (each with a distinct server.ip, so every record is a real request: no cache); a
reader measures when each output arrives. Sampled from /proc every 0.25 s for the stage
process: threads, sockets, CPU (% of one core over the load), peak RSS; and the service's
CPU. A run is saturated when the stage delivers < 95% of the offered rate over the load
or its p99 latency exceeds 2 s. Everything runs on this machine (2 cores): the broker, the
service, the load generator and the stage share them.

Internal entry points (subprocesses): `--service PORT DELAY`, `--blocking-stage ...`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PARTITIONS = 4
HZ = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- the service


def run_service(port: int, delay: float) -> None:
    """A JSON asset service answering every GET after `delay` seconds."""
    from aiohttp import web

    async def asset(request: web.Request) -> web.Response:
        await asyncio_sleep(delay)
        name = request.match_info["name"]
        return web.json_response({"asset": name, "owner": "team-a", "criticality": "high"})

    import asyncio

    asyncio_sleep = asyncio.sleep
    app = web.Application()
    app.router.add_get("/asset/{name}", asset)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, backlog=4096)


# --------------------------------------------------------------------------- blocking stage


def blocking_stage(args: argparse.Namespace) -> int:
    """The same stage with blocking I/O: a consumer thread, a pool of `threads` workers
    (one keep-alive http.client connection each), and an emitter producing results in
    input order (head of line: stricter than per-key order). Same template, same output
    records, offsets committed behind what was produced."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    from wirestream.enrich import record as out
    from wirestream.enrich.kafka_io import CHECK_CRCS
    from wirestream.enrich.template import TemplateError, UrlTemplate

    template = UrlTemplate(args.url)
    consumer = KafkaConsumer(
        args.input, bootstrap_servers=args.bootstrap, group_id=args.group,
        enable_auto_commit=False, auto_offset_reset="earliest",
        session_timeout_ms=6000, heartbeat_interval_ms=1000, check_crcs=CHECK_CRCS,
    )  # fmt: skip
    producer = KafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=5,
                             max_in_flight_requests_per_connection=1)  # fmt: skip
    local = threading.local()
    timeout, retries = 2.0, 2

    def get(url: str) -> Any:
        parts = urlsplit(url)
        for attempt in range(retries + 1):
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = http.client.HTTPConnection(
                    parts.hostname, parts.port, timeout=timeout
                )
            try:
                conn.request("GET", parts.path, headers={"Accept": "application/json"})
                resp = conn.getresponse()
                body = resp.read()
                if resp.status >= 500 and attempt < retries:
                    continue
                if resp.status >= 400:
                    return None, {"kind": "http_status", "status": resp.status}
                return json.loads(body), None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                local.conn = None
                if attempt == retries:
                    return None, {"kind": "connection", "detail": str(exc)}
                time.sleep(0.1 * 2**attempt)
        return None, {"kind": "retries"}

    def work(value: bytes) -> bytes:
        rec = out.parse(value)
        if rec is None:
            return out.unreadable(value)
        try:
            url = template.render(rec)
        except TemplateError as exc:
            return out.failed(rec, {"kind": "template", "detail": str(exc)})
        answer, error = get(url)
        return out.failed(rec, error) if error else out.enriched(rec, answer)

    pool = ThreadPoolExecutor(args.threads, thread_name_prefix="lookup")
    slots = threading.BoundedSemaphore(args.max_pending)
    queue: deque[tuple[int, int, bytes, Future[bytes]]] = deque()
    produced: dict[int, int] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def emitter() -> None:
        while not stop.is_set() or queue:
            if not queue:
                time.sleep(0.001)
                continue
            p, offset, key, future = queue[0]
            value = future.result()
            producer.send(args.output, key=key, value=value)
            queue.popleft()
            slots.release()
            with lock:
                produced[p] = offset + 1

    threading.Thread(target=emitter, daemon=True).start()
    last_input = time.monotonic()
    last_commit = time.monotonic()
    ready = False
    while True:
        batch = consumer.poll(timeout_ms=100)
        if not ready and consumer.assignment():
            print("READY", flush=True)
            ready = True
        for tp, messages in batch.items():
            for m in messages:
                slots.acquire()
                queue.append((tp.partition, m.offset, m.key, pool.submit(work, m.value)))
                last_input = time.monotonic()
        now = time.monotonic()
        if now - last_commit >= 1.0:
            producer.flush()  # what `produced` says is sent is now acknowledged
            with lock:
                points = dict(produced)
            if points:
                consumer.commit({TopicPartition(args.input, p): OffsetAndMetadata(o, "", -1)
                                 for p, o in points.items()})  # fmt: skip
            last_commit = now
        if ready and now - last_input > args.idle and not queue:
            break
    stop.set()
    producer.flush()
    consumer.close()
    producer.close()
    pool.shutdown()
    return 0


# --------------------------------------------------------------------------- measuring


class ProcSampler(threading.Thread):
    """Threads, sockets, RSS and CPU ticks of a process, every 0.25 s."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[dict[str, float]] = []
        self.stop = threading.Event()

    def sample(self) -> dict[str, float] | None:
        base = f"/proc/{self.pid}"
        try:
            status = Path(base, "status").read_text()
            stat = Path(base, "stat").read_text().rsplit(")", 1)[1].split()
            fds = os.listdir(f"{base}/fd")
        except OSError:
            return None
        if "VmRSS" not in status:  # exiting
            return None
        sockets = 0
        for fd in fds:
            try:
                if os.readlink(f"{base}/fd/{fd}").startswith("socket:"):
                    sockets += 1
            except OSError:
                pass
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return {
            "t": time.monotonic(),
            "threads": int(fields["Threads"]),
            "rss_mib": int(fields["VmRSS"].split()[0]) / 1024,
            "cpu_s": (int(stat[11]) + int(stat[12])) / HZ,
            "sockets": sockets,
        }

    def run(self) -> None:
        while not self.stop.is_set():
            s = self.sample()
            if s is not None:
                self.samples.append(s)
            time.sleep(0.25)

    def between(self, t0: float, t1: float) -> dict[str, float]:
        inside = [s for s in self.samples if t0 <= s["t"] <= t1] or self.samples[-2:]
        cpu = 0.0
        if len(inside) >= 2:
            cpu = (inside[-1]["cpu_s"] - inside[0]["cpu_s"]) / (inside[-1]["t"] - inside[0]["t"])
        return {
            "threads": max(s["threads"] for s in inside),
            "sockets": max(s["sockets"] for s in inside),
            "rss_mib": round(max(s["rss_mib"] for s in inside), 1),
            "cpu_pct": round(100 * cpu),
        }


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def load(bootstrap: str, topic: str, rate: int, seconds: float) -> tuple[int, float, float]:
    """Offer `rate` records/s for `seconds`; returns (records, start, end) (monotonic)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, batch_size=256 << 10)
    total = int(rate * seconds)
    start = time.monotonic()
    sent = 0
    while sent < total:
        due = min(total, int((time.monotonic() - start) * rate) + 1)
        while sent < due:
            uid = f"C{sent % 10_000:05d}"
            record = {
                "type": "http", "id": f"{uid}:http:{sent}", "uid": uid, "ts": time.time(),
                "client": {"ip": "10.0.0.1", "port": 40000 + sent % 20000},
                "server": {"ip": f"10.{sent >> 16 & 255}.{sent >> 8 & 255}.{sent & 255}",
                           "port": 80},
                "request": {"method": "GET", "uri": f"/obj/{sent}"},
                "response": {"status": 200},
            }  # fmt: skip
            producer.send(topic, key=uid.encode(), value=json.dumps(record).encode())
            sent += 1
        time.sleep(0.005)
    end = time.monotonic()
    producer.flush()
    producer.close()
    return total, start, end


class Reader(threading.Thread):
    """Reads the output topic as it fills; keeps each record's latency (now - its ts)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        from kafka import KafkaConsumer, TopicPartition

        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                      auto_offset_reset="earliest", check_crcs=False)  # fmt: skip
        self.consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        self.arrivals: list[tuple[float, float]] = []  # (monotonic, latency s)
        self.errors = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for records in self.consumer.poll(timeout_ms=200).values():
                now_wall, now = time.time(), time.monotonic()
                for m in records:
                    value = json.loads(m.value)
                    self.arrivals.append((now, now_wall - value["ts"]))
                    self.errors += "enrichment_error" in value
        self.consumer.close()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def one_run(
    variant: str,
    rate: int,
    a: argparse.Namespace,
    bootstrap: str,
    pids: dict[str, int],
    port: int,
) -> dict[str, Any]:
    from tests import brokers

    src, dst = f"bench-in-{uuid.uuid4().hex[:6]}", f"bench-out-{uuid.uuid4().hex[:6]}"
    group = f"bench-{variant}-{uuid.uuid4().hex[:6]}"
    brokers.create_topic(bootstrap, src, PARTITIONS)
    brokers.create_topic(bootstrap, dst, PARTITIONS)
    url = f"http://127.0.0.1:{port}/asset/{{server.ip}}"
    if variant == "async":
        cmd = brokers.wirestream(
            "enrich", "--bootstrap-servers", bootstrap, "--input-topic", src,
            "--output-topic", dst, "--group-id", group, "--url", url,
            "--max-in-flight", str(a.in_flight), "--max-pending", str(a.in_flight * 4),
            "--cache-ttl", "0", "--exit-when-idle", "3", *brokers.GROUP_TIMEOUTS,
            "--log-format", "json",
        )  # fmt: skip
        ready_word = "partitions_assigned"
    else:
        cmd = [sys.executable, __file__, "--blocking-stage", "--bootstrap", bootstrap,
               "--input", src, "--output", dst, "--group", group, "--url", url,
               "--threads", str(a.threads), "--max-pending", str(a.threads * 4),
               "--idle", "3"]  # fmt: skip
        ready_word = "READY"
    if a.backlog:  # saturation: the whole input is there before the stage starts
        total, _, _ = load(bootstrap, src, 1_000_000, a.backlog / 1_000_000)
    log_path = Path(tempfile.mkstemp(prefix=f"enrich-bench-{variant}-", suffix=".log")[1])
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, cwd=ROOT)
    deadline = time.monotonic() + 60
    while ready_word not in log_path.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{variant} stage did not start:\n{log_path.read_text()[-2000:]}")
        time.sleep(0.1)
    stage = ProcSampler(proc.pid)
    others = {name: ProcSampler(pid) for name, pid in pids.items()}
    reader = Reader(bootstrap, dst)
    for t in (stage, reader, *others.values()):
        t.start()
    try:
        m0 = machine_ticks()
        if a.backlog:
            t0 = time.monotonic()
            while len(reader.arrivals) < total and time.monotonic() < t0 + 300:
                time.sleep(0.1)
            t1 = time.monotonic()
        else:
            total, t0, t1 = load(bootstrap, src, rate, a.seconds)
        m1 = machine_ticks()
        deadline = time.monotonic() + a.seconds + 30
        while len(reader.arrivals) < total and time.monotonic() < deadline:
            time.sleep(0.2)
        t_done = time.monotonic()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        for t in (stage, reader, *others.values()):
            t.stop.set()
    reader.join(5)
    arrivals = reader.arrivals
    # Steady state: arrivals while the load runs, after its first second.
    in_window = sum(1 for t, _ in arrivals if t0 + 1.0 <= t <= t1)
    latencies = [lat for _, lat in arrivals]
    last = max((t for t, _ in arrivals), default=t_done)
    result = {
        "variant": variant,
        "offered_per_s": rate,
        "records": total,
        "delivered": len(arrivals),
        "errors": reader.errors,
        "throughput_per_s": round(in_window / max(t1 - t0 - 1.0, 1e-3)),
        "overall_per_s": round(len(arrivals) / (last - t0)) if arrivals else 0,
        "p50_ms": round(1000 * pct(latencies, 0.50)),
        "p99_ms": round(1000 * pct(latencies, 0.99)),
        "stage": stage.between(t0, t1),
        # CPU % of one core during the load; the machine's is out of 100 x cores.
        "cpu_pct": {name: o.between(t0, t1)["cpu_pct"] for name, o in others.items()},
        "machine_busy_pct": round(100 * os.cpu_count() * (m1[0] - m0[0]) / (m1[1] - m0[1])),
    }
    for line in log_path.read_text(errors="replace").splitlines():
        if '"enrich_stopped"' in line:  # the async stage's own counters
            stopped = json.loads(line)
            result["stage_counters"] = {k: stopped[k] for k in ("requests", "retries")}
            result["stage_counters"].update({k: v for k, v in stopped.items() if ":" in k})
    if a.backlog:
        result["throughput_per_s"] = round(len(arrivals) / (t1 - t0))
        result["threads_setting"] = a.threads if variant == "blocking" else a.in_flight
    result["saturated"] = (
        result["throughput_per_s"] < 0.95 * rate or result["p99_ms"] > 2000 or len(arrivals) < total
    )
    log_path.unlink(missing_ok=True)
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rates", default="1000,2000,3000,4000,6000")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--delay", type=float, default=0.1, help="service answer delay (s)")
    p.add_argument("--threads", type=int, default=200, help="blocking variant's pool size")
    p.add_argument("--in-flight", type=int, default=1000, help="async variant's max in flight")
    p.add_argument("--variants", default="async,blocking")
    p.add_argument("--backlog", type=int, default=0,
                   help="instead of a paced load: N records produced before the stage starts; "
                   "measures the most each stage can do")  # fmt: skip
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--service", nargs=2, metavar=("PORT", "DELAY"))
    p.add_argument("--blocking-stage", action="store_true")
    for name in ("bootstrap", "input", "output", "group", "url"):
        p.add_argument(f"--{name}")
    p.add_argument("--max-pending", type=int, default=800)
    p.add_argument("--idle", type=float, default=3.0)
    a = p.parse_args()
    if a.service:
        run_service(int(a.service[0]), float(a.service[1]))
        return 0
    if a.blocking_stage:
        return blocking_stage(a)

    from devkafka import broker as kafka
    from tests import brokers

    results = []
    with tempfile.TemporaryDirectory() as tmp, kafka.running(Path(tmp)) as b:
        port = brokers.free_port()
        svc = subprocess.Popen([sys.executable, __file__, "--service", str(port), str(a.delay)])
        try:
            time.sleep(1.5)
            live = a.variants.split(",")
            rates = [0] if a.backlog else [int(r) for r in a.rates.split(",")]
            for rate in rates:
                for variant in list(live):  # interleaved: both see the same machine
                    pids = {"service": svc.pid, "broker": b.proc.pid, "bench": os.getpid()}
                    r = one_run(variant, rate, a, b.bootstrap, pids, port)
                    results.append(r)
                    print(json.dumps(r), flush=True)
                    if r["saturated"]:
                        live.remove(variant)  # the next rates saturate it too
                if not live:
                    break
        finally:
            svc.terminate()
            svc.wait(10)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
