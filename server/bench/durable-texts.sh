#!/usr/bin/env bash
# Durable texts per second, and fsyncs per text, with the real binaries on
# loopback: one sender streams N texts (`punchline send --stdin`, 64 in flight)
# to a recipient that is offline, so every text is committed to the SQLite
# store before it is acknowledged. The server runs under `strace -f -c` to
# count its fsync/fdatasync calls.
#
# Two servers in the same run: `--store-commit group` (the default) and
# `--store-commit each` (one transaction per text: the baseline). The
# report gives both rates and their ratio, and this disk's fsync cost.
#
# Usage: server/bench/durable-texts.sh [N]   (default 3000; needs strace)
#        RUNTIME=smol server/bench/durable-texts.sh   (default mio)
# The store lives under target/ (a real disk, never a tmpfs).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-3000}
RUNTIME=${RUNTIME:-mio}
TARGET=$(realpath "${CARGO_TARGET_DIR:-target}")
cargo build --release -q -p punchline-client -p punchline-server
BIN="$TARGET/release"
WORK=$(mktemp -d "$TARGET/durable-texts.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# One fdatasync of a small append: what one durable commit costs at least.
fsync_us() {
    python3 - "$WORK/fsync-probe" <<'PY'
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
samples = []
for _ in range(200):
    os.write(fd, b"x" * 200)
    t = time.perf_counter(); os.fdatasync(fd); samples.append(time.perf_counter() - t)
samples.sort(); print(f"{samples[len(samples) // 2] * 1e6:.0f}")
PY
}

run() {
    local mode=$1 dir="$WORK/$1"
    mkdir -p "$dir"
    strace -f -qq -c -e trace=fsync,fdatasync -o "$dir/strace" \
        "$BIN/punchline-server" --listen 127.0.0.1:0 --data "$dir/data" --store-commit "$mode" --runtime "$RUNTIME" \
        >"$dir/out" 2>"$dir/err" &
    local pid=$!
    for _ in $(seq 100); do grep -q '^listening primary' "$dir/out" 2>/dev/null && break; sleep 0.1; done
    local addr
    addr=$(awk '/^listening primary/ {print $3}' "$dir/out")
    # The recipient exists (logged in once) and is offline from now on.
    "$BIN/punchline" --server "$addr" --user bob inbox --timeout 2s >/dev/null
    local start end acked
    start=$(date +%s.%N)
    seq 1 "$N" | sed 's/^/text number /' |
        "$BIN/punchline" --server "$addr" --user alice send bob --stdin --json --timeout 60s >"$dir/acks"
    end=$(date +%s.%N)
    acked=$(grep -c '"status":"stored"' "$dir/acks" || true)
    kill -INT "$(pgrep -P $pid punchline-serv || echo $pid)" 2>/dev/null || kill -INT $pid
    wait $pid || true
    local syncs
    syncs=$(awk '$NF == "fsync" || $NF == "fdatasync" {n += $4} END {print n + 0}' "$dir/strace")
    RUNTIME=$RUNTIME python3 - "$mode" "$N" "$acked" "$start" "$end" "$syncs" <<'PY'
import os, sys
mode, n, acked, start, end, syncs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
secs = end - start
print(f"{mode:6} {os.environ['RUNTIME']:4} {acked}/{n} stored in {secs:.2f} s = {acked / secs:8.0f} texts/s; "
      f"{syncs} fsyncs = {acked / max(syncs, 1):.1f} texts per fsync")
with open(f"{sys.argv[1]}.rate", "w") as f: f.write(f"{acked / secs}")
PY
}

cd "$WORK"
echo "fsync (fdatasync of a 200-byte append), median of 200: $(fsync_us) us"
cd - >/dev/null
( cd "$WORK" && run group ) ; ( cd "$WORK" && run each )
python3 -c "import sys; g=float(open('$WORK/group.rate').read()); e=float(open('$WORK/each.rate').read()); print(f'group commit / one commit per text: {g / e:.1f}x')"
