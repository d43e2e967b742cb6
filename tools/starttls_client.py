"""Python standard-library clients for the STARTTLS captures (tools/make_starttls_captures.sh):
each connects, asks for TLS the way the library does, runs the handshake, and quits.

    python3 tools/starttls_client.py smtp|imap|pop3|ftp|imap-login|pop3-login|ftp-login PORT
"""

from __future__ import annotations

import ftplib
import imaplib
import poplib
import smtplib
import ssl
import sys


def main() -> None:
    proto, port = sys.argv[1], int(sys.argv[2])
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # a throw-away self-signed certificate
    if proto == "smtp":
        with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example") as s:
            s.ehlo()
            s.starttls(context=ctx)
            s.ehlo()
    elif proto == "imap":
        m = imaplib.IMAP4("127.0.0.1", port)
        m.starttls(ssl_context=ctx)
        m.logout()
    elif proto == "pop3":
        p = poplib.POP3("127.0.0.1", port)
        p.stls(context=ctx)
        p.quit()
    elif proto == "ftp":
        f = ftplib.FTP_TLS(context=ctx)
        f.connect("127.0.0.1", port)
        f.auth()
        f.quit()
    elif proto == "imap-login":  # a real server (Dovecot): log in and open the mailbox over TLS
        m = imaplib.IMAP4("127.0.0.1", port)
        m.starttls(ssl_context=ctx)
        m.login("alice", "secret")
        m.select("INBOX")
        m.logout()
    elif proto == "pop3-login":
        p = poplib.POP3("127.0.0.1", port)
        p.capa()
        p.stls(context=ctx)
        p.user("alice")
        p.pass_("secret")
        p.stat()
        p.quit()
    elif proto == "ftp-login":  # a real server (vsftpd): anonymous login over TLS
        f = ftplib.FTP_TLS(context=ctx)
        f.connect("127.0.0.1", port)
        f.auth()
        f.login()
        f.pwd()
        f.quit()
    else:
        raise SystemExit(f"no Python client for {proto}")


if __name__ == "__main__":
    main()
