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

from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Iterable, Iterator
from itertools import accumulate
from operator import sub

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


# Column batches of probe.capture.Capture.raw_batches: linktypes, timestamps, original
# lengths, buffers, starts, stops (frame i = buffers[i][starts[i]:stops[i]]).
RawBatch = tuple[list[int], list[int], list[int], list[bytes], list[int], list[int]]
_FLUSH_BATCH = 1024  # most frames in one batch out (its packets are all alive at once)


def reorder_batches(
    batches: Iterable[RawBatch],
    window_ns: int,
    max_frames: int = 65536,
    stats: ReorderStats | None = None,
    max_bytes: int = 16 << 20,
) -> Iterator[RawBatch]:
    """`reorder` over column batches (probe.capture.Capture.raw_batches), with the same
    output order, cheaper: a batch already in order after everything held (the common case)
    is appended whole and released with a bisection, not frame by frame. Releasing once per
    batch instead of after each frame changes nothing: while frames arrive in order, the
    frames `reorder` has released after any frame are a prefix that only grows, and
    lazily computing it at the batch's end gives the same prefix. A batch with a frame
    out of order goes through the frame-by-frame rules of `reorder`."""
    if window_ns <= 0:
        yield from batches
        return
    stats = stats or ReorderStats()
    # Held frames in columns, sorted by (ts, arrival); live from index `head` on.
    held: RawBatch = ([], [], [], [], [], [])
    h_ts, h_start, h_stop = held[1], held[4], held[5]
    head = 0
    held_bytes = 0
    newest: int | None = None  # largest timestamp read
    released: int | None = None  # timestamp of the last frame released
    failure: Exception | None = None
    it = iter(batches)
    while True:
        try:
            batch = next(it, None)
        except Exception as exc:  # a damaged capture: what was read before is never lost
            failure = exc
            batch = None
        if batch is None:
            break
        tss, starts, stops = batch[1], batch[4], batch[5]
        if not tss:
            continue
        out: RawBatch = ([], [], [], [], [], [])
        if (newest is None or tss[0] >= newest) and tss == sorted(tss):
            for column, new in zip(held, batch, strict=True):
                column += new
            held_bytes += sum(map(sub, stops, starts))
            newest = tss[-1]
            end = len(h_ts)
            # Frames past the window, then any more the frame or byte caps push out.
            p = max(bisect_right(h_ts, newest - window_ns, head, end), end - max_frames, head)
            if p > head:
                held_bytes -= sum(map(sub, h_stop[head:p], h_start[head:p]))
            while p < end and held_bytes >= max_bytes:  # byte cap: lengths summed in C
                cum = list(accumulate(map(sub, h_stop[p : p + 1024], h_start[p : p + 1024])))
                i = bisect_left(cum, held_bytes - max_bytes + 1)  # first release enough
                if i == len(cum):
                    i -= 1
                held_bytes -= cum[i]
                p += i + 1
            if p > head:
                released = h_ts[p - 1]
                out = tuple(column[head:p] for column in held)  # type: ignore[assignment]
                head = p
        else:  # the rules of `reorder`, frame by frame
            for frame in zip(*batch, strict=True):
                ts = frame[1]
                if newest is None or ts >= newest:
                    newest = ts
                    for column, value in zip(held, frame, strict=True):
                        column.append(value)
                elif released is not None and ts < released:
                    stats.late += 1  # too late to put in order: keep it where it is
                    for column, value in zip(out, frame, strict=True):
                        column.append(value)
                    continue
                else:
                    stats.reordered += 1
                    i = bisect_right(h_ts, ts, head)  # after equal timestamps: file order
                    for column, value in zip(held, frame, strict=True):
                        column.insert(i, value)
                held_bytes += frame[5] - frame[4]
                horizon = newest - window_ns
                end = len(h_ts)
                while head < end and (
                    h_ts[head] <= horizon or end - head > max_frames or held_bytes >= max_bytes
                ):
                    released = h_ts[head]
                    held_bytes -= h_stop[head] - h_start[head]
                    for column, source in zip(out, held, strict=True):
                        column.append(source[head])
                    head += 1
        if head:  # drop released frames from the columns (a pointer move, no frame copy)
            for column in held:
                del column[:head]
            head = 0
        if len(out[1]) <= _FLUSH_BATCH:
            if out[1]:
                yield out
        else:  # e.g. a jump in time released the whole window: in pieces, parsed one by one
            for i in range(0, len(out[1]), _FLUSH_BATCH):
                yield tuple(column[i : i + _FLUSH_BATCH] for column in out)  # type: ignore[misc]
    for i in range(0, len(h_ts), _FLUSH_BATCH):
        yield tuple(column[i : i + _FLUSH_BATCH] for column in held)  # type: ignore[misc]
    if failure is not None:
        raise failure
