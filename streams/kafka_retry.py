"""Broker faults in the Kafka mode: bounded retries with backoff, and one clear error.

At start (`probe`, `run`), the brokers are tried until `--connect-timeout`, with backoff
between attempts; then the command ends with one line naming the bootstrap servers and
what to check (exit 3), never a traceback. While running, `run` rewinds to the last
committed offsets after a broker error and tries again with backoff; `Outage` tracks how
long the brokers have been failing, and after `--reconnect-timeout` without a success it
gives up the same way.
"""

from __future__ import annotations

import random
import resource
import socket
import time
from collections.abc import Callable
from typing import Any

from kafka.errors import KafkaError, KafkaTimeoutError

BACKOFF_FIRST = 0.5  # seconds
BACKOFF_MAX = 5.0
# One bootstrap attempt may take this long before the next one (kafka-python retries
# connections inside an attempt too, with its own reconnect backoff).
ATTEMPT_SECONDS = 2.0
# kafka-python backs reconnections off up to 30 s; after a broker restart that can leave a
# client idle for half a minute. The Java client's default is 1 s.
RECONNECT_BACKOFF_MAX_MS = 2000


class BrokerUnavailable(Exception):
    """The brokers could not be reached (at start) or came back too late (while running);
    the message names them and says what to do."""


class Backoff:
    """Exponential backoff with jitter: 0.5, 1, 2, 4, 5, 5 ... seconds (±20%), so that many
    members restarting at once do not hit the brokers in lockstep."""

    def __init__(self, first: float = BACKOFF_FIRST, maximum: float = BACKOFF_MAX) -> None:
        self.first = first
        self.maximum = maximum
        self.attempts = 0

    def next(self) -> float:
        base = min(self.maximum, self.first * 2**self.attempts)
        self.attempts += 1
        return base * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self.attempts = 0


def diagnose(bootstrap_servers: str, timeout: float = 1.0) -> str:
    """What a plain TCP connection to each bootstrap server gives (kafka-python only says
    "Unable to bootstrap"): "refused", "timed out", a resolver error, or "connects"."""
    out = []
    for server in bootstrap_servers.split(","):
        server = server.strip()
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit():
            out.append(f"{server}: not HOST:PORT")
            continue
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
                out.append(f"{server}: TCP connects (not a Kafka broker, or not ready?)")
        except OSError as exc:
            out.append(f"{server}: {exc.strerror or type(exc).__name__}".lower())
    return "; ".join(out)


def unreachable_message(bootstrap_servers: str, seconds: float, attempts: int, error: Any) -> str:
    return (
        f"no Kafka broker reachable at {bootstrap_servers} after {seconds:.0f} s and "
        f"{attempts} attempts ({diagnose(bootstrap_servers)}; last error: {str(error)[:200]}): "
        "check --bootstrap-servers (or WIRESTREAM_BOOTSTRAP_SERVERS) and that the brokers "
        "are up and reachable from this host, or allow more time with --connect-timeout"
    )


def connect(
    create: Callable[[int], Any],
    bootstrap_servers: str,
    timeout: float,
    log: Any,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """`create(bootstrap_timeout_ms)` (a kafka-python client) until it succeeds or `timeout`
    seconds have passed; raises BrokerUnavailable then."""
    started = time.monotonic()
    deadline = started + timeout
    backoff = Backoff()
    attempts = 0
    while True:
        attempts += 1
        left = deadline - time.monotonic()
        try:
            return create(max(100, int(min(left, ATTEMPT_SECONDS) * 1000)))
        except (KafkaError, OSError) as exc:
            error = exc
        delay = backoff.next()
        left = deadline - time.monotonic()
        if left <= 0:
            raise BrokerUnavailable(
                unreachable_message(bootstrap_servers, time.monotonic() - started, attempts, error)
            ) from None
        delay = min(delay, left)
        log.warning(
            "broker_unreachable",
            bootstrap_servers=bootstrap_servers,
            attempt=attempts,
            retry_in=round(delay, 2),
            gives_up_in=round(left, 1),
            error=str(error)[:200],
        )
        sleep(delay)


class Outage:
    """How long a running member has been failing to reach the brokers: `failed()` after
    each broker error returns how long to back off (raises BrokerUnavailable once the
    errors have lasted `limit` seconds); `recovered()` after the next success."""

    def __init__(self, bootstrap_servers: str, limit: float, log: Any) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.limit = limit
        self.log = log
        self.since: float | None = None
        self.errors = 0
        self.backoff = Backoff()

    def failed(self, exc: BaseException, during: str) -> float:
        now = time.monotonic()
        if self.since is None:
            self.since = now
        self.errors += 1
        down = now - self.since
        if down >= self.limit:
            raise BrokerUnavailable(
                f"lost the Kafka brokers at {self.bootstrap_servers}: still failing after "
                f"{down:.0f} s ({self.errors} errors; last, while {during}: {str(exc)[:200]}); "
                "check the brokers, or allow more time with --reconnect-timeout; a restarted "
                "member resumes from the last commit"
            )
        delay = min(self.backoff.next(), self.limit - down)
        self.log.warning(
            "broker_error",
            during=during,
            error=f"{type(exc).__name__}: {str(exc)[:200]}",
            errors=self.errors,
            failing_for=round(down, 1),
            retry_in=round(delay, 2),
            note="rewinding to the last committed offsets; nothing committed is lost",
        )
        return delay

    def recovered(self) -> None:
        if self.since is None:
            return
        self.log.info(
            "broker_recovered",
            failing_for=round(time.monotonic() - self.since, 1),
            errors=self.errors,
        )
        self.since = None
        self.errors = 0
        self.backoff.reset()


# ---------------------------------------------------------------- kafka-python 3.0 helpers
def finish_transaction(producer: Any, step: str, timeout: float, *args: Any) -> None:
    """`send_offsets_to_transaction(*args)` (step "offsets"), `commit_transaction()` or
    `abort_transaction()` with a bounded wait. kafka-python 3.0 waits for these without a
    bound, and a wait that spans a broker restart never ends (seen on noida-db); after the
    timeout the caller discards the producer and initialises a new one with the same
    transactional id, which makes the broker finish or abort the transaction."""
    manager = getattr(producer, "_transaction_manager", None)
    sender = getattr(producer, "_sender", None)
    if manager is None or sender is None:  # another client version: the public calls
        if step == "offsets":
            producer.send_offsets_to_transaction(*args)
        else:
            getattr(producer, f"{step}_transaction")()
        return
    if step == "offsets":
        result = manager.send_offsets_to_transaction(*args)
    elif step == "commit":
        result = manager.begin_commit()
    else:
        result = manager.begin_abort()
    sender.wakeup()
    if not result.wait(timeout_ms=timeout * 1000):  # raises the request's error, if any
        raise KafkaTimeoutError(f"transaction {step} not acknowledged within {timeout:.0f} s")


def discard_producer(producer: Any, timeout: float = 1.0) -> None:
    """Close a producer that may hold records the brokers will not take: `close(timeout)`
    flushes first and raises if that times out, leaving the sender thread retrying, so
    force the sender to stop then (its pending records fail)."""
    try:
        producer.close(timeout=timeout)
    except Exception:
        sender = getattr(producer, "_sender", None)
        if sender is not None:
            sender.force_close()


def peak_rss_mib() -> int:
    """This process's peak resident size, for the summary log lines.

    VmHWM is the high-water mark of this program's own memory; `ru_maxrss` is not: Linux
    carries it across exec, so a member forked from a large parent (a test runner) would
    report the parent's size."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
