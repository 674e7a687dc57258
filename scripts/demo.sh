#!/usr/bin/env bash
# The whole system on loopback: start `acmekit dns`, two `acmekit ct` logs and `acmekit
# server` (which logs every certificate in both), obtain a certificate with `acmekit
# certonly --standalone`, serve it, show its dates and verified SCTs with `acmekit check`,
# and stop everything this script started.
#
# Ports can be moved with DEMO_CA_PORT, DEMO_DNS_PORT, DEMO_API_PORT, DEMO_HTTP01_PORT,
# DEMO_TLS_PORT, DEMO_CRL_PORT, DEMO_CT_PORT, DEMO_CT_PORT2; the state goes to DEMO_DIR
# (default: ./demo, made anew each run).
set -euo pipefail

ACMEKIT=${ACMEKIT:-acmekit}
DIR=${DEMO_DIR:-demo}
CA_PORT=${DEMO_CA_PORT:-14000}
DNS_PORT=${DEMO_DNS_PORT:-8053}
API_PORT=${DEMO_API_PORT:-8055}
HTTP01_PORT=${DEMO_HTTP01_PORT:-5002}
TLS_PORT=${DEMO_TLS_PORT:-8443}
CRL_PORT=${DEMO_CRL_PORT:-14080}
CT_PORTS=("${DEMO_CT_PORT:-6962}" "${DEMO_CT_PORT2:-6963}")  # the two CT logs
NAME=${DEMO_NAME:-www.demo.acmekit.test}

rm -rf "$DIR"
mkdir -p "$DIR"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

wait_for_line() {  # FILE PATTERN PID: wait until a started program has printed its banner
    for _ in $(seq 1 600); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        kill -0 "$3" 2>/dev/null || break
        sleep 0.05
    done
    echo "demo: gave up waiting for '$2' in $1:" >&2
    cat "$1" >&2
    return 1
}

# The CT logs accept the CA's root, so the hierarchy is made first (as the CA makes it).
"$(dirname "$(command -v "$ACMEKIT")")/python" -c 'import sys
from datetime import UTC, datetime
from pathlib import Path
from acmekit.server.ca import load_or_create_issuer
load_or_create_issuer(Path(sys.argv[1]), datetime.now(UTC))' "$DIR/ca"

echo "== acmekit dns on 127.0.0.1:$DNS_PORT (every name -> 127.0.0.1)"
"$ACMEKIT" dns --listen "127.0.0.1:$DNS_PORT" --api "127.0.0.1:$API_PORT" \
    --default-ipv4 127.0.0.1 >"$DIR/dns.log" 2>&1 &
pids+=($!)
wait_for_line "$DIR/dns.log" "^dns: " "$!"

echo "== two acmekit ct logs on 127.0.0.1:${CT_PORTS[0]} and :${CT_PORTS[1]}; the CA logs in both"
ct_lists=()
for i in 0 1; do
    "$ACMEKIT" ct --listen "127.0.0.1:${CT_PORTS[$i]}" --state-dir "$DIR/ct$i" \
        --roots "$DIR/ca/root.pem" --mmd 5 >"$DIR/ct$i.log" 2>&1 &
    pids+=($!)
    wait_for_line "$DIR/ct$i.log" "^log list: " "$!"
    ct_lists+=(--ct-log-list "$DIR/ct$i/loglist.json")
done

echo "== acmekit server on 127.0.0.1:$CA_PORT"
"$ACMEKIT" server --listen "127.0.0.1:$CA_PORT" --state-dir "$DIR/ca" \
    --dns-resolver "127.0.0.1:$DNS_PORT" --http01-port "$HTTP01_PORT" \
    --allow-validation-network 127.0.0.0/8 --allow-special-name test \
    --crl-listen "127.0.0.1:$CRL_PORT" "${ct_lists[@]}" >"$DIR/ca.log" 2>&1 &
pids+=($!)
wait_for_line "$DIR/ca.log" "^root: " "$!"
cat "$DIR/ca.log"

echo "== acmekit certonly --standalone -d $NAME"
"$ACMEKIT" certonly --standalone --non-interactive --agree-tos -m "ops@demo.acmekit.test" \
    --server "https://127.0.0.1:$CA_PORT/directory" --ca-bundle "$DIR/ca/root.pem" \
    --http-01-address 127.0.0.1 --http-01-port "$HTTP01_PORT" \
    --config-dir "$DIR/etc" --work-dir "$DIR/work" --logs-dir "$DIR/logs" -d "$NAME"

live="$DIR/etc/live/$NAME"
echo "== serving $live/cert.pem with its chain on 127.0.0.1:$TLS_PORT"
openssl s_server -quiet -accept "127.0.0.1:$TLS_PORT" \
    -cert "$live/cert.pem" -cert_chain "$live/chain.pem" -key "$live/privkey.pem" -www >"$DIR/tls.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$TLS_PORT") 2>/dev/null && break
    sleep 0.05
done

echo "== acmekit check 127.0.0.1:$TLS_PORT --servername $NAME"
# The SCTs are verified against the key of the issuer the server sends in its chain.
"$ACMEKIT" check "127.0.0.1:$TLS_PORT" --servername "$NAME" --ca-bundle "$DIR/ca/root.pem" \
    "${ct_lists[@]}"
