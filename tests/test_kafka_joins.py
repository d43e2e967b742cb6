"""The join watchdog (streams/kafka/joins.py): a join that began (revocation callback) and
did not end (assignment callback) within its patience is asked to start again, once per
patience; a completed join is left alone."""

from __future__ import annotations

from typing import Any

from wirestream.streams.kafka.joins import JoinWatchdog


class Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.events.append((event, fields))


def test_a_stalled_join_is_asked_again_once_per_patience() -> None:
    asked: list[int] = []
    log = Log()
    dog = JoinWatchdog(lambda: asked.append(1), patience=12.0, log=log)
    assert not dog.check(100.0)  # no join under way
    dog.join_started(100.0)
    dog.join_started(105.0)  # a second revocation within the same join: the first counts
    assert not dog.check(111.9)
    assert dog.check(112.0) and asked == [1]
    assert not dog.check(120.0)  # patience again before the next nudge
    assert dog.check(124.0) and asked == [1, 1]
    assert [e for e, _ in log.events] == ["join_stalled", "join_stalled"]
    assert log.events[0][1]["waited_seconds"] == 12.0


def test_a_completed_join_is_left_alone() -> None:
    asked: list[int] = []
    dog = JoinWatchdog(lambda: asked.append(1), patience=12.0, log=Log())
    dog.join_started(0.0)
    dog.join_completed()
    assert not dog.check(1000.0) and asked == []
