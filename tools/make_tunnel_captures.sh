#!/bin/sh
# Records fixtures/pcaps/own_connect_tunnels.pcap on loopback and writes its tshark oracles.
# Needs root (tcpdump), tcpdump, tshark, curl, openssl, python3. Both legs are recorded: client
# <-> proxy (port 3128: CONNECT, then plain HTTP (curl -p) or TLS (curl https://, a ClientHello
# split after 3 bytes, suricata-verify's short record) inside the tunnel) and proxy <-> HTTPS
# server (port 18443: the same TLS bytes, relayed, with no tunnel around them), so that a hello
# tshark does not dissect inside a tunnel can be checked against the relayed copy.
# Run from the repository root: sh tools/make_tunnel_captures.sh
set -eu
OUT=fixtures/pcaps
NAME=own_connect_tunnels.pcap
TMP=$(mktemp -d)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj /CN=tunnel.example -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null
mkdir "$TMP/www" && echo "hello through the tunnel" >"$TMP/www/index.html"

python3 -m http.server 18000 --bind 127.0.0.1 --directory "$TMP/www" >/dev/null 2>&1 &
plain=$!
python3 - "$TMP" <<'PY' >/dev/null 2>&1 &
import http.server, ssl, sys, functools
tmp = sys.argv[1]
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=tmp + "/www")
srv = http.server.HTTPServer(("127.0.0.1", 18443), handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(tmp + "/cert.pem", tmp + "/key.pem")
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
PY
https=$!
tcpdump -i lo -U -s 0 -w "$OUT/$NAME" "tcp port 3128 or tcp port 18443" 2>/dev/null &
dump=$!
python3 tools/connect_proxy.py 3128 4 >"$TMP/ready" &
proxy=$!
while [ ! -s "$TMP/ready" ]; do sleep 0.1; done
sleep 1
curl -s -p -x http://127.0.0.1:3128 http://127.0.0.1:18000/ >/dev/null
sleep 0.3
curl -s -k -x http://127.0.0.1:3128 https://127.0.0.1:18443/ >/dev/null
sleep 0.3
python3 tools/tunnel_client.py split-hello 3128 18443
sleep 0.3
python3 tools/tunnel_client.py short-record 3128 18443
wait "$proxy"
sleep 1
kill "$dump" "$plain" "$https"
wait "$dump" || true
rm -rf "$TMP"

mkdir -p "$OUT/oracles/$NAME"
python3 tools/starttls_oracle.py "$OUT/$NAME" "$OUT/oracles/$NAME/tls_tshark.jsonl" \
    -d tcp.port==18443,tls
SHARED_TOOLS=${SHARED_TOOLS:-../shared/tools}
if [ -f "$SHARED_TOOLS/make_oracles.py" ]; then
    python3 "$SHARED_TOOLS/make_oracles.py" --force "$OUT/$NAME"
fi
