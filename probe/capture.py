"""Read pcap and pcapng files as (linktype, ts_ns, orig_len, frame) records.

Own struct-based readers rather than dpkt's: dpkt turns timestamps into floats (losing
nanoseconds), its pcapng reader follows only the first interface, and a bulk reader that
parses records out of large blocks is several times faster than a read() per record.
The format is detected by its magic number, never by the file name.
"""

from __future__ import annotations

import os
import struct
import sys
from collections.abc import Iterator
from itertools import chain
from typing import BinaryIO

from wirestream.probe.errors import CaptureError

__all__ = ["MAX_CAPLEN", "Capture", "CaptureError", "open_capture"]

# A captured frame longer than this is taken as corruption (libpcap's own maximum snaplen).
MAX_CAPLEN = 256 * 1024
# pcapng blocks that are not packets (name resolution, statistics, custom) may be larger
# than one frame, but not absurdly so.
_MAX_BLOCK = 16 * 1024 * 1024
_CHUNK = 1 << 20

Record = tuple[int, int, int, bytes]  # (linktype, ts_ns, orig_len, frame)
# Records in columns: linktypes, timestamps, original lengths, frames (one read block).
Batch = tuple[list[int], list[int], list[int], list[bytes]]
# The same with each frame as buffers[i][starts[i]:stops[i]] (no copy of the frames).
RawBatch = tuple[list[int], list[int], list[int], list[bytes], list[int], list[int]]
_NG_BATCH = 1024  # pcapng records per batch

# magic bytes as they appear in the file -> (struct byte order, ns per fraction unit, extra
# record header bytes). 0xa1b2cd34 is Alexey Kuznetzov's "modified" pcap (8 extra bytes).
_PCAP_MAGICS: dict[bytes, tuple[str, int, int]] = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000, 0),
    b"\xa1\xb2\xc3\xd4": (">", 1000, 0),
    b"\x4d\x3c\xb2\xa1": ("<", 1, 0),
    b"\xa1\xb2\x3c\x4d": (">", 1, 0),
    b"\x34\xcd\xb2\xa1": ("<", 1000, 8),
    b"\xa1\xb2\xcd\x34": (">", 1000, 8),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"

_BT_SHB = 0x0A0D0D0A
_BT_IDB = 1
_BT_OPB = 2  # obsolete Packet Block
_BT_SPB = 3
_BT_EPB = 6
_OPT_IF_TSRESOL = 9
_OPT_IF_TSOFFSET = 14


STDIN = "-"  # the path that means standard input


def open_capture(path: str | os.PathLike[str]) -> Capture:
    """Open a pcap or pcapng file ('-': standard input); raises CaptureError if it is not
    one."""
    return Capture(path)


