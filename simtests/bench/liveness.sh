#!/usr/bin/env bash
# Measures the direct path's liveness rule in the simulator (issue 19):
#
# 1. False fallbacks per hour: two public hosts on a direct session for one
#    simulated hour, with LOSS on one host's access link, so that each
#    direction between the peers loses that share of packets. Every
#    fallback here is false: the path never dies.
# 2. Time to detect a dead path: two `linux` NATs (PRESET_A, PRESET_B) that
#    give each new mapping a random port; one of them reboots at a seeded
#    moment 15-25 s into a direct session (every mapping gone, and the new
#    ones on other ports, which the other NAT filters: the path is dead for
#    good); the time from the reboot to each peer's fallback, and from the
#    fallback to the new direct path.
#
# Usage: simtests/bench/liveness.sh [SEEDS]   (default 10)
# Prints medians and maxima; the figures in simtests/README.md come from it.
set -euo pipefail
cd "$(dirname "$0")/../.."
SEEDS=${1:-10}
cargo build --release -q -p punchline-sim
SIM=${CARGO_TARGET_DIR:-target}/release/punchline-sim
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

public_pair() { # seed loss duration
	cat <<EOF
seed = $1
duration = "$3"
[server]
addr = "203.0.113.10:3478"
alt_addr = "203.0.113.11:3479"
[[nat]]
name = "nat-1"
public_ips = ["198.51.100.1"]
preset = "open"
[[peer]]
name = "peer-1"
addr = "198.51.100.1"
behind = "nat-1"
link = { latency = "20ms", jitter = "3ms", loss = $2 }
[[nat]]
name = "nat-2"
public_ips = ["198.51.100.2"]
preset = "open"
[[peer]]
name = "peer-2"
addr = "198.51.100.2"
behind = "nat-2"
link = { latency = "20ms", jitter = "3ms" }
[[event]]
at = "3s"
peer = "peer-1"
connect = "peer-2"
EOF
}

echo "== false fallbacks: one simulated hour per seed, $SEEDS seeds per loss rate"
for loss in 0.05 0.10 0.20; do
	total=0
	for seed in $(seq 1 "$SEEDS"); do
		public_pair "$seed" "$loss" 3600s >"$WORK/pair.toml"
		n=$("$SIM" run "$WORK/pair.toml" --json | grep -o '"fallbacks": *[0-9]*' | head -1 | grep -o '[0-9]*$')
		total=$((total + n))
	done
	echo "loss $loss each way: $total fallbacks in $SEEDS hours"
done

reboot_pair() { # seed reboot_ms side
	cat <<EOF
seed = $1
duration = "60s"
[server]
addr = "203.0.113.10:3478"
alt_addr = "203.0.113.11:3479"
[[nat]]
name = "nat-1"
public_ips = ["198.51.100.1"]
preset = "${PRESET_A:-linux}"
ports = "random"
[[peer]]
name = "peer-1"
addr = "10.0.1.2"
behind = "nat-1"
link = { latency = "20ms", jitter = "3ms" }
[[nat]]
name = "nat-2"
public_ips = ["198.51.100.2"]
preset = "${PRESET_B:-linux}"
ports = "random"
[[peer]]
name = "peer-2"
addr = "10.0.2.2"
behind = "nat-2"
link = { latency = "20ms", jitter = "3ms" }
[[event]]
at = "1s"
peer = "peer-1"
connect = "peer-2"
[[event]]
at = "${2}ms"
nat_reboot = "nat-$3"
EOF
}

echo "== a dead path: ${PRESET_A:-linux} against ${PRESET_B:-linux}, random ports, one NAT reboots 15-25 s in, $SEEDS seeds"
: >"$WORK/detect"
: >"$WORK/regain"
for seed in $(seq 1 "$SEEDS"); do
	at=$((15000 + (seed * 7919) % 10000))
	side=$((1 + seed % 2))
	reboot_pair "$seed" "$at" "$side" >"$WORK/reboot.toml"
	"$SIM" run "$WORK/reboot.toml" --trace | awk -v at="$at" -v detect="$WORK/detect" -v regain="$WORK/regain" '
		{ t = $1; sub("ms", "", t); t += 0 }
		t >= at && /fell back to relay/ && !(($2) in fell) { fell[$2] = t; print t - at >> detect }
		/path direct/ && ($2 in fell) && !(($2) in back) { back[$2] = t; print t - fell[$2] >> regain }
	'
done
stats() { # file label
	sort -n "$1" | awk -v label="$2" '{ v[NR] = $1 } END {
		if (NR == 0) { print label ": none"; exit }
		m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		printf "%s: %d samples, median %.0f ms, max %.0f ms\n", label, NR, m, v[NR] }'
}
stats "$WORK/detect" "reboot to fallback (each peer)"
stats "$WORK/regain" "fallback to direct again"
