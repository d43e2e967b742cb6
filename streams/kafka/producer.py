"""At-least-once: the producer all slots of the member share, and its generation.

Sends are asynchronous: a record that fails reports it on the producer's IO thread,
through the errback it was sent with. After a broker error the member discards the
producer and starts a new one; records still failing in the discarded one must not fail
its successor. So each producer has a generation, each errback carries the generation it
was made for, and only this class moves the generation (the one owner).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from wirestream.streams.kafka_errors import FatalError
from wirestream.streams.kafka_retry import discard_producer


class SharedProducer:
    def __init__(
        self,
        factory: Callable[[], Any],
        discard: Callable[[Any], None] = discard_producer,
    ) -> None:
        self._factory = factory
        self._discard = discard
        self.producer: Any = None
        self.generation = 0
        self.error: BaseException | None = None  # the first failed send of this generation

    def get(self) -> Any:
        """The producer; a new one if it was discarded (after a broker error)."""
        if self.producer is None:
            self.open()
        return self.producer

    def open(self) -> None:
        self.generation += 1
        self.error = None
        self.producer = self._factory()

    def errback(self) -> Callable[[BaseException], None]:
        """What a send of the current producer reports failures to."""
        return functools.partial(self._failed, self.generation)

    def _failed(self, generation: int, exc: BaseException) -> None:
        """Producer callback (its IO thread): a record could not be delivered."""
        if generation != self.generation:
            return  # sent with a discarded producer
        if self.error is None:
            self.error = exc

    def check(self) -> None:
        """Main thread: a failed send stops the member's progress (raises FatalError)."""
        if self.error is not None:
            raise FatalError(f"a record could not be produced: {self.error}")

    def discard(self) -> None:
        """Drop the producer without waiting for it: its pending records' errbacks are
        stale now; the next `get()` opens a new one."""
        if self.producer is None:
            return
        producer, self.producer = self.producer, None
        self.generation += 1
        self._discard(producer)
        self.error = None

    def close(self) -> None:
        if self.producer is not None:
            self.producer.close()
