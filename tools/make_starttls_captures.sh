#!/bin/sh
# Records the own_starttls_*.pcap captures on loopback and writes their tshark oracles.
# Needs root (tcpdump, ports below 1024), tcpdump, tshark, openssl, python3, psql (optional).
# Real clients (openssl s_client -starttls, Python's smtplib/imaplib/poplib/ftplib, psql) talk
# to tools/starttls_server.py, which accepts the upgrade and hands the socket to OpenSSL.
# Run from the repository root: sh tools/make_starttls_captures.sh [NAME ...] (default: all of
# smtp imap pop3 ftp xmpp ldap postgres dovecot pgserver vsftpd prosody slapd).
set -eu
WANTED=${*:-smtp imap pop3 ftp xmpp ldap postgres dovecot pgserver vsftpd prosody slapd}
wanted() { case " $WANTED " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
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
    wanted "$proto" || return 0
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

# A real server too, when Debian's dovecot-imapd and dovecot-pop3d are installed: Dovecot with a
# throw-away configuration (static password), IMAP and POP3 clients that upgrade, log in and
# look at the mailbox over TLS.
if wanted dovecot && command -v dovecot >/dev/null; then
    chmod 755 "$TMP"
    mkdir -p "$TMP/run" "$TMP/state" "$TMP/home"
    chmod 1777 "$TMP/home"
    chmod 644 "$TMP/key.pem"
    cat >"$TMP/dovecot.conf" <<CONF
protocols = imap pop3
listen = 127.0.0.1
base_dir = $TMP/run
state_dir = $TMP/state
log_path = $TMP/dovecot.log
ssl = yes
ssl_cert = <$TMP/cert.pem
ssl_key = <$TMP/key.pem
disable_plaintext_auth = yes
passdb {
  driver = static
  args = password=secret
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=$TMP/home/%u
}
mail_location = maildir:~/Maildir
CONF
    pcap="$OUT/own_starttls_dovecot.pcap"
    tcpdump -i lo -U -s 0 -w "$pcap" "tcp port 143 or tcp port 110" 2>/dev/null &
    dump=$!
    dovecot -F -c "$TMP/dovecot.conf" &
    dove=$!
    sleep 2
    python3 tools/starttls_client.py imap-login 143
    sleep 0.3
    python3 tools/starttls_client.py pop3-login 110
    sleep 0.3
    sclient imap 143
    sleep 0.3
    sclient pop3 110
    sleep 1
    kill "$dump" "$dove"
    wait "$dump" || true
    wait "$dove" || true
    mkdir -p "$OUT/oracles/own_starttls_dovecot.pcap"
    python3 tools/starttls_oracle.py "$pcap" "$OUT/oracles/own_starttls_dovecot.pcap/tls_tshark.jsonl"
fi

# A real PostgreSQL server too, when Debian's postgresql is installed: a throw-away cluster
# (trust authentication) with ssl=on, psql (sslmode=require) and openssl s_client.
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -1)
if wanted pgserver && [ -x "$PG_BIN/pg_ctl" ] && id postgres >/dev/null 2>&1; then
    PGDIR=$(mktemp -d)
    cp "$TMP/cert.pem" "$TMP/key.pem" "$PGDIR/"
    chmod 600 "$PGDIR/key.pem"
    chown -R postgres "$PGDIR"
    su postgres -s /bin/sh -c "$PG_BIN/initdb -D $PGDIR/data -A trust -U postgres >/dev/null"
    su postgres -s /bin/sh -c "$PG_BIN/pg_ctl -D $PGDIR/data -l $PGDIR/log -w start -o \
        '-c listen_addresses=127.0.0.1 -c port=5432 -c unix_socket_directories=$PGDIR \
         -c ssl=on -c ssl_cert_file=$PGDIR/cert.pem -c ssl_key_file=$PGDIR/key.pem'" >/dev/null
    pcap="$OUT/own_starttls_pgserver.pcap"
    tcpdump -i lo -U -s 0 -w "$pcap" "tcp port 5432" 2>/dev/null &
    dump=$!
    sleep 1
    psql "host=127.0.0.1 port=5432 user=postgres dbname=postgres sslmode=require" \
        -c "select ssl, version from pg_stat_ssl where pid = pg_backend_pid()" >/dev/null
    sleep 0.3
    sclient postgres 5432
    sleep 1
    kill "$dump"
    wait "$dump" || true
    su postgres -s /bin/sh -c "$PG_BIN/pg_ctl -D $PGDIR/data -m fast stop" >/dev/null
    rm -rf "$PGDIR"
    mkdir -p "$OUT/oracles/own_starttls_pgserver.pcap"
    python3 tools/starttls_oracle.py "$pcap" "$OUT/oracles/own_starttls_pgserver.pcap/tls_tshark.jsonl"
fi

# A real FTP server too, when Debian's vsftpd is installed: anonymous login after AUTH TLS.
if wanted vsftpd && command -v vsftpd >/dev/null; then
    mkdir -p "$TMP/ftp-empty" "$TMP/ftp-anon"
    cat >"$TMP/vsftpd.conf" <<CONF
