"""Tunnel clients curl cannot be made to act like (tools/make_tunnel_captures.sh).

split-hello: CONNECT, then a real TLS handshake (OpenSSL via Python's ssl) whose ClientHello
is sent as a 3-byte first segment and the rest a moment later, then an HTTP GET over TLS.
short-record: CONNECT, then the 14 bytes of suricata-verify's http-connect-tls input (a TLS
record header with length 0, then zeros), then close.

    python3 tools/tunnel_client.py split-hello|short-record PROXY_PORT TARGET_PORT
"""

from __future__ import annotations

import socket
import ssl
import sys
import time


def connect(proxy: int, target: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", proxy))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(f"CONNECT 127.0.0.1:{target} HTTP/1.1\r\nHost: 127.0.0.1:{target}\r\n\r\n".encode())
    reply = b""
    while b"\r\n\r\n" not in reply:
        reply += s.recv(4096)
    if not reply.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"proxy refused: {reply!r}")
    return s


def split_hello(s: socket.socket) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="tunnel.example")
    first = True
    while True:
        try:
            tls.do_handshake()
            done = True
        except ssl.SSLWantReadError:
            done = False
        out = outgoing.read()
        if out and first:
            s.sendall(out[:3])
            time.sleep(0.2)
            s.sendall(out[3:])
            first = False
        elif out:
            s.sendall(out)
        if done:
            break
        incoming.write(s.recv(65536))
    tls.write(b"GET / HTTP/1.1\r\nHost: tunnel.example\r\nConnection: close\r\n\r\n")
    s.sendall(outgoing.read())
    while chunk := s.recv(65536):
        incoming.write(chunk)


def main() -> None:
    kind, proxy, target = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    s = connect(proxy, target)
    if kind == "split-hello":
        split_hello(s)
    else:
        s.sendall(b"\x16\x03\x00" + b"\x00" * 11)
        time.sleep(0.2)
    s.close()


if __name__ == "__main__":
    main()
