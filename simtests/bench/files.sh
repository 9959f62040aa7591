#!/usr/bin/env bash
# Measures file transfer (issue 22) in the simulator against the issue's
# simulator targets, with `punchline-sim files` (the scenarios, figures and
# bounds are documented in simtests/src/file_sweep.rs):
#
# - throughput: 64 MiB through a 100 Mbit/s bottleneck (the receiver's
#   link, a one-BDP buffer of 250 kB), 20 ms RTT, 0 % loss: goodput at
#   least 90 % of the link rate;
# - loss 0.1 % and 1 % (random, both ways on the bottleneck): goodput at
#   least 90 % of the Mathis bound MSS/RTT·sqrt(1.5/p), MSS = 1024 B;
# - fairness: two senders into one receiver's 100 Mbit/s link: Jain's
#   index of their goodputs at least 0.95, the slower within 20 % of the
#   faster;
# - migration: relay, direct, a NAT reboot (relay), direct again: the file
#   arrives byte for byte;
# - interruption: the receiver's link cut for 30 s mid-transfer: the file
#   completes, verified.
#
# Figures are medians over SEEDS seeds (runs verified, for the last two).
# Then it times one 64 MiB transfer as `punchline-sim run` makes it (trace
# hashed, not kept): the simulator's own speed, in wall-clock seconds.
#
# Usage: simtests/bench/files.sh [SEEDS] [--json] [--quick]   (default 5;
# CARGO=... to build with another cargo, e.g. a wrapper that serialises
# builds). Exits 1 when a target is not met. The figures in
# simtests/README.md come from it.
set -euo pipefail
cd "$(dirname "$0")/../.."
SEEDS=5
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
	SEEDS=$1
	shift
fi
${CARGO:-cargo} build --release -q -p punchline-sim
SIM=${CARGO_TARGET_DIR:-target}/release/punchline-sim
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

status=0
"$SIM" files --seeds "$SEEDS" --quiet "$@" || status=$?

cat >"$WORK/64mib.toml" <<TOML
seed = 1
duration = "10s"
[server]
addr = "203.0.113.10:3478"
alt_addr = "203.0.113.11:3479"
[[peer]]
name = "alice"
addr = "192.0.2.10"
link = { latency = "5ms" }
[[peer]]
name = "bob"
addr = "192.0.2.20"
link = { latency = "5ms", bandwidth = "100Mbit", buffer = "20ms" }
[[event]]
at = "1s"
peer = "alice"
connect = "bob"
[[event]]
at = "3s"
peer = "alice"
send_file = { to = "bob", size = "64MiB" }
TOML
case " $* " in
*" --json "*) ;;
*)
	TIMEFORMAT='one 64 MiB transfer (10 s simulated): %R s wall-clock'
	time "$SIM" run "$WORK/64mib.toml" --quiet >/dev/null
	;;
esac
exit "$status"
