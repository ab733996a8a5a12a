#!/usr/bin/env bash
# CI smoke run: every fuzz target for a fixed number of executions (RUNS, default 50000), after
# replaying its committed seeds (corpus/TARGET) and regression inputs (regressions/TARGET).
# Needs the nightly toolchain (libFuzzer's sanitizer flags): installed if missing (rustup,
# minimal profile), and the run fails if that install fails; it never passes by skipping.
# cargo-fuzz is installed if missing. New inputs go to a scratch directory, so the committed
# corpus is never changed. A crash fails the run (its input is in artifacts/TARGET/).
set -euo pipefail
runs="${1:-50000}"
cd "$(dirname "$0")"
# Captured first: a failing rustup stops the run here (set -e), and grep -q cannot cut the
# pipe short under pipefail.
toolchains="$(rustup toolchain list)"
if ! grep -q '^nightly' <<<"$toolchains"; then
    echo "fuzz: no nightly toolchain; installing it (rustup toolchain install nightly)"
    if ! rustup toolchain install nightly --profile minimal; then
        echo "fuzz: FAILED: the nightly toolchain is missing and could not be installed" >&2
        exit 1
    fi
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
# An assignment, so that a failing `cargo fuzz list` stops the run instead of looping over
# no target.
targets="$(cargo +nightly fuzz list)"
if [ -z "$targets" ]; then
    echo "fuzz: FAILED: cargo fuzz list found no target" >&2
    exit 1
fi
for t in $targets; do
    # regressions/TARGET always exists (its README keeps it in git; libFuzzer reading that
    # file as one more input is harmless).
    dirs=("$scratch/$t" "corpus/$t" "regressions/$t")
    mkdir -p "$scratch/$t"
    for d in "corpus/$t" "regressions/$t"; do
        if [ ! -d "$d" ]; then
            echo "fuzz: FAILED: fuzz/$d is missing" >&2
            exit 1
        fi
    done
    echo "== fuzz $t: $runs runs"
    if ! cargo +nightly fuzz run "$t" "${dirs[@]}" -- -runs="$runs" -seed=1 -dict=pop3.dict \
        -max_total_time=300 -print_final_stats=1 >"$scratch/$t.log" 2>&1; then
        tail -n 60 "$scratch/$t.log"
        echo "fuzz: $t failed; the input is in fuzz/artifacts/$t/"
        exit 1
    fi
    grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$scratch/$t.log" || true
done