listen=YES
listen_address=127.0.0.1
listen_port=21
background=NO
anonymous_enable=YES
no_anon_password=YES
anon_root=$TMP/ftp-anon
local_enable=NO
write_enable=NO
ssl_enable=YES
allow_anon_ssl=YES
rsa_cert_file=$TMP/cert.pem
rsa_private_key_file=$TMP/key.pem
secure_chroot_dir=$TMP/ftp-empty
seccomp_sandbox=NO
CONF
    pcap="$OUT/own_starttls_vsftpd.pcap"
    tcpdump -i lo -U -s 0 -w "$pcap" "tcp port 21" 2>/dev/null &
    dump=$!
    vsftpd "$TMP/vsftpd.conf" &
    ftpd=$!
    sleep 1
    python3 tools/starttls_client.py ftp-login 21
    sleep 0.3
    sclient ftp 21
    sleep 1
    kill "$dump" "$ftpd"
    wait "$dump" || true
    wait "$ftpd" || true
    mkdir -p "$OUT/oracles/own_starttls_vsftpd.pcap"
    python3 tools/starttls_oracle.py "$pcap" "$OUT/oracles/own_starttls_vsftpd.pcap/tls_tshark.jsonl"
fi

# A real XMPP server too, when Debian's prosody is installed: c2s with STARTTLS required.
if wanted prosody && command -v prosody >/dev/null; then
    mkdir -p "$TMP/xmpp-data"
    chmod 755 "$TMP"
    chmod 644 "$TMP/key.pem"
    cat >"$TMP/prosody.cfg.lua" <<CONF
pidfile = "$TMP/prosody.pid"
data_path = "$TMP/xmpp-data"
daemonize = false
run_as_root = true
interfaces = { "127.0.0.1" }
c2s_ports = { 5222 }
c2s_direct_tls_ports = {}
s2s_ports = {}
http_ports = {}
https_ports = {}
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping" }
modules_disabled = { "s2s"; "posix" }
c2s_require_encryption = true
log = { info = "$TMP/prosody.log" }
VirtualHost "localhost"
  ssl = { certificate = "$TMP/cert.pem"; key = "$TMP/key.pem" }
CONF
    pcap="$OUT/own_starttls_prosody.pcap"
    tcpdump -i lo -U -s 0 -w "$pcap" "tcp port 5222" 2>/dev/null &
    dump=$!
    prosody --config "$TMP/prosody.cfg.lua" >/dev/null 2>&1 &
    xmppd=$!
    sleep 3
    sclient xmpp 5222 -xmpphost localhost
    sleep 0.3
    sclient xmpp 5222 -xmpphost localhost -tls1_2
    sleep 1
    kill "$dump" "$xmppd"
    wait "$dump" || true
    wait "$xmppd" || true
    mkdir -p "$OUT/oracles/own_starttls_prosody.pcap"
    python3 tools/starttls_oracle.py "$pcap" "$OUT/oracles/own_starttls_prosody.pcap/tls_tshark.jsonl"
fi

# A real LDAP server too, when Debian's slapd and ldap-utils are installed: OpenLDAP with an
# LDIF database, ldapwhoami -ZZ (StartTLS required, then a simple bind over TLS) and s_client.
if wanted slapd && command -v slapd >/dev/null && command -v ldapwhoami >/dev/null; then
    mkdir -p "$TMP/ldap-db"
    cat >"$TMP/slapd.conf" <<CONF
include /etc/ldap/schema/core.schema
pidfile $TMP/slapd.pid
argsfile $TMP/slapd.args
TLSCertificateFile $TMP/cert.pem
TLSCertificateKeyFile $TMP/key.pem
database ldif
directory $TMP/ldap-db
suffix "dc=example,dc=test"
rootdn "cn=admin,dc=example,dc=test"
rootpw secret
CONF
    pcap="$OUT/own_starttls_slapd.pcap"
    tcpdump -i lo -U -s 0 -w "$pcap" "tcp port 389" 2>/dev/null &
    dump=$!
    slapd -f "$TMP/slapd.conf" -h "ldap://127.0.0.1:389/" -d 0 >/dev/null 2>&1 &
    ldapd=$!
    sleep 2
    LDAPTLS_REQCERT=never ldapwhoami -ZZ -x -H ldap://127.0.0.1:389 \
        -D "cn=admin,dc=example,dc=test" -w secret >/dev/null
    sleep 0.3
    sclient ldap 389
    sleep 1
    kill "$dump" "$ldapd"
    wait "$dump" || true
    wait "$ldapd" || true
    mkdir -p "$OUT/oracles/own_starttls_slapd.pcap"
    python3 tools/starttls_oracle.py "$pcap" "$OUT/oracles/own_starttls_slapd.pcap/tls_tshark.jsonl"
fi

# The generic oracles every fixture has (flows.jsonl, summary.json, http_*.jsonl: tshark and
# tcpflow) come from the shared capture set's tool, when it is there.
SHARED_TOOLS=${SHARED_TOOLS:-../shared/tools}
if [ -f "$SHARED_TOOLS/make_oracles.py" ]; then
    for name in $WANTED; do
        python3 "$SHARED_TOOLS/make_oracles.py" --force "$OUT/own_starttls_$name.pcap"
    done
fi
