"""A partition assignor that sends each partition to the member with the freshest local
state for it (Kafka Streams' idea, in kafka-python's client-side assignor API).

Each member announces, in its join metadata, the changelog checkpoint of every store it has
on disk. The group leader gives each partition to the member whose checkpoint is highest,
within a balanced quota (every member gets floor or ceil of partitions/members). So after
a restart or a rebalance a member gets back the partitions whose state it holds, and
restores only the changelog tail instead of the whole changelog.

Interactive queries (Kafka Streams' `application.server`): each member also announces the
host:port of its query API; the leader puts the whole map (member -> endpoint ->
partitions) into every member's assignment, so each member knows who serves what.
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
_USERDATA_FORMAT = 2  # [2, [[partition, checkpoint], ...], endpoint]; 1 had no endpoint
_MAP_FORMAT = 1

# (member id, query endpoint or "", [(topic, [partitions])]) for every member of the group
GroupMember = tuple[str, str, list[tuple[str, list[int]]]]


def encode_userdata(local: dict[int, int], endpoint: str | None = None) -> bytes:
    return msgpack.packb([_USERDATA_FORMAT, sorted(local.items()), endpoint or ""])


def decode_member(data: bytes | None) -> tuple[dict[int, int], str]:
    """(partition -> checkpoint offset, query endpoint); empty for foreign or damaged
    metadata (such a member simply gets no preference and no endpoint)."""
    try:
        fields = msgpack.unpackb(data or b"")
        if fields[0] not in (1, _USERDATA_FORMAT):
            return {}, ""
        local = {int(p): int(o) for p, o in fields[1]}
        endpoint = fields[2] if len(fields) > 2 and isinstance(fields[2], str) else ""
        return local, endpoint
    except Exception:
        return {}, ""


def decode_userdata(data: bytes | None) -> dict[int, int]:
    """Partition -> checkpoint offset; {} for foreign or damaged metadata."""
    return decode_member(data)[0]


def encode_group_map(members: list[GroupMember]) -> bytes:
    return msgpack.packb([_MAP_FORMAT, [[m, e, [[t, ps] for t, ps in a]] for m, e, a in members]])


def decode_group_map(data: bytes | None) -> list[GroupMember] | None:
    """The leader's map from an assignment's user data; None if absent or foreign."""
    try:
        fmt, members = msgpack.unpackb(data or b"")
        if fmt != _MAP_FORMAT:
            return None
        return [
            (str(m), str(e), [(str(t), [int(p) for p in ps]) for t, ps in a]) for m, e, a in members
        ]
    except Exception:
        return None


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
    """kafka-python assignor; `local_state()` returns {partition: checkpoint offset};
    `endpoint` is this member's query API (host:port) and `on_map(generation, members)`
    receives the group map of each assignment (on kafka-python's IO thread)."""

    name = "wirestream-state"
    version = _VERSION

    def __init__(
        self,
        local_state: Callable[[], dict[int, int]],
        endpoint: str | None = None,
        on_map: Callable[[int, list[GroupMember]], None] | None = None,
    ) -> None:
        self._local_state = local_state
        self._endpoint = endpoint
        self._on_map = on_map

    def metadata(self, topics: Any) -> ConsumerProtocolSubscription:
        return ConsumerProtocolSubscription(
            self.version, sorted(topics), encode_userdata(self._local_state(), self._endpoint)
        )

    def assign(self, cluster: Any, members: Any) -> dict[str, ConsumerProtocolAssignment]:
        topics: set[str] = set()
        for m in members:
            topics.update(m.metadata.topics)
        per_member: dict[str, list[tuple[str, list[int]]]] = {m.member_id: [] for m in members}
        endpoints = {m.member_id: decode_member(m.metadata.user_data)[1] for m in members}
        for topic in sorted(topics):
            subscribed = [m for m in members if topic in m.metadata.topics]
            parts = sorted(cluster.partitions_for_topic(topic) or ())
            local = {m.member_id: decode_userdata(m.metadata.user_data) for m in subscribed}
            for member, assigned in plan(parts, local).items():
                if assigned:
                    per_member[member].append((topic, assigned))
        group_map = encode_group_map(
            [(m, endpoints.get(m, ""), a) for m, a in sorted(per_member.items())]
        )
        return {
            member: ConsumerProtocolAssignment(self.version, assignment, group_map)
            for member, assignment in per_member.items()
        }

    def on_assignment(self, assignment: Any, generation: int) -> None:
        if self._on_map is None:
            return
        members = decode_group_map(getattr(assignment, "user_data", None))
        if members is not None:
            self._on_map(generation, members)
