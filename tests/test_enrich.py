"""The enrichment stage (enrich/): its sans-IO parts, the asyncio stage against a real local
HTTP service (slow answers, errors, timeouts, connection resets), and `wirestream enrich`
between two topics of a real broker (@pytest.mark.kafka), including a member killed with
lookups in flight."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

aiohttp = pytest.importorskip("aiohttp")
from aiohttp import web  # noqa: E402

from tests import brokers  # noqa: E402
from wirestream.enrich.cache import TtlCache  # noqa: E402
from wirestream.enrich.lookup import Lookup, LookupSettings  # noqa: E402
from wirestream.enrich.ordering import KeyedOrder, OffsetTracker, Slot  # noqa: E402
from wirestream.enrich.stage import EnrichStage  # noqa: E402
from wirestream.enrich.template import TemplateError, UrlTemplate  # noqa: E402

# ----------------------------------------------------------------------------- the service


class AssetService:
    """A real HTTP server on a loopback port, in its own thread and loop. The asset name
    picks the behaviour: `slow-<ms>-x`, `hang-x` (never answers in time), `e500-<n>-x`
    (500 for the first n requests), `e404-x`, `reset-x` (drops the connection),
    `flaky-x` (drops the first request's connection), `text-x` (not JSON); else JSON."""

    def __init__(self, delay: float = 0.0, hold_after: int | None = None) -> None:
        self.delay = delay
        # Answers past the first `hold_after` requests wait until release(): a test can
        # keep the work from finishing before an event it waits for.
        self.hold_after = hold_after
        self.released = threading.Event()
        self.hits: Counter[str] = Counter()
        self.active = 0
        self.max_active = 0
        self.loop = asyncio.new_event_loop()
        self.port = brokers.free_port()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def url(self, template: str = "{server.ip}") -> str:
        return f"http://127.0.0.1:{self.port}/asset/{template}"

    async def _asset(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.hits[name] += 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.hold_after is not None and sum(self.hits.values()) > self.hold_after:
                while not self.released.is_set():
                    await asyncio.sleep(0.02)
            kind = name.split("-")
            if kind[0] == "slow":
                await asyncio.sleep(int(kind[1]) / 1000)
            elif kind[0] == "hang":
                await asyncio.sleep(5)
            elif kind[0] == "e500" and self.hits[name] <= int(kind[1]):
                return web.Response(status=500, text="busy")
            elif kind[0] == "e404":
                return web.Response(status=404, text="no such asset")
            elif kind[0] == "reset" or (kind[0] == "flaky" and self.hits[name] == 1):
                assert request.transport is not None
                request.transport.abort()  # RST, no response
                return web.Response()
            elif kind[0] == "text":
                return web.Response(text="<html>hi</html>")
            return web.json_response({"asset": name, "owner": "team-" + name[-1]})
        finally:
            self.active -= 1

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_get("/asset/{name}", self._asset)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        self.loop.run_until_complete(site.start())
        self._started.set()
        self.loop.run_forever()

    def __enter__(self) -> AssetService:
        self._thread.start()
        assert self._started.wait(10)
        return self

    async def _shutdown(self) -> None:
        await self.runner.cleanup()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture
def service() -> Iterator[AssetService]:
    with AssetService() as svc:
        yield svc


def http_record(uid: str, n: int, ip: str) -> dict[str, Any]:
    return {"type": "http", "id": f"{uid}:http:{n}", "uid": uid, "ts": 1.5,
            "client": {"ip": "10.0.0.1", "port": 40000}, "server": {"ip": ip, "port": 80},
            "trans_depth": n}  # fmt: skip


# ----------------------------------------------------------------------------- sans-IO


def test_template_renders_fields_and_refuses_what_it_cannot_fill() -> None:
    t = UrlTemplate("http://h:1/a/{server.ip}?p={server.port}&m={request.method}")
    rec = {"server": {"ip": "2001:db8::1", "port": 80}, "request": {"method": "GET/../x"}}
    assert t.render(rec) == "http://h:1/a/2001%3Adb8%3A%3A1?p=80&m=GET%2F..%2Fx"
    with pytest.raises(TemplateError, match=r"request\.method"):
        t.render({"server": {"ip": "1.2.3.4", "port": 1}, "request": None})
    with pytest.raises(ValueError):
        UrlTemplate("http://h/no-field")
    with pytest.raises(ValueError):
        UrlTemplate("http://h/{a!r}")
    assert UrlTemplate("http://h/{{x}}/{a.0}").render({"a": ["z"]}) == "http://h/{x}/z"


def test_ttl_cache_expires_and_stays_bounded() -> None:
    cache = TtlCache(ttl=10, max_entries=2)
    cache.put("a", 1, now=0)
    cache.put("b", 2, now=1)
    assert cache.get("a", now=5) == (True, 1)  # a is now the most recently used
    cache.put("c", 3, now=6)  # evicts b
    assert cache.get("b", now=6) == (False, None)
    assert cache.get("a", now=10) == (False, None)  # expired at 0 + 10
    assert cache.get("c", now=15.9) == (True, 3)
    assert len(cache) == 1


def test_keyed_order_releases_each_key_in_input_order() -> None:
    rng = random.Random(7)
    order = KeyedOrder()
    slots = [Slot(0, i, f"k{rng.randrange(5)}".encode(), None, 1) for i in range(200)]
    for slot in slots:
        order.admit(slot)
    released: list[Slot] = []
    for slot in rng.sample(slots, len(slots)):  # completions in random order
        released.extend(order.complete(slot))
    assert sorted(s.offset for s in released) == list(range(200)) and len(order) == 0
    by_key: dict[bytes | None, list[int]] = defaultdict(list)
    for slot in released:
        by_key[slot.key].append(slot.offset)
    assert all(offsets == sorted(offsets) for offsets in by_key.values())
    assert [s.offset for s in released] != list(range(200))  # keys did overtake each other


def test_offsets_commit_only_behind_the_done_prefix() -> None:
    tracker = OffsetTracker()
    tracker.assign(0)
    for offset in (5, 6, 8, 9):  # 7 is a hole (a transaction marker, say)
        tracker.received(0, offset)
    tracker.done(0, 8)
    tracker.done(0, 6)
    assert tracker.committable() == {}
    tracker.done(0, 5)
    assert tracker.committable() == {0: 9}  # 5, 6, (7), 8 done; 9 in flight
    tracker.done(0, 9)
    assert tracker.committable() == {0: 10} and tracker.pending() == 0
    tracker.revoke(0)
    tracker.done(0, 11)  # a late acknowledgement after revocation is ignored
    assert tracker.committable() == {} and not tracker.owned(0)


# ----------------------------------------------------------------------------- the stage


async def run_stage(
    records: list[tuple[bytes | None, bytes | None]],
    url: str,
    **settings: Any,
) -> tuple[list[Slot], EnrichStage, float]:
    """Feed (key, value) records through an EnrichStage; returns the slots in send order."""
    sent: list[Slot] = []
    async with Lookup(LookupSettings(**settings)) as lookup:
        stage = EnrichStage(UrlTemplate(url), lookup, sent.append)
        started = time.perf_counter()
        stage.submit([Slot(0, i, k, v, 1) for i, (k, v) in enumerate(records)])
        assert await stage.drain(30)
        return sent, stage, time.perf_counter() - started


def outputs(sent: list[Slot]) -> list[dict[str, Any]]:
    return [json.loads(s.output) for s in sent if s.output is not None]


def test_every_failure_goes_out_with_its_reason(service: AssetService) -> None:
    names = ["ok-a", "e404-b", "e500-1-c", "e500-9-d", "hang-e", "reset-f", "flaky-g", "text-h"]
    records = [(f"C{i}".encode(), json.dumps(http_record(f"C{i}", 1, n)).encode())
               for i, n in enumerate(names)]  # fmt: skip
    records += [(b"Cx", b"\xff not json"), (b"Cy", json.dumps({"uid": "Cy"}).encode()),
                (b"Cz", None)]  # fmt: skip
    sent, _, _ = asyncio.run(
        run_stage(records, service.url(), timeout=0.3, retries=2, backoff=0.01)
    )
    assert len(sent) == len(records)  # nothing lost, the tombstone too
    out = {o.get("uid", "raw"): o for o in outputs(sent)}
    assert out["C0"]["enrichment"] == {"asset": "ok-a", "owner": "team-a"}
    errors = {uid: o["enrichment_error"] for uid, o in out.items() if "enrichment_error" in o}
    assert errors["C1"] | {"detail": 0} == {"kind": "http_status", "status": 404, "attempts": 1,
                                            "final": True, "detail": 0}  # fmt: skip
    assert out["C2"]["enrichment"]["asset"] == "e500-1-c"  # retried once, then answered
    assert (errors["C3"]["kind"], errors["C3"]["attempts"], errors["C3"]["final"]) == (
        "http_status", 3, False)  # fmt: skip
    assert (errors["C4"]["kind"], errors["C4"]["attempts"]) == ("timeout", 3)
    assert (errors["C5"]["kind"], errors["C5"]["attempts"]) == ("connection", 3)
    assert out["C6"]["enrichment"]["asset"] == "flaky-g"
    assert errors["C7"]["kind"] == "invalid_json"
    assert errors["raw"]["kind"] == "input" and out["raw"]["input_b64"]
    assert errors["Cy"]["kind"] == "template"
    assert service.hits["e500-9-d"] == 3 and service.hits["e404-b"] == 1
    # The record itself is untouched: same fields, same order, then the new one.
    assert list(out["C0"])[:3] == ["type", "id", "uid"] and list(out["C0"])[-1] == "enrichment"


def test_same_key_keeps_input_order_while_other_keys_overtake(service: AssetService) -> None:
    rng = random.Random(3)
    records, expected = [], defaultdict(list)
    for i in range(120):
        uid = f"C{rng.randrange(6)}"
        delay = rng.choice([0, 0, 5, 40, 120])
        rec = http_record(uid, i, f"slow-{delay}-{i}")
        records.append((uid.encode(), json.dumps(rec).encode()))
        expected[uid].append(rec["id"])
    sent, _, _ = asyncio.run(run_stage(records, service.url(), max_in_flight=200))
    got = defaultdict(list)
    for o in outputs(sent):
        got[o["uid"]].append(o["id"])
    assert got == expected
    assert [o["trans_depth"] for o in outputs(sent)] != list(range(120))


def test_in_flight_requests_are_bounded_and_used(service: AssetService) -> None:
    records = [(f"C{i}".encode(), json.dumps(http_record(f"C{i}", 1, f"slow-100-{i}")).encode())
               for i in range(40)]  # fmt: skip
    sent, _, seconds = asyncio.run(run_stage(records, service.url(), max_in_flight=8))
    assert len(outputs(sent)) == 40
    assert service.max_active == 8
    assert 0.5 <= seconds < 1.5  # 40 lookups of 100 ms, 8 at a time: 5 rounds


def test_repeated_keys_hit_the_cache_and_share_requests(service: AssetService) -> None:
    records = [(f"C{i}".encode(), json.dumps(http_record(f"C{i}", 1, "slow-50-a")).encode())
               for i in range(30)]  # fmt: skip
    sent, stage, _ = asyncio.run(run_stage(records, service.url(), cache_ttl=60))
    assert service.hits["slow-50-a"] == 1  # 30 records, one request (single-flight)
    assert all(o["enrichment"]["asset"] == "slow-50-a" for o in outputs(sent))
    assert stage.lookup.stats.coalesced == 29

    async def twice() -> None:
        async with Lookup(LookupSettings(cache_ttl=0.2)) as lookup:
            for _ in range(3):
                await lookup.get(service.url("ttl-x"))
            await asyncio.sleep(0.3)
            await lookup.get(service.url("ttl-x"))

    asyncio.run(twice())
    assert service.hits["ttl-x"] == 2  # cached, then expired


# ----------------------------------------------------------------------------- with Kafka


def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    for key, value in records:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def enrich_cmd(bootstrap: str, src: str, dst: str, group: str, url: str, *extra: str) -> list[str]:
    return brokers.wirestream(
        "enrich", "--bootstrap-servers", bootstrap, "--input-topic", src, "--output-topic", dst,
        "--group-id", group, "--url", url, *brokers.GROUP_TIMEOUTS, "--log-format", "json",
        *extra,
    )  # fmt: skip


def keyed_workload(n: int, keys: int, seed: int) -> tuple[list[tuple[bytes, bytes]], list[str]]:
    rng = random.Random(seed)
    records, ids = [], []
    for i in range(n):
        uid = f"C{rng.randrange(keys):04d}"
        kind = rng.choice(["ok", "ok", "ok", "slow-80", "e404", "e500-1"])
        rec = http_record(uid, i, f"{kind}-{i}")
        records.append((uid.encode(), json.dumps(rec).encode()))
        ids.append(rec["id"])
    return records, ids


def filled_input(
    bootstrap: str, partitions: int, n: int, keys: int, seed: int
) -> tuple[str, str, str, list[tuple[bytes, bytes]], list[str]]:
    """A fresh input topic holding `keyed_workload(n, keys, seed)`: (input topic, output
    topic, group id, the records, their ids)."""
    src, dst, group = brokers.unique("http"), brokers.unique("http-enriched"), brokers.unique("g")
    brokers.create_topic(bootstrap, src, partitions)
    inputs, ids = keyed_workload(n, keys, seed)
    produce(bootstrap, src, inputs)
    return src, dst, group, inputs, ids


def check_order(values: list[dict[str, Any]], inputs: list[tuple[bytes, bytes]]) -> None:
    """Per key, the outputs follow input order (duplicates allowed, never a step back
    within one run's output except by a restart replay)."""
    position = {json.loads(v)["id"]: i for i, (_, v) in enumerate(inputs)}
    by_key: dict[str, list[int]] = defaultdict(list)
    for v in values:
        by_key[v["uid"]].append(position[v["id"]])
    for seq in by_key.values():
        dedup = list(dict.fromkeys(seq))
        assert dedup == sorted(dedup), seq


@pytest.mark.kafka
def test_enrich_between_topics(broker: brokers.Broker, service: AssetService) -> None:
    bootstrap = broker.bootstrap
    src, dst, group, inputs, ids = filled_input(bootstrap, 3, 600, 40, seed=1)
    done = subprocess.run(
        enrich_cmd(bootstrap, src, dst, group, service.url(), "--exit-when-idle", "2",
                   "--timeout", "1", "--backoff", "0.01"),
        capture_output=True, text=True, timeout=60, cwd=brokers.ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = brokers.read_all(bootstrap, [dst])
    values = [json.loads(m.value) for m in out]
    assert sorted(v["id"] for v in values) == sorted(ids)  # each once, none lost
    assert all(m.key == v["uid"].encode() for m, v in zip(out, values, strict=True))
    check_order(values, inputs)
    kinds = Counter(
        v["enrichment_error"]["kind"] if "enrichment_error" in v else "ok" for v in values
    )
    assert set(kinds) == {"ok", "http_status"}
    committed = brokers.group_offsets(bootstrap, group)
    assert sum(committed.values()) == len(inputs)


@pytest.mark.kafka
def test_a_backlog_that_drains_slower_than_the_idle_time_is_read_to_its_end(
    broker: brokers.Broker,
) -> None:
    """One poll admits 500 records, far past --max-pending 10: the member pauses until they
    are done, which takes longer than --exit-when-idle. Paused is not idle: the member
    resumes and reads the rest before it may exit."""
    bootstrap = broker.bootstrap
    src, dst, group, inputs, ids = filled_input(bootstrap, 2, 1500, 300, seed=7)
    with AssetService(delay=0.02) as svc:
        done = subprocess.run(
            enrich_cmd(bootstrap, src, dst, group, svc.url(), "--exit-when-idle", "1",
                       "--max-pending", "10", "--max-in-flight", "4", "--timeout", "1",
                       "--backoff", "0.01"),
            capture_output=True, text=True, timeout=180, cwd=brokers.ROOT,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    values = [json.loads(m.value) for m in brokers.read_all(bootstrap, [dst])]
    assert sorted({v["id"] for v in values}) == sorted(ids), done.stderr[-2000:]
    assert sum(brokers.group_offsets(bootstrap, group).values()) == len(inputs)


@pytest.mark.kafka
def test_killed_member_loses_nothing(broker: brokers.Broker, tmp_path: Path) -> None:
    """SIGKILL with lookups in flight: committed offsets never pass a record that is not
    in the output; a second member finishes the rest."""
    bootstrap = broker.bootstrap
    src, dst, group, inputs, ids = filled_input(bootstrap, 2, 800, 30, seed=2)
    with AssetService(delay=0.05) as svc:
        log = open(tmp_path / "first.log", "wb")  # noqa: SIM115
        first = subprocess.Popen(
            enrich_cmd(bootstrap, src, dst, group, svc.url(), "--max-in-flight", "10",
                       "--commit-interval", "0.2"),
            stdout=log, stderr=log, cwd=brokers.ROOT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 40
            while sum(brokers.group_offsets(bootstrap, group).values()) < 100:
                assert time.monotonic() < deadline and first.poll() is None, (
                    tmp_path / "first.log"
                ).read_text()[-3000:]
                time.sleep(0.2)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            log.close()
        committed = brokers.group_offsets(bootstrap, group)
        produced = {json.loads(m.value)["id"] for m in brokers.read_all(bootstrap, [dst])}
        assert len(produced) < len(ids), "the member finished before it was killed"
        per_partition = partition_ids(bootstrap, src)
        for p, offset in committed.items():
            missing = [i for i in per_partition[p][:offset] if i not in produced]
            assert not missing, f"partition {p}: committed {offset} past unproduced {missing[:5]}"
        # No removal by hand: the coordinator expires the killed member's session (6 s).
        second = subprocess.run(
            enrich_cmd(bootstrap, src, dst, group, svc.url(), "--exit-when-idle", "2",
                       "--max-in-flight", "100"),
            capture_output=True, text=True, timeout=60, cwd=brokers.ROOT,
        )  # fmt: skip
    assert second.returncode == 0, second.stderr[-3000:]
    values = [json.loads(m.value) for m in brokers.read_all(bootstrap, [dst])]
    assert {v["id"] for v in values} == set(ids)  # at least once
    check_order(values, inputs)


def events(log_text: str, name: str) -> list[dict[str, Any]]:
    found = []
    for line in log_text.splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict) and event.get("event") == name:
                found.append(event)
    return found


def event_times(log_text: str, name: str) -> list[str]:
    return [event["timestamp"] for event in events(log_text, name)]


def partition_ids(bootstrap: str, topic: str) -> dict[int, list[str]]:
    out: dict[int, list[str]] = defaultdict(list)
    for m in sorted(brokers.read_all(bootstrap, [topic]), key=lambda m: (m.partition, m.offset)):
        out[m.partition].append(json.loads(m.value)["id"])
    return out


@pytest.mark.kafka
def test_rebalance_hands_partitions_over(broker: brokers.Broker, tmp_path: Path) -> None:
    """A second member joins mid-stream: the first commits what it produced for the
    partitions it gives up, and drops their in-flight results; nothing is lost."""
    bootstrap = broker.bootstrap
    src, dst, group, inputs, ids = filled_input(bootstrap, 4, 1200, 40, seed=4)
    # Answers past the 700th wait until B has its partitions: B joins mid-stream however
    # long joining takes on a busy machine.
    with AssetService(delay=0.05, hold_after=700) as svc:
        logs = [tmp_path / "a.log", tmp_path / "b.log"]
        args = ("--exit-when-idle", "3", "--max-in-flight", "4", "--commit-interval", "0.3",
                "--max-pending", "40")  # fmt: skip
        procs = []
        try:
            with open(logs[0], "wb") as log:
                procs.append(subprocess.Popen(
                    enrich_cmd(bootstrap, src, dst, group, svc.url(), *args),
                    stdout=log, stderr=log, cwd=brokers.ROOT))  # fmt: skip
            # A's first commits (joining takes long on a loaded machine; A cannot finish
            # early: answers past the 700th are held until B has its partitions).
            brokers.wait_committed(bootstrap, group, 100, timeout=180)
            with open(logs[1], "wb") as log:
                procs.append(subprocess.Popen(
                    enrich_cmd(bootstrap, src, dst, group, svc.url(), *args),
                    stdout=log, stderr=log, cwd=brokers.ROOT))  # fmt: skip
            deadline = time.monotonic() + 60
            while not event_times(logs[1].read_text(errors="replace"), "partitions_assigned"):
                assert time.monotonic() < deadline and procs[1].poll() is None, logs[1].read_text(
                    errors="replace"
                )[-3000:]
                time.sleep(0.1)
            svc.released.set()
            codes = [p.wait(timeout=90) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
    text = [path.read_text(errors="replace") for path in logs]
    assert codes == [0, 0], text[0][-2000:] + text[1][-2000:]
    # A real hand-over: A, alone with all partitions until B joined, gave some up (revoked,
    # or lost when the broker ended A's generation first: both are handled) and B got
    # partitions. Not compared by clock: on a busy machine A may finish its share and go
    # idle before B's assignment callback runs.
    a_events = events(text[0], "partitions_revoked") + events(text[0], "partitions_lost")
    a_gave_up = [e for e in a_events if e.get("partitions")]
    assert a_gave_up, text[0][-3000:]
    b_assigned = [e for e in events(text[1], "partitions_assigned") if e.get("partitions")]
    assert b_assigned, text[1][-3000:]
    assert len(event_times(text[0], "partitions_assigned")) >= 2
    values = [json.loads(m.value) for m in brokers.read_all(bootstrap, [dst])]
    assert {v["id"] for v in values} == set(ids)
    check_order(values, inputs)
    assert sum(brokers.group_offsets(bootstrap, group).values()) == len(inputs)
