"""Put captured frames back in timestamp order, within a bounded window.

Captures taken on several CPU queues or merged from several taps can list packets out of
timestamp order; processing them in file order makes a late SYN look like a new
connection and a late segment look like a retransmission. Frames are held until the
largest timestamp seen is `window_ns` past theirs (or `max_frames` frames or `max_bytes`
bytes are held), then
released oldest first; frames with equal timestamps keep their file order. A capture that
is already in order passes through with one comparison per frame and no reordering.
"""

from __future__ import annotations

from bisect import insort
from collections import deque
from collections.abc import Iterable, Iterator

Frame = tuple[int, int, int, bytes]  # (linktype, ts_ns, orig_len, frame)


class ReorderStats:
    __slots__ = ("late", "reordered")

    def __init__(self) -> None:
        self.late = 0  # frames older than one already released: passed on as they are
        self.reordered = 0  # frames that were put before frames read earlier


def reorder(
    frames: Iterable[Frame],
    window_ns: int,
    max_frames: int = 65536,
    stats: ReorderStats | None = None,
    max_bytes: int = 16 << 20,
) -> Iterator[Frame]:
    """Yield `frames` in timestamp order within the window (0: file order, untouched)."""
    if window_ns <= 0:
        yield from frames
        return
    stats = stats or ReorderStats()
    held: deque[tuple[int, int, Frame]] = deque()  # (ts, arrival, frame), sorted
    arrival = 0
    newest = None  # largest timestamp read
    released = None  # timestamp of the last frame released
    held_bytes = 0
    failure: Exception | None = None
    try:
        for frame in frames:
            ts = frame[1]
            arrival += 1
            held_bytes += len(frame[3])
            if newest is None or ts >= newest:
                newest = ts
                held.append((ts, arrival, frame))
            elif released is not None and ts < released:
                stats.late += 1  # too late to put in order: keep it where it is
                held_bytes -= len(frame[3])
                yield frame
                continue
            else:
                stats.reordered += 1
                insort(held, (ts, arrival, frame))  # rare: a late frame within the window
            horizon = newest - window_ns
            while held and (
                held[0][0] <= horizon or len(held) > max_frames or held_bytes >= max_bytes
            ):
                released, _, oldest = held.popleft()
                held_bytes -= len(oldest[3])
                yield oldest
    except Exception as exc:  # a damaged capture: what was read before is never lost
        failure = exc
    while held:
        yield held.popleft()[2]
    if failure is not None:
        raise failure
