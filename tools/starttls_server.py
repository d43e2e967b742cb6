"""A small server for recording STARTTLS captures (tools/make_starttls_captures.sh).

It speaks just enough of one protocol's plaintext dialogue for real clients (`openssl
s_client -starttls ...`, Python's imaplib/poplib/ftplib/smtplib, psql) to ask for TLS, accepts
the upgrade, and then runs a real OpenSSL handshake (Python's ssl) on the same socket, so the
hellos in the capture are the clients' and OpenSSL's own. After the handshake it answers
commands with "ok" until the client closes. Not a test dependency: only the capture script
runs it.

    python3 tools/starttls_server.py PROTOCOL PORT CERT KEY CONNECTIONS
"""

from __future__ import annotations

import socket
import ssl
import sys

XMPP_TLS = b"urn:ietf:params:xml:ns:xmpp-tls"
LDAP_STARTTLS_OID = b"1.3.6.1.4.1.1466.20037"


class Conn:
    """Buffered plaintext reads on an accepted socket (bytes read ahead are kept)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def line(self) -> bytes:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise EOFError
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r")

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise EOFError
            self.buf += chunk
        head, _, self.buf = self.buf.partition(marker)
        return head + marker

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)


# -- plaintext dialogues: return when the next bytes are TLS --
def smtp(c: Conn) -> None:
    c.send(b"220 mail.example ESMTP ready\r\n")
    while True:
        verb = c.line().split(b" ")[0].upper()
        if verb in (b"EHLO", b"HELO"):
            c.send(b"250-mail.example\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
        elif verb == b"STARTTLS":
            c.send(b"220 2.0.0 Ready to start TLS\r\n")
            return
        else:
            c.send(b"250 ok\r\n")


def imap(c: Conn) -> None:
    c.send(b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n")
    while True:
        tag, _, rest = c.line().partition(b" ")
        verb = rest.split(b" ")[0].upper()
        if verb == b"CAPABILITY":
            c.send(b"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n" + tag + b" OK done\r\n")
        elif verb == b"STARTTLS":
            c.send(tag + b" OK Begin TLS negotiation now\r\n")
            return
        else:
            c.send(tag + b" OK done\r\n")


def pop3(c: Conn) -> None:
    c.send(b"+OK POP3 ready\r\n")
    while True:
        verb = c.line().split(b" ")[0].upper()
        if verb == b"CAPA":
            c.send(b"+OK capabilities follow\r\nTOP\r\nUIDL\r\nSTLS\r\n.\r\n")
        elif verb == b"STLS":
            c.send(b"+OK Begin TLS negotiation\r\n")
            return
        else:
            c.send(b"+OK\r\n")


def ftp(c: Conn) -> None:
    c.send(b"220-Welcome\r\n220 FTP ready\r\n")
    while True:
        line = c.line().upper()
        if line.startswith(b"AUTH TLS") or line.startswith(b"AUTH SSL"):
            c.send(b"234 AUTH TLS successful\r\n")
            return
        if line.startswith(b"FEAT"):
            c.send(b"211-Features:\r\n AUTH TLS\r\n PBSZ\r\n211 End\r\n")
        else:
            c.send(b"200 ok\r\n")


def xmpp(c: Conn) -> None:
    c.until(b"<stream:stream")  # after an optional <?xml ...?>
    c.until(b">")
    c.send(
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
        b"xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='localhost' "
        b"version='1.0'><stream:features><starttls xmlns='" + XMPP_TLS + b"'><required/>"
        b"</starttls></stream:features>"
    )
    c.until(b"<starttls")
    c.until(b">")
    c.send(b"<proceed xmlns='" + XMPP_TLS + b"'/>")


def _ber_len(c: Conn) -> int:
    first = c.exactly(1)[0]
    if first < 0x80:
        return first
    return int.from_bytes(c.exactly(first & 0x7F), "big")


def _ber(tag: int, value: bytes) -> bytes:
    n = len(value)
    length = (
        bytes([n])
        if n < 0x80
        else bytes([0x81, n])
        if n < 0x100
        else bytes([0x82]) + n.to_bytes(2, "big")
    )
    return bytes([tag]) + length + value


def ldap(c: Conn) -> None:
    while True:
        if c.exactly(1) != b"\x30":
            raise ValueError("not an LDAPMessage")
        body = c.exactly(_ber_len(c))
        msgid = body[2 : 2 + body[1]]
        op = body[2 + body[1]]
        if op == 0x77 and LDAP_STARTTLS_OID in body:
            result = _ber(0x0A, b"\x00") + _ber(0x04, b"") + _ber(0x04, b"")
            resp = _ber(0x78, result + _ber(0x8A, LDAP_STARTTLS_OID))
            c.send(_ber(0x30, _ber(0x02, msgid) + resp))
            return
        raise ValueError(f"unexpected LDAP operation {op:#x}")


def postgres(c: Conn) -> None:
    while True:
        length = int.from_bytes(c.exactly(4), "big")
        code = int.from_bytes(c.exactly(4), "big")
        c.exactly(length - 8)
        if code == 80877103:  # SSLRequest
            c.send(b"S")
            return
        c.send(b"N")  # GSSENCRequest: not supported, the client goes on


DIALOGUES = {
    "smtp": smtp, "imap": imap, "pop3": pop3, "ftp": ftp,
    "xmpp": xmpp, "ldap": ldap, "postgres": postgres,
}  # fmt: skip

# What to answer over TLS until the client closes (per line; None: just read).
AFTER = {
    "smtp": lambda line: b"221 bye\r\n" if line.upper().startswith(b"QUIT") else b"250 ok\r\n",
    "imap": lambda line: (
        (b"* CAPABILITY IMAP4rev1\r\n" if b"CAPABILITY" in line.upper() else b"")
        + line.split(b" ")[0]
        + b" OK done\r\n"
    ),
    "pop3": lambda line: b"+OK\r\n",
    "ftp": lambda line: b"221 bye\r\n" if line.upper().startswith(b"QUIT") else b"200 ok\r\n",
}


def serve(proto: str, conn: socket.socket, ctx: ssl.SSLContext) -> None:
    c = Conn(conn)
    DIALOGUES[proto](c)
    if c.buf:
        raise ValueError("client sent bytes before the upgrade was accepted")
    tls = ctx.wrap_socket(conn, server_side=True)
    answer = AFTER.get(proto)
    pending = b""
    while True:
        try:
            chunk = tls.recv(4096)
        except (ssl.SSLError, OSError):
            break
        if not chunk:
            break
        pending += chunk
        if answer is None:
            break  # the client's first protocol bytes over TLS: enough for the capture
        while answer and b"\n" in pending:
            line, _, pending = pending.partition(b"\n")
            tls.sendall(answer(line.rstrip(b"\r")))
    try:
        tls.unwrap()
    except (ssl.SSLError, OSError):
        pass
    tls.close()


def main() -> None:
    proto, port, cert, key, count = sys.argv[1:6]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if proto == "xmpp":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # one capture with a TLS 1.2 handshake
    with socket.create_server(("127.0.0.1", int(port))) as srv:
        print("ready", flush=True)
        for _ in range(int(count)):
            conn, _ = srv.accept()
            with conn:
                try:
                    serve(proto, conn, ctx)
                except (EOFError, ValueError, ssl.SSLError, OSError) as exc:
                    print(f"{proto}: {type(exc).__name__}: {exc}", file=sys.stderr)


if __name__ == "__main__":
    main()
