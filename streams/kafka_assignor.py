"""A partition assignor that sends each partition to the member with the freshest local
state for it (Kafka Streams' idea, in kafka-python's client-side assignor API).

Each member announces, in its join metadata, the changelog checkpoint of every store it has
on disk. The group leader gives each partition to the member whose checkpoint is highest,
within a balanced quota (every member gets floor or ceil of partitions/members). So after
a restart or a rebalance a member gets back the partitions whose state it holds, and
restores only the changelog tail instead of the whole changelog.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack
from kafka.coordinator.assignors.abstract import (
    AbstractPartitionAssignor,
    ConsumerProtocolAssignment,
    ConsumerProtocolSubscription,
)

_VERSION = 0
_USERDATA_FORMAT = 1


def encode_userdata(local: dict[int, int]) -> bytes:
    return msgpack.packb([_USERDATA_FORMAT, sorted(local.items())])


def decode_userdata(data: bytes | None) -> dict[int, int]:
    """Partition -> checkpoint offset; {} for foreign or damaged metadata."""
    try:
        fmt, pairs = msgpack.unpackb(data or b"")
        if fmt != _USERDATA_FORMAT:
            return {}
        return {int(p): int(o) for p, o in pairs}
    except Exception:
        return {}


def plan(partitions: list[int], members: dict[str, dict[int, int]]) -> dict[str, list[int]]:
    """Balanced assignment preferring, per partition, the member with the highest checkpoint.

    Deterministic: ties go to the lower member id, then the lower partition.
    """
    ids = sorted(members)
    if not ids:
        return {}
    base, extra = divmod(len(partitions), len(ids))
    load = dict.fromkeys(ids, 0)
    out: dict[str, list[int]] = {m: [] for m in ids}
    owner: dict[int, str] = {}

    def take(member: str, partition: int) -> bool:
        nonlocal extra
        n = load[member]
        if n < base or (n == base and extra > 0):
            if n == base:
                extra -= 1
            load[member] = n + 1
            owner[partition] = member
            out[member].append(partition)
            return True
        return False

    wanted = sorted(
        (
            (-offset, member, p)
            for member, local in members.items()
            for p, offset in local.items()
            if p in set(partitions)
        ),
    )
    for _neg, member, p in wanted:
        if p not in owner:
            take(member, p)
    for p in partitions:
        if p in owner:
            continue
        for member in sorted(ids, key=lambda m: (load[m], m)):
            if take(member, p):
                break
    for parts in out.values():
        parts.sort()
    return out


class StateAwareAssignor(AbstractPartitionAssignor):
    """kafka-python assignor; `local_state()` returns {partition: checkpoint offset}."""

    name = "wirestream-state"
    version = _VERSION

    def __init__(self, local_state: Callable[[], dict[int, int]]) -> None:
        self._local_state = local_state

    def metadata(self, topics: Any) -> ConsumerProtocolSubscription:
        return ConsumerProtocolSubscription(
            self.version, sorted(topics), encode_userdata(self._local_state())
        )

    def assign(self, cluster: Any, members: Any) -> dict[str, ConsumerProtocolAssignment]:
        topics: set[str] = set()
        for m in members:
            topics.update(m.metadata.topics)
        per_member: dict[str, list[tuple[str, list[int]]]] = {m.member_id: [] for m in members}
        for topic in sorted(topics):
            subscribed = [m for m in members if topic in m.metadata.topics]
            parts = sorted(cluster.partitions_for_topic(topic) or ())
            local = {m.member_id: decode_userdata(m.metadata.user_data) for m in subscribed}
            for member, assigned in plan(parts, local).items():
                if assigned:
                    per_member[member].append((topic, assigned))
        return {
            member: ConsumerProtocolAssignment(self.version, assignment, b"")
            for member, assignment in per_member.items()
        }

    def on_assignment(self, assignment: Any, generation: int) -> None:
        pass
