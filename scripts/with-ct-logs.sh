#!/usr/bin/env bash
# with-ct-logs.sh STATE_DIR COMMAND...: start two local `acmekit ct` logs that accept the
# CA hierarchy of STATE_DIR (made first if it is new), run COMMAND (an `acmekit server`
# command line) with one `--ct-log-list` per log appended, and stop the logs when it ends.
# Two logs, each its own operator, so every certificate meets the CT policy's two SCTs.
#
# Environment: ACMEKIT (the acmekit executable; its python must sit next to it),
# CT_PORT (the first log's port, default 6962), CT_PORT2 (the second's, default the next one).
set -euo pipefail

STATE=$1
shift
ACMEKIT=${ACMEKIT:-acmekit}
PYTHON=$(dirname "$(command -v "$ACMEKIT")")/python
CT_PORT=${CT_PORT:-6962}
ports=("$CT_PORT" "${CT_PORT2:-$((CT_PORT + 1))}")

# The logs accept the CA's root, so the hierarchy exists before them (as the CA makes it).
"$PYTHON" -c 'import sys
from datetime import UTC, datetime
from pathlib import Path
from acmekit.server.ca import load_or_create_issuer
load_or_create_issuer(Path(sys.argv[1]), datetime.now(UTC))' "$STATE"

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

flags=()
for i in 0 1; do
    dir="$STATE/ct$i"
    mkdir -p "$dir"
    "$ACMEKIT" ct --listen "127.0.0.1:${ports[$i]}" --state-dir "$dir" \
        --roots "$STATE/root.pem" --mmd 10 >"$dir/ct.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 200); do
        grep -q "^log list: " "$dir/ct.log" 2>/dev/null && break
        kill -0 "${pids[-1]}" 2>/dev/null || { cat "$dir/ct.log" >&2; exit 1; }
        sleep 0.05
    done
    grep "^ct log: " "$dir/ct.log"
    flags+=(--ct-log-list "$dir/loglist.json")
done

"$@" "${flags[@]}"
