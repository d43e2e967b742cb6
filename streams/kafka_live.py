"""Live capture for `wirestream probe --interface`: an AF_PACKET raw socket (Linux).

Yields (linktype, ts_ns, orig_len, frame) like probe.capture, so live packets go through
the same PacketSource as files. Timestamps are the kernel's receive times (SO_TIMESTAMPNS).
A BPF filter (`--bpf`, tcpdump syntax) is compiled with libpcap through ctypes and attached
with SO_ATTACH_FILTER before the socket is bound, so no unfiltered packet slips through;
without libpcap on the machine, --bpf is refused with a clear message.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import socket
import struct
import time
from collections.abc import Callable, Iterator

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = 35
PACKET_OUTGOING = 4
SNAPLEN = 262_144
RCVBUF = 8 << 20
_ANCBUF = socket.CMSG_SPACE(16)
_TIMESPEC = struct.Struct("qq")

# ARPHRD_* (from /sys/class/net/IFACE/type) -> pcap LINKTYPE_*.
_LINKTYPES = {1: 1, 772: 1, 65534: 101}  # ethernet, loopback (ethernet framing), none (raw IP)
ARPHRD_LOOPBACK = 772


class LiveCaptureError(Exception):
    """The interface cannot be captured on (missing, not permitted, unsupported)."""


def interface_linktype(interface: str) -> tuple[int, int]:
    """(ARPHRD type, pcap link type) of an interface."""
    try:
        with open(f"/sys/class/net/{interface}/type") as f:
            hatype = int(f.read().strip())
    except (OSError, ValueError) as exc:
        raise LiveCaptureError(f"no such network interface: {interface}") from exc
    linktype = _LINKTYPES.get(hatype)
    if linktype is None:
        raise LiveCaptureError(f"interface {interface}: unsupported hardware type {hatype}")
    return hatype, linktype


class _BpfProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.c_void_p)]


def compile_bpf(expression: str, linktype: int, snaplen: int = SNAPLEN) -> bytes:
    """The classic BPF instructions (8 bytes each) of a tcpdump filter expression."""
    name = ctypes.util.find_library("pcap")
    if name is None:
        raise LiveCaptureError("--bpf needs libpcap (e.g. apt-get install libpcap0.8)")
    lib = ctypes.CDLL(name)
    lib.pcap_open_dead.restype = ctypes.c_void_p
    lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.pcap_compile.argtypes = [
        ctypes.c_void_p,
        ctypes.POINTER(_BpfProgram),
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_uint32,
    ]
    lib.pcap_geterr.restype = ctypes.c_char_p
    lib.pcap_geterr.argtypes = [ctypes.c_void_p]
    lib.pcap_freecode.argtypes = [ctypes.POINTER(_BpfProgram)]
    lib.pcap_close.argtypes = [ctypes.c_void_p]
    handle = lib.pcap_open_dead(linktype, snaplen)
    if not handle:
        raise LiveCaptureError("libpcap: pcap_open_dead failed")
    try:
        prog = _BpfProgram()
        if lib.pcap_compile(handle, ctypes.byref(prog), expression.encode(), 1, 0xFFFFFFFF):
            error = (lib.pcap_geterr(handle) or b"").decode(errors="replace")
            raise LiveCaptureError(f"bad BPF filter {expression!r}: {error}")
        code = ctypes.string_at(prog.bf_insns, prog.bf_len * 8)
        lib.pcap_freecode(ctypes.byref(prog))
        return code
    finally:
        lib.pcap_close(handle)


def attach_bpf(sock: socket.socket, code: bytes) -> None:
    """SO_ATTACH_FILTER with a struct sock_fprog {u16 len; struct sock_filter *filter}."""
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HL", len(code) // 8, ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)  # the kernel copies it


class LiveCapture:
    """Frames from one interface until `stop()` (or `should_stop()` turns true)."""

    def __init__(
        self,
        interface: str,
        bpf: str | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        self.interface = interface
        # Called when no packet came for the socket timeout (0.2 s): the probe sends the
        # bundles that waited their linger time on a quiet link.
        self._on_idle = on_idle or (lambda: None)
        self.hatype, self.linktype = interface_linktype(interface)
        self._should_stop = should_stop or (lambda: False)
        self._stopped = False
        self.frames = 0
        try:
            # Protocol 0: the socket receives nothing until bound, so the filter is in place
            # before the first packet is queued.
            self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError as exc:
            raise LiveCaptureError(
                "live capture needs root or CAP_NET_RAW (AF_PACKET raw socket)"
            ) from exc
        try:
            if bpf:
                attach_bpf(self._sock, compile_bpf(bpf, self.linktype))
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            self._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self._sock.bind((interface, ETH_P_ALL))
            self._sock.settimeout(0.2)
        except OSError as exc:
            self._sock.close()
            raise LiveCaptureError(f"cannot capture on {interface}: {exc}") from exc

    def stop(self) -> None:
        self._stopped = True

    def close(self) -> None:
        self._sock.close()

    def __iter__(self) -> Iterator[tuple[int, int, int, bytes]]:
        sock = self._sock
        linktype = self.linktype
        skip_outgoing = self.hatype == ARPHRD_LOOPBACK  # lo shows every packet twice
        unpack = _TIMESPEC.unpack_from
        while not (self._stopped or self._should_stop()):
            try:
                data, anc, _flags, addr = sock.recvmsg(SNAPLEN, _ANCBUF)
            except TimeoutError:
                self._on_idle()
                continue
            except InterruptedError:
                continue
            if skip_outgoing and addr[2] == PACKET_OUTGOING:
                continue
            ts_ns = 0
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = unpack(payload)
                    ts_ns = sec * 1_000_000_000 + nsec
            if not ts_ns:
                ts_ns = time.time_ns()
            self.frames += 1
            yield linktype, ts_ns, len(data), data
