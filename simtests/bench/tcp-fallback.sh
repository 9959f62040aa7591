#!/usr/bin/env bash
# Measures, in the simulator, how long a client behind a UDP firewall (the
# `udp-blocked` preset) takes to a usable session over TCP (issue 21):
#
# - login: from the client's start to its `LoggedIn`. Its Hello over UDP
#   dies at the firewall; 300 ms later (`tcp_delay`) it opens a TCP
#   connection (one round trip), sends the Hello over it and is answered
#   (a second round trip). The target: at most 300 ms + 2 RTT.
# - peer session: a `connect` issued at the very start, from the blocked
#   client to a peer on UDP, is usable on the relay once the login is in
#   and the server's offer came back: one more round trip.
#
# RTT is the client's round trip to the server: twice its access link's
# one-way latency (the simulated internet adds none). Links without jitter
# give the exact figure; a 2 ms jitter run shows the spread over SEEDS.
#
# Usage: simtests/bench/tcp-fallback.sh [SEEDS]   (default 20; CARGO=... to build with
# another cargo, e.g. a wrapper that serialises builds)
# The figures in simtests/README.md come from it.
set -euo pipefail
cd "$(dirname "$0")/../.."
SEEDS=${1:-20}
${CARGO:-cargo} build --release -q -p punchline-sim
SIM=${CARGO_TARGET_DIR:-target}/release/punchline-sim
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

scenario() { # seed one-way-ms jitter-ms
	cat <<TOML
seed = $1
duration = "10s"
[server]
addr = "203.0.113.10:3478"
alt_addr = "203.0.113.11:3479"
[[nat]]
name = "hotel"
public_ips = ["198.51.100.1"]
preset = "udp-blocked"
[[nat]]
name = "home"
public_ips = ["198.51.100.6"]
preset = "port-restricted-cone"
[[peer]]
name = "alice"
addr = "10.0.0.2"
behind = "hotel"
link = { latency = "$2ms", jitter = "$3ms" }
[[peer]]
name = "bob"
addr = "10.0.1.2"
behind = "home"
link = { latency = "$2ms", jitter = "$3ms" }
[[event]]
at = "0s"
peer = "alice"
connect = "bob"
TOML
}

# Prints "login_ms session_ms" for one run.
measure() { # seed one-way jitter
	scenario "$1" "$2" "$3" >"$WORK/s.toml"
	"$SIM" run "$WORK/s.toml" --trace | awk '
		/alice: logged in as/ && !login { login = $1 + 0 }
		/alice: session .* opened on relay/ && !session { session = $1 + 0 }
		END { printf "%.3f %.3f\n", login, session }'
}

printf '%-10s %-8s %-6s %-22s %-22s %-14s %s\n' "one-way" "RTT" "jitter" "login ms (min-max)" "session ms (min-max)" "target ms" "login <= target"
for oneway in 10 20 35 50 75 100 150; do
	for jitter in 0 2; do
		: >"$WORK/runs"
		seeds=$SEEDS
		[ "$jitter" = 0 ] && seeds=1
		for seed in $(seq 1 "$seeds"); do
			measure "$seed" "$oneway" "$jitter" >>"$WORK/runs"
		done
		rtt=$((2 * oneway))
		target=$((300 + 2 * rtt))
		sort -n "$WORK/runs" | awk -v ow="$oneway" -v rtt="$rtt" -v j="$jitter" -v target="$target" '
			{ l[NR] = $1; s[NR] = $2 }
			END {
				lmin = l[1]; lmax = l[1]; smin = s[1]; smax = s[1]
				for (i = 2; i <= NR; i++) {
					if (l[i] < lmin) lmin = l[i]; if (l[i] > lmax) lmax = l[i]
					if (s[i] < smin) smin = s[i]; if (s[i] > smax) smax = s[i]
				}
				# With jitter the RTT itself varies by up to 4 x jitter.
				bound = target + 4 * j
				printf "%-10s %-8s %-6s %-22s %-22s %-14s %s\n", ow "ms", rtt "ms", j "ms",
					sprintf("%.1f-%.1f", lmin, lmax), sprintf("%.1f-%.1f", smin, smax),
					(j > 0 ? sprintf("%d (+%d jitter)", target, 4 * j) : target), (lmax <= bound ? "yes" : "NO")
			}'
	done
done