class Capture:
    """One capture file, iterated once as (linktype, ts_ns, orig_len, frame), or as column
    batches (`batches()`).

    `linktype` is the file's link type (pcapng: the first interface's; each record carries
    its own). `bytes_read` is the file offset after the last batch read (progress),
    `size` the file size. Iteration raises CaptureError at the first damaged record, after
    yielding every record before it.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.format = ""
        self.linktype: int | None = None
        self.snaplen = 0
        self.nanosecond = False
        self.fcs_len = 0  # pcap: bytes of FCS at the end of each frame, if the header says so
        self.bytes_read = 0
        self._pcapng: _PcapngReader | None = None
        try:
            if self.path == STDIN:  # a pipe: read once, never seeked
                fd = sys.stdin.fileno()
                self._file: BinaryIO = open(fd, "rb", buffering=_CHUNK, closefd=False)  # noqa: SIM115
            else:
                self._file = open(self.path, "rb", buffering=_CHUNK)  # noqa: SIM115
        except OSError as exc:
            raise CaptureError(self.path, 0, f"cannot open: {exc.strerror or exc}") from exc
        try:
            self.size = os.fstat(self._file.fileno()).st_size
            self._open()
        except BaseException:
            self._file.close()
            raise

    def _open(self) -> None:
        magic = self._file.read(4)
        if not magic:
            raise CaptureError(self.path, 0, "empty file, not a capture")
        if magic in _PCAP_MAGICS:
            self.format = "pcap"
            bo, self._ts_mul, self._extra = _PCAP_MAGICS[magic]
            self._bo = bo
            self.nanosecond = self._ts_mul == 1
            rest = self._file.read(20)
            if len(rest) < 20:
                raise CaptureError(self.path, 4 + len(rest), "truncated pcap file header")
            major, _minor, _zone, _sigfigs, snaplen, network = struct.unpack(bo + "HHiIII", rest)
            if major != 2:
                raise CaptureError(self.path, 4, f"unsupported pcap version {major}")
            self.snaplen = snaplen
            # Upper bits carry FCS information (LINKTYPE_* with FCS length), not the type.
            self.linktype = network & 0xFFFF
            self.fcs_len = (network >> 28) * 2 if network & 0x04000000 else 0
            self.bytes_read = 24
        elif magic == _PCAPNG_SHB:
            self.format = "pcapng"
            self.nanosecond = True
            self._pcapng = _PcapngReader(self._file, self.path, magic)
            self.linktype = self._pcapng.first_linktype()
            self.bytes_read = self._pcapng.offset
        else:
            raise CaptureError(self.path, 0, f"not a pcap or pcapng file (magic 0x{magic.hex()})")

    def __iter__(self) -> Iterator[Record]:
        return chain.from_iterable(zip(*batch, strict=True) for batch in self.batches())

    def batches(self) -> Iterator[Batch]:
        """The records as column batches (linktypes, ts_ns, orig_lens, frames), one per read
        block: the replay hot path walks plain lists instead of a generator per record."""
        for lts, tss, ols, bufs, starts, stops in self.raw_batches():
            yield lts, tss, ols, [b[i:j] for b, i, j in zip(bufs, starts, stops, strict=True)]

    def raw_batches(self) -> Iterator[RawBatch]:
        """Like `batches`, with each frame as (buffer, start, stop) columns instead of its
        own bytes: frames stay where they were read (a 1 MiB block, shared), so a parser
        can take the headers and the payload it needs without copying the frame first."""
        if self._pcapng is not None:
            return self._pcapng_batches()
        return self._pcap_batches()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pcap_batches(self) -> Iterator[RawBatch]:
        """Bulk reader: parse records out of 1 MiB blocks, no read() per record. A record
        that straddles two blocks is completed on its own, so blocks are never copied."""
        path = self.path
        linktype = self.linktype
        mul = self._ts_mul
        rhl = 16 + self._extra
        unpack_from = struct.Struct(self._bo + "IIII").unpack_from
        read = self._file.read
        base = 24  # file offset of buf[0]
        while buf := read(_CHUNK):
            tss: list[int] = []
            origs: list[int] = []
            starts: list[int] = []
            stops: list[int] = []
            add_ts, add_orig, add_start, add_stop = (
                tss.append,
                origs.append,
                starts.append,
                stops.append,
            )
            error: CaptureError | None = None
            pos = 0
            end = len(buf)
            while pos + rhl <= end:
                sec, frac, caplen, orig_len = unpack_from(buf, pos)
                if caplen == 0 or caplen > MAX_CAPLEN:
                    error = CaptureError(path, base + pos, f"bad record length {caplen}")
                    break
                data_end = pos + rhl + caplen
                if data_end > end:
                    break
                add_ts(sec * 1_000_000_000 + frac * mul)
                add_orig(orig_len)
                add_start(pos + rhl)
                add_stop(data_end)
                pos = data_end
            bufs = [buf] * len(tss)
            if error is None and pos < end:  # a record continues in the next block
                rec = buf[pos:]
                if len(rec) < rhl:
                    rec += read(rhl - len(rec))
                if len(rec) < rhl:
                    msg = f"truncated record header ({len(rec)} of {rhl} bytes)"
                    error = CaptureError(path, base + pos, msg)
                else:
                    sec, frac, caplen, orig_len = unpack_from(rec)
                    if caplen == 0 or caplen > MAX_CAPLEN:
                        error = CaptureError(path, base + pos, f"bad record length {caplen}")
                    else:
                        rec += read(rhl + caplen - len(rec))
                        if len(rec) < rhl + caplen:
                            msg = f"truncated record (caplen {caplen}, {len(rec) - rhl} bytes left)"
                            error = CaptureError(path, base + pos, msg)
                        else:
                            add_ts(sec * 1_000_000_000 + frac * mul)
                            add_orig(orig_len)
                            add_start(rhl)
                            add_stop(len(rec))
                            bufs.append(rec)
                            pos += len(rec)
                            end = pos
            if error is None:
                base += end
            self.bytes_read = base if error is None else base + pos
            if tss:
                yield [linktype] * len(tss), tss, origs, bufs, starts, stops  # type: ignore[list-item]
            if error is not None:
                raise error

    def _pcapng_batches(self) -> Iterator[RawBatch]:
        reader = self._pcapng
        assert reader is not None
        read_block = reader.read_block
        while not reader.eof:
            lts: list[int] = []
            tss: list[int] = []
            origs: list[int] = []
            frames: list[bytes] = []
            error: CaptureError | None = None
            try:
                while len(frames) < _NG_BATCH:
                    rec = read_block()
                    if rec is not None:
                        lts.append(rec[0])
                        tss.append(rec[1])
                        origs.append(rec[2])
                        frames.append(rec[3])
                    elif reader.eof:
                        break
            except CaptureError as exc:
                error = exc
            self.bytes_read = reader.offset
            if frames:
                yield lts, tss, origs, frames, [0] * len(frames), [len(f) for f in frames]
            if error is not None:
                raise error


class _Interface:
    __slots__ = ("div", "linktype", "mul", "offset_ns", "shift", "snaplen")

    def __init__(self, linktype: int, snaplen: int) -> None:
        self.linktype = linktype
        self.snaplen = snaplen
        self.mul = 1000  # default resolution: microseconds
        self.div = 1
        self.shift = 0
        self.offset_ns = 0

    def set_tsresol(self, v: int) -> None:
        if v & 0x80:  # negative power of two
            self.mul, self.div, self.shift = 1_000_000_000, 1, v & 0x7F
        elif v <= 9:
            self.mul, self.div, self.shift = 10 ** (9 - v), 1, 0
        else:
            self.mul, self.div, self.shift = 1, 10 ** (v - 9), 0

    def ts_ns(self, ticks: int) -> int:
        ns = ticks * self.mul
        if self.shift:
            ns >>= self.shift
        elif self.div != 1:
            ns //= self.div
        return ns + self.offset_ns


class _PcapngReader:
    """Block-by-block pcapng reader: sections in either byte order, many interfaces."""

    def __init__(self, f: BinaryIO, path: str, magic: bytes) -> None:
        self._f = f
        self._path = path
        self.offset = 0  # file offset of the next block
        self.eof = False
        self._ifaces: list[_Interface] = []
        self._last_ts = 0
        self._pending_type = magic  # first 4 bytes already read by Capture._open

    def _err(self, offset: int, msg: str) -> CaptureError:
        return CaptureError(self._path, offset, msg)

    def first_linktype(self) -> int | None:
        """Read blocks up to the first interface description (packets cannot precede it)."""
        while not self._ifaces and not self.eof:
            if self.read_block() is not None:  # pragma: no cover - read_block raises first
                raise self._err(self.offset, "packet before any interface description")
        return self._ifaces[0].linktype if self._ifaces else None

    def read_block(self) -> Record | None:
        """Consume one block; return a record for packet blocks, None otherwise."""
        start = self.offset
        if self._pending_type is not None:
            head = self._pending_type + self._f.read(4)
            self._pending_type = None
        else:
            head = self._f.read(8)
        if not head:
            self.eof = True
            return None
        if len(head) < 8:
            raise self._err(start, f"truncated block header ({len(head)} of 8 bytes)")
        if head[:4] == _PCAPNG_SHB:
            return self._read_shb(start, head)
        btype, blen = struct.unpack(self._bo + "II", head)
        if blen < 12 or blen % 4 or blen > _MAX_BLOCK:
            raise self._err(start, f"bad block length {blen} (block type 0x{btype:x})")
        body = self._f.read(blen - 8)
        if len(body) < blen - 8:
            raise self._err(start, f"truncated block (length {blen}, {len(body) + 8} bytes left)")
        if struct.unpack_from(self._bo + "I", body, blen - 12)[0] != blen:
            raise self._err(start, "block trailer length does not match its header")
        self.offset = start + blen
        body_len = blen - 12
        if btype == _BT_EPB:
            if body_len < 20:
                raise self._err(start, "enhanced packet block too short")
            iface_id, ts_hi, ts_lo, caplen, orig_len = struct.unpack_from(self._bo + "IIIII", body)
            return self._packet(start, iface_id, (ts_hi << 32) | ts_lo, caplen, orig_len, body, 20)
        if btype == _BT_SPB:
            if body_len < 4:
                raise self._err(start, "simple packet block too short")
            (orig_len,) = struct.unpack_from(self._bo + "I", body)
            caplen = min(orig_len, body_len - 4)
            if not self._ifaces:
                raise self._err(start, "packet before any interface description")
            iface = self._ifaces[0]
            if iface.snaplen:
                caplen = min(caplen, iface.snaplen)
            if caplen == 0 or caplen > MAX_CAPLEN:
                raise self._err(start, f"bad record length {caplen}")
            # SPBs carry no timestamp: reuse the last one seen, keeping time monotonic.
            return iface.linktype, self._last_ts, orig_len, body[4 : 4 + caplen]
        if btype == _BT_OPB:
            if body_len < 20:
                raise self._err(start, "packet block too short")
            iface_id, _drops, ts_hi, ts_lo, caplen, orig_len = struct.unpack_from(
                self._bo + "HHIIII", body
            )
            return self._packet(start, iface_id, (ts_hi << 32) | ts_lo, caplen, orig_len, body, 20)
        if btype == _BT_IDB:
            self._read_idb(start, body, body_len)
        return None  # other block types (NRB, ISB, DSB, custom, ...) are skipped

    def _packet(
        self,
        start: int,
        iface_id: int,
        ticks: int,
        caplen: int,
        orig_len: int,
        body: bytes,
        off: int,
    ) -> Record:
        if iface_id >= len(self._ifaces):
            raise self._err(start, f"packet for undefined interface {iface_id}")
        if caplen == 0 or caplen > MAX_CAPLEN:
            raise self._err(start, f"bad record length {caplen}")
        if off + caplen > len(body) - 4:
            raise self._err(start, f"captured length {caplen} exceeds its block")
        iface = self._ifaces[iface_id]
        ts = iface.ts_ns(ticks)
        self._last_ts = ts
        return iface.linktype, ts, orig_len, body[off : off + caplen]

    def _read_shb(self, start: int, head: bytes) -> None:
        rest = self._f.read(4)
        if len(rest) < 4:
            raise self._err(start, "truncated section header block")
        if rest == b"\x4d\x3c\x2b\x1a":
            self._bo = "<"
        elif rest == b"\x1a\x2b\x3c\x4d":
            self._bo = ">"
        else:
            raise self._err(start, "bad pcapng byte-order magic")
        (blen,) = struct.unpack(self._bo + "I", head[4:8])
        if blen < 28 or blen % 4 or blen > _MAX_BLOCK:
            raise self._err(start, f"bad section header block length {blen}")
        body = self._f.read(blen - 12)
        if len(body) < blen - 12:
            raise self._err(start, "truncated section header block")
        if struct.unpack_from(self._bo + "I", body, blen - 16)[0] != blen:
            raise self._err(start, "block trailer length does not match its header")
        (major,) = struct.unpack_from(self._bo + "H", body)
        if major != 1:
            raise self._err(start, f"unsupported pcapng version {major}")
        self._ifaces = []  # interfaces are per section
        self.offset = start + blen
        return None

    def _read_idb(self, start: int, body: bytes, body_len: int) -> None:
        if body_len < 8:
            raise self._err(start, "interface description block too short")
        linktype, _reserved, snaplen = struct.unpack_from(self._bo + "HHI", body)
        iface = _Interface(linktype, snaplen)
        pos = 8
        while pos + 4 <= body_len:
            code, olen = struct.unpack_from(self._bo + "HH", body, pos)
            if code == 0:
                break
            val = body[pos + 4 : pos + 4 + olen]
            if code == _OPT_IF_TSRESOL and olen >= 1:
                iface.set_tsresol(val[0])
            elif code == _OPT_IF_TSOFFSET and olen >= 8:
                iface.offset_ns = struct.unpack(self._bo + "q", val[:8])[0] * 1_000_000_000
            pos += 4 + ((olen + 3) & ~3)
        self._ifaces.append(iface)
