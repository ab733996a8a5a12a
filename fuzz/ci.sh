#!/usr/bin/env bash
# CI smoke run: every fuzz target for a fixed number of executions (RUNS, default 50000), after
# replaying its committed seeds (corpus/TARGET) and regression inputs (regressions/TARGET).
# Needs the nightly toolchain (libFuzzer's sanitizer flags); without it this is skipped with a
# note. cargo-fuzz is installed if missing. New inputs go to a scratch directory, so the
# committed corpus is never changed. A crash fails the run (its input is in artifacts/TARGET/).
set -euo pipefail
runs="${1:-50000}"
cd "$(dirname "$0")"
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "fuzz: no nightly toolchain, skipped"
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for t in $(cargo +nightly fuzz list); do
    dirs=("$scratch/$t" "corpus/$t")
    mkdir -p "${dirs[@]}"
    if [ -d "regressions/$t" ]; then dirs+=("regressions/$t"); fi
    echo "== fuzz $t: $runs runs"
    if ! cargo +nightly fuzz run "$t" "${dirs[@]}" -- -runs="$runs" -seed=1 -dict=pop3.dict \
        -max_total_time=300 -print_final_stats=1 >"$scratch/$t.log" 2>&1; then
        tail -n 60 "$scratch/$t.log"
        echo "fuzz: $t failed; the input is in fuzz/artifacts/$t/"
        exit 1
    fi
    grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$scratch/$t.log" || true
done
