"""The asyncio pipeline: slots in (from any source), lookups concurrently, outputs out in
per-key order through `send` (called on the loop thread, in order).

Bounded: the source admits at most `max_pending` records not yet produced (the Kafka
bridge pauses its partitions beyond); the Lookup bounds concurrent requests.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from wirestream.enrich import record as out
from wirestream.enrich.lookup import Lookup
from wirestream.enrich.ordering import KeyedOrder, Slot
from wirestream.enrich.template import TemplateError, UrlTemplate


class EnrichStage:
    def __init__(self, template: UrlTemplate, lookup: Lookup, send: Callable[[Slot], None]):
        self.template = template
        self.lookup = lookup
        self._send = send
        self.order = KeyedOrder()
        self.counts: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self.revoked_epochs: dict[int, int] = {}  # partition -> first epoch still valid

    @property
    def busy(self) -> int:
        """Records admitted whose output has not been handed to `send` yet."""
        return len(self._tasks) + len(self.order)

    def submit(self, slots: list[Slot]) -> None:
        """Loop thread: admit a batch, in input order."""
        for slot in slots:
            self.counts["in"] += 1
            self.order.admit(slot)
            task = asyncio.create_task(self._handle(slot))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def revoke(self, partitions: set[int]) -> None:
        """Loop thread: forget the ordering state of partitions that went elsewhere (their
        in-flight results are dropped by the sender: the new owner redoes them)."""
        for p in partitions:
            self.order.drop_partition(p)

    async def _handle(self, slot: Slot) -> None:
        try:
            slot.output = await self._enrich(slot)
        except Exception as exc:  # a bug costs an error field, never the record
            self.counts["error:internal"] += 1
            rec = out.parse(slot.value) if slot.value is not None else None
            err = {"kind": "internal", "detail": f"{type(exc).__name__}: {exc}"[:200],
                   "status": None, "attempts": 0, "final": True}  # fmt: skip
            slot.output = out.failed(rec, err) if rec is not None else out.unreadable(slot.value)
        for ready in self.order.complete(slot):
            self.counts["out"] += 1
            self._send(ready)

    async def _enrich(self, slot: Slot) -> bytes | None:
        if slot.value is None:
            self.counts["tombstones"] += 1
            return None  # nothing to enrich; the sender marks it done
        record = out.parse(slot.value)
        if record is None:
            self.counts["error:input"] += 1
            return out.unreadable(slot.value)
        try:
            url = self.template.render(record)
        except TemplateError as exc:
            self.counts["error:template"] += 1
            err = {"kind": "template", "detail": str(exc), "status": None, "attempts": 0,
                   "final": True}  # fmt: skip
            return out.failed(record, err)
        result = await self.lookup.get(url)
        if result.cached:
            self.counts["cache_hits"] += 1
        if result.error is not None:
            self.counts[f"error:{result.error['kind']}"] += 1
            return out.failed(record, result.error)
        self.counts["enriched"] += 1
        return out.enriched(record, result.value)

    async def drain(self, timeout: float) -> bool:
        """Wait for every admitted record to be handed to `send` (True) or the timeout."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._tasks:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return False
            await asyncio.wait(set(self._tasks), timeout=left)
        return True
