#!/bin/sh
# Records the own_starttls_*.pcap captures on loopback and writes their tshark oracles.
# Needs root (tcpdump, ports below 1024), tcpdump, tshark, openssl, python3, psql (optional).
# Real clients (openssl s_client -starttls, Python's smtplib/imaplib/poplib/ftplib, psql) talk
# to tools/starttls_server.py, which accepts the upgrade and hands the socket to OpenSSL.
# Run from the repository root: sh tools/make_starttls_captures.sh
set -eu
OUT=fixtures/pcaps
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj /CN=mail.example -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null

sclient() {  # protocol port [extra s_client options]
    proto=$1 port=$2
    shift 2
    timeout 10 openssl s_client -connect "127.0.0.1:$port" -starttls "$proto" \
        -servername mail.example "$@" </dev/null >/dev/null 2>&1 || true
}

record() {  # protocol port connections clients...
    proto=$1 port=$2 count=$3
    shift 3
    pcap="$OUT/own_starttls_$proto.pcap"
    tcpdump -i lo -U -s 0 -w "$pcap" "tcp port $port" 2>/dev/null &
    dump=$!
    python3 tools/starttls_server.py "$proto" "$port" "$TMP/cert.pem" "$TMP/key.pem" "$count" \
        >"$TMP/ready" &
    server=$!
    while [ ! -s "$TMP/ready" ]; do sleep 0.1; done
    sleep 1  # tcpdump is listening by now
    for client in "$@"; do
        eval "$client"
        sleep 0.3
    done
    wait "$server"
    sleep 1
    kill "$dump"
    wait "$dump" || true
    rm -f "$TMP/ready"
    mkdir -p "$OUT/oracles/own_starttls_$proto.pcap"
    python3 tools/starttls_oracle.py "$pcap" "$OUT/oracles/own_starttls_$proto.pcap/tls_tshark.jsonl"
}

record smtp 25 2 "python3 tools/starttls_client.py smtp 25" "sclient smtp 25"
record imap 143 2 "python3 tools/starttls_client.py imap 143" "sclient imap 143"
record pop3 110 2 "python3 tools/starttls_client.py pop3 110" "sclient pop3 110"
record ftp 21 2 "python3 tools/starttls_client.py ftp 21" "sclient ftp 21"
record xmpp 5222 1 "sclient xmpp 5222 -xmpphost localhost"
record ldap 389 1 "sclient ldap 389"
if command -v psql >/dev/null; then
    record postgres 5432 2 "sclient postgres 5432" \
        "PGCONNECT_TIMEOUT=5 psql 'host=127.0.0.1 port=5432 user=u dbname=d sslmode=require' -c '' >/dev/null 2>&1 || true"
else
    record postgres 5432 1 "sclient postgres 5432"
fi

# The generic oracles every fixture has (flows.jsonl, summary.json, http_*.jsonl: tshark and
# tcpflow) come from the shared capture set's tool, when it is there.
SHARED_TOOLS=${SHARED_TOOLS:-../shared/tools}
if [ -f "$SHARED_TOOLS/make_oracles.py" ]; then
    python3 "$SHARED_TOOLS/make_oracles.py" --force "$OUT"/own_starttls_*.pcap
fi
