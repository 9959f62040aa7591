#!/usr/bin/env bash
# Measures `punchline send-file` on loopback against the transport's own
# ceiling, all in one run (issue 22):
#
# - send-file: a real punchline-server and two real clients on 127.0.0.1,
#   SIZE MiB of random data, goodput as send-file's final JSON line gives it
#   (content bytes over the time from the receiver's accept to its last
#   group written and verified), per runtime, RUNS runs each;
# - the UDP baseline: a plain, unencrypted UDP sender and receiver moving
#   the same bytes in datagrams of a file piece's size on the wire (plain
#   send/recv, the system calls the runtimes use), goodput of what arrived;
# - the TCP baseline: a plain TCP stream moving the same bytes.
#
# Prints each run, then medians and the ratios send-file / UDP and
# send-file / TCP.
#
# Usage: client/bench/send-file.sh [SIZE_MIB] [RUNS]   (default 1024 and 3;
# CARGO=... to build with another cargo, e.g. one that serialises builds)
# The figures in client/README.md ("Files") come from it.
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE_MIB=${1:-1024}
RUNS=${2:-3}
# A piece on the wire, direct: 1024 bytes of content, the frame's header
# (session, counter, packet number, transfer, piece) and the AEAD's 34.
DATAGRAM=1083
${CARGO:-cargo} build --release -q -p punchline-server -p punchline-client --bins --example wire_baseline
T=${CARGO_TARGET_DIR:-target}/release
WORK=$(mktemp -d)
cleanup() {
	kill $(jobs -p) 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT
head -c $((SIZE_MIB << 20)) /dev/urandom >"$WORK/file.bin"
PORT=$((20000 + RANDOM % 20000))
"$T/punchline-server" --listen "127.0.0.1:$PORT" --alt-listen "127.0.0.2:$((PORT + 1))" \
	--data "$WORK/server" >"$WORK/server.log" 2>&1 &
sleep 0.5
common() { # user runtime
	echo --server "127.0.0.1:$PORT" --alt-server "127.0.0.2:$((PORT + 1))" --user "$1" --runtime "$2" \
		--identity "$WORK/$1.key" --known-servers "$WORK/known_servers" --known-peers "$WORK/$1.peers"
}

: >"$WORK/results"
for runtime in mio smol; do
	for run in $(seq 1 "$RUNS"); do
		rm -rf "$WORK/in" && mkdir "$WORK/in"
		# shellcheck disable=SC2046
		"$T/punchline" $(common bob "$runtime") listen --accept-files "$WORK/in" --json >"$WORK/listen.log" 2>&1 &
		listener=$!
		sleep 1
		# shellcheck disable=SC2046
		done_line=$("$T/punchline" $(common alice "$runtime") send-file bob "$WORK/file.bin" --json --timeout 10m | tail -1)
		kill "$listener" 2>/dev/null || true
		wait "$listener" 2>/dev/null || true
		goodput=$(echo "$done_line" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["goodput_mbps"], d["path"], d["seconds"])')
		baseline=$("$T/examples/wire_baseline" $((SIZE_MIB << 20)) "$DATAGRAM")
		udp=$(echo "$baseline" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["udp_mbps"], d["udp_loss"], d["tcp_mbps"])')
		echo "$runtime $goodput $udp" | tee -a "$WORK/results"
	done
done
python3 - "$WORK/results" "$SIZE_MIB" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
print(f"\n{sys.argv[2]} MiB over loopback; medians of {len(rows) // 2} runs per runtime (runtime goodput path seconds udp loss tcp above)")
for runtime in ("mio", "smol"):
    mine = [r for r in rows if r[0] == runtime]
    g = statistics.median(float(r[1]) for r in mine)
    udp = statistics.median(float(r[4]) for r in mine)
    tcp = statistics.median(float(r[6]) for r in mine)
    print(f"{runtime:5} send-file {g:8.1f} Mbit/s | plain UDP {udp:8.1f} Mbit/s | plain TCP {tcp:8.1f} Mbit/s | "
          f"send-file/UDP {g / udp:.2f} | send-file/TCP {g / tcp:.2f}")
PY
