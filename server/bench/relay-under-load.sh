#!/usr/bin/env bash
# Does storing texts slow the relay? A relayed round trip's p99 while the
# server stores 2,000 texts/s, against its p99 when idle, with the real
# binaries on loopback.
#
# Alice holds a session with bob on the server's relay (`--relay`: neither
# punches) and pings over it (`connect --pings`, one ping every 5 ms); the
# figure is the pings' p99 round trip. Under load, two senders each stream
# 1,000 texts/s to a recipient that is offline, so every text is committed
# to the SQLite store. Rounds alternate idle and loaded; the report gives
# each p99 and the ratio of the medians (goal: at most 2x).
#
# Usage: server/bench/relay-under-load.sh [ROUNDS]   (default 3)
#        RUNTIME=smol server/bench/relay-under-load.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}
RUNTIME=${RUNTIME:-mio}
PINGS=1000
TEXTS_PER_SENDER=7000
RATE_PER_SENDER=1000
TARGET=$(realpath "${CARGO_TARGET_DIR:-target}")
cargo build --release -q -p punchline-client -p punchline-server
BIN="$TARGET/release"
WORK=$(mktemp -d "$TARGET/relay-under-load.XXXXXX")
PIDS=()
cleanup() {
    # The listener first, then the server.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill -INT "${PIDS[i]}" 2>/dev/null || true; sleep 0.3; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN/punchline-server" --listen 127.0.0.1:0 --data "$WORK/data" --runtime "$RUNTIME" >"$WORK/server.out" 2>"$WORK/server.err" &
PIDS+=($!)
for _ in $(seq 100); do grep -q '^listening primary' "$WORK/server.out" 2>/dev/null && break; sleep 0.1; done
ADDR=$(awk '/^listening primary/ {print $3}' "$WORK/server.out")
pl() { "$BIN/punchline" --server "$ADDR" "$@"; }

# The recipients exist and are offline.
pl --user dave inbox --timeout 2s >/dev/null
pl --user frank inbox --timeout 2s >/dev/null
# Started directly, not through `pl`: its pid must be the client's own.
"$BIN/punchline" --server "$ADDR" --relay --user bob listen --json >"$WORK/bob.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q logged-in "$WORK/bob.log" 2>/dev/null && break; sleep 0.1; done

# RATE lines per second, COUNT in all, on stdout.
pace() {
    python3 - "$1" "$2" <<'PY'
import sys, time
rate, count = int(sys.argv[1]), int(sys.argv[2])
start = time.monotonic()
for k in range(count):
    delay = start + k / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    print(f"load text {k}", flush=(k % 20 == 0))
PY
}

p99() {
    pl --relay --user alice connect bob --pings "$PINGS" --interval 5ms --direct-wait 0s --json |
        python3 -c 'import json, sys; r = json.loads(sys.stdin.read()); assert r["outcome"] == "relay", r; print(r["rtt_ms_p99"])'
}

idle=()
loaded=()
for round in $(seq "$ROUNDS"); do
    idle+=("$(p99)")
    start=$(date +%s.%N)
    pace "$RATE_PER_SENDER" "$TEXTS_PER_SENDER" | pl --user carol send dave --stdin --json >"$WORK/carol.$round" &
    c=$!
    pace "$RATE_PER_SENDER" "$TEXTS_PER_SENDER" | pl --user erin send frank --stdin --json >"$WORK/erin.$round" &
    e=$!
    sleep 0.5
    loaded+=("$(p99)")
    wait $c $e
    end=$(date +%s.%N)
    stored=$(cat "$WORK/carol.$round" "$WORK/erin.$round" | grep -c '"status":"stored"' || true)
    echo "round $round: idle p99 ${idle[-1]} ms, loaded p99 ${loaded[-1]} ms; $stored texts stored at $(python3 -c "print(round($stored / ($end - $start)))") texts/s"
    # Empty the recipients' queues for the next round.
    pl --user dave inbox --timeout 60s >/dev/null
    pl --user frank inbox --timeout 60s >/dev/null
done
python3 - "${idle[*]}" "${loaded[*]}" <<'PY'
import statistics, sys
idle = [float(x) for x in sys.argv[1].split()]
loaded = [float(x) for x in sys.argv[2].split()]
mi, ml = statistics.median(idle), statistics.median(loaded)
print(f"median p99: idle {mi:.3f} ms, storing 2,000 texts/s {ml:.3f} ms: {ml / mi:.2f}x")
PY
