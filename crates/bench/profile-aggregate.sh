#!/usr/bin/env bash
# Where a peer aggregate call's server CPU goes, with and without the access log.
#
# Runs one round of `lagesbild-bench aggregate`, samples each server with
# `perf record --call-graph dwarf` while it is measured, and prints the CPU
# per call of each part: samples / frequency / (the phase's calls/s x the
# sampled seconds). Each sample counts once, in the first part (in the order
# of `flush` below) whose frame is on its call stack; everything not named
# lands in "the rest" (HTTP/2, TLS, the kernel's network and scheduling).
# Needs `perf` and a release build (`cargo build --release --workspace`).
#
#   crates/bench/profile-aggregate.sh [aggregate options, e.g. --delegation]
set -euo pipefail

cd "$(dirname "$0")/../.."
bench=target/release/lagesbild-bench
command -v perf >/dev/null || { echo "profile-aggregate: perf is not installed" >&2; exit 1; }
[ -x "$bench" ] || { echo "profile-aggregate: no $bench; run cargo build --release --workspace" >&2; exit 1; }

frequency=${FREQUENCY:-499}
window=12
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$bench" aggregate --rounds 1 --seconds 20 "$@" >"$work/bench.txt" 2>&1 &
bench_pid=$!

# Waits for a line of the bench's output, or fails if the bench ended first.
await_line() {
    until grep -q "$1" "$work/bench.txt"; do
        kill -0 "$bench_pid" 2>/dev/null || { cat "$work/bench.txt" >&2; exit 1; }
        sleep 0.2
    done
}

# Samples the bench's server whose command line matches $1 (after its warm-up)
# into $2.
sample() {
    sleep 3
    local pid
    pid=$(pgrep -P "$bench_pid" -f "$1" | head -1)
    [ -n "$pid" ] || { echo "profile-aggregate: no server matching '$1'" >&2; exit 1; }
    perf record -q -F "$frequency" --call-graph dwarf,16384 -o "$2" -p "$pid" -- sleep "$window" \
        >/dev/null
}

await_line 'each answer'
sample 'lagesbild serve' "$work/with.data"
await_line 'round 1: node'
sample 'serve-without-log' "$work/without.data"
wait "$bench_pid" || { cat "$work/bench.txt" >&2; exit 1; }
cat "$work/bench.txt"

calls_per_second() { grep "$1" "$work/bench.txt" | sed -E 's/.*: ([0-9]+) calls\/s.*/\1/'; }

# Prints the parts of one profile, in µs of CPU per call.
parts() {
    local data=$1 calls=$2
    perf script -i "$data" -F comm,ip,sym 2>/dev/null | awk -v per_call="$(
        awk -v f="$frequency" -v c="$calls" 'BEGIN { print 1e6 / (f * c) }'
    )" '
        function flush() {
            if (comm == "") return
            total++
            if (comm == "audit-writer") {
                if (stack ~ /sync_data/) part["log writer: fdatasync"]++
                else if (stack ~ /NoteSigner::sign/) part["log writer: checkpoint signature"]++
                else part["log writer: the rest (records, tree, waking callers)"]++
            } else if (stack ~ /lagesbild_node::auth::check/) part["token check"]++
            else if (stack ~ /RoutesFuture as core::future::future::Future/) part["the aggregate service (release)"]++
            else if (stack ~ /EncodeBody/) part["response encoding"]++
            else if (stack ~ /AccessService<S> as tower_service::Service/) part["access layer: entry, digests, receipt"]++
            else part["the rest (HTTP/2, TLS, network, scheduling)"]++
            comm = ""; stack = ""
        }
        /^[^ \t]/ { flush(); comm = $1; next }
        /^$/ { flush(); next }
        { stack = stack "\n" $0 }
        END {
            flush()
            printf "  %7.1f µs  in all (%d samples)\n", total * per_call, total
            for (name in part) printf "  %7.1f µs  %s\n", part[name] * per_call, name
        }' | sort -rn
}

echo
echo "server CPU a call, by part ($frequency samples/s for ${window} s of each server):"
echo "node with access log:"
parts "$work/with.data" $(( $(calls_per_second 'round 1: node') * window ))
echo "without access log:"
parts "$work/without.data" $(( $(calls_per_second 'round 1: same, without') * window ))
