#!/usr/bin/env bash
# Footprint figures of issue 7 that `cargo bench --bench core` does not give (that one gives
# start-up and memory with 1,000,000 members): the release binary's size, as built and
# stripped as the Debian package ships it, and an empty store's start-up time and idle
# resident memory. Figures go to docs/benchmarks.md.
#
# Usage: cargo build --release && benches/footprint.sh [binary [config]]
#   binary: default target/release/storebox
#   config: default an empty development store in a scratch directory; for a million members,
#           target/bench-core/bench.toml once `cargo bench --bench core` has seeded its store
#           (stop it first: one daemon per data directory)
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${1:-target/release/storebox}
runs=5
work=$(mktemp -d)
pid=""
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

cp "$bin" "$work/storebox"
strip "$work/storebox"
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo "binary: $(mib "$(stat -c %s "$bin")") as built, $(mib "$(stat -c %s "$work/storebox")") stripped"

# The development config on a free port, data in the scratch directory; the first start makes
# the store (key, journal, cache), the next ones open it, as a box does after a reboot.
config=${2:-}
if [ -z "$config" ]; then
    config="$work/store.toml"
    sed -e 's|^listen = .*|listen = "127.0.0.1:0"|' -e "s|^dir = .*|dir = \"$work/data\"|" \
        config/dev.toml >"$config"
fi

status() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
for run in $(seq 1 $runs); do
    : >"$work/log"
    started=$(date +%s%N)
    RUST_LOG=info "$work/storebox" run --config "$config" >"$work/log" 2>&1 &
    pid=$!
    until grep -q 'listening on http' "$work/log"; do
        kill -0 "$pid" 2>/dev/null || { cat "$work/log" >&2; exit 1; }
        sleep 0.002
    done
    ready=$(date +%s%N)
    sleep 10
    rss=$(status "$pid" VmRSS)
    hwm=$(status "$pid" VmHWM)
    kill -TERM "$pid"
    wait "$pid" || true
    pid=""
    printf 'run %d: start-up %4d ms   idle resident memory after 10 s %5.1f MiB (peak %5.1f MiB)\n' \
        "$run" $(((ready - started) / 1000000)) "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" \
        "$(awk -v k="$hwm" 'BEGIN { print k / 1024 }')"
done
