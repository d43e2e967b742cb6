"""A minimal HTTP CONNECT proxy for recording tunnel captures (tools/make_tunnel_captures.sh).

Answers each CONNECT with "200 Connection established" and relays bytes both ways until
either side closes; anything else gets a 405. Not a test dependency.

    python3 tools/connect_proxy.py PORT CONNECTIONS
"""

from __future__ import annotations

import socket
import sys
import threading


def relay(src: socket.socket, dst: socket.socket) -> None:
    try:
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def handle(client: socket.socket) -> None:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = client.recv(4096)
        if not chunk:
            client.close()
            return
        head += chunk
    head, _, rest = head.partition(b"\r\n\r\n")
    method, target = head.split(b" ")[:2]
    if method != b"CONNECT":
        client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
        client.close()
        return
    host, _, port = target.rpartition(b":")
    upstream = socket.create_connection((host.decode(), int(port)))
    client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
    if rest:
        upstream.sendall(rest)
    back = threading.Thread(target=relay, args=(upstream, client))
    back.start()
    relay(client, upstream)
    back.join()
    client.close()
    upstream.close()


def main() -> None:
    port, count = int(sys.argv[1]), int(sys.argv[2])
    with socket.create_server(("127.0.0.1", port)) as srv:
        print("ready", flush=True)
        workers = []
        for _ in range(count):
            conn, _ = srv.accept()
            t = threading.Thread(target=handle, args=(conn,))
            t.start()
            workers.append(t)
        for t in workers:
            t.join()


if __name__ == "__main__":
    main()
