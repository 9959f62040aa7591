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

header() { # seed duration
	printf 'seed = %s\nduration = "%s"\n[server]\naddr = "203.0.113.10:3478"\nalt_addr = "203.0.113.11:3479"\n' "$1" "$2"
}

side() { # i preset addr extra-nat-line extra-link-fields
	printf '[[nat]]\nname = "nat-%s"\npublic_ips = ["198.51.100.%s"]\npreset = "%s"\n%s\n' "$1" "$1" "$2" "$4"
	printf '[[peer]]\nname = "peer-%s"\naddr = "%s"\nbehind = "nat-%s"\n' "$1" "$3" "$1"
	printf 'link = { latency = "20ms", jitter = "3ms"%s }\n' "$5"
}

connect_at() { # time
	printf '[[event]]\nat = "%s"\npeer = "peer-1"\nconnect = "peer-2"\n' "$1"
}

public_pair() { # seed loss duration
	header "$1" "$3"
	side 1 open 198.51.100.1 "" ", loss = $2"
	side 2 open 198.51.100.2 "" ""
	connect_at 3s
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
	header "$1" 60s
	side 1 "${PRESET_A:-linux}" 10.0.1.2 'ports = "random"' ""
	side 2 "${PRESET_B:-linux}" 10.0.2.2 'ports = "random"' ""
	connect_at 1s
	printf '[[event]]\nat = "%sms"\nnat_reboot = "nat-%s"\n' "$2" "$3"
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
