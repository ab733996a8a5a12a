#!/usr/bin/env bash
# Runs every fuzz target for SECONDS seconds each, one after the other, on the nightly
# toolchain. New inputs go to corpus-grown/TARGET (gitignored); the committed seeds in
# corpus/TARGET are read too. Exits non-zero as soon as a target finds a crash (the input is
# in artifacts/TARGET/: minimise it and commit it under regressions/TARGET/).
set -euo pipefail
seconds="${1:?usage: fuzz/run.sh SECONDS [TARGET...]}"
shift
cd "$(dirname "$0")"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
for t in "${targets[@]}"; do
    mkdir -p "corpus-grown/$t" "corpus/$t"
    echo "== $t: ${seconds}s"
    cargo +nightly fuzz run "$t" "corpus-grown/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -dict=pop3.dict -print_final_stats=1
done
