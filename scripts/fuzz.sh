#!/usr/bin/env bash
# Runs every fuzz target for a given number of seconds each (default 60).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Each target starts
# from its committed seed corpus fuzz/corpus/<target>/ (read-only here); new interesting inputs
# go to fuzz/target/corpus/<target>/ so the committed corpus stays small. A crash leaves its
# input in fuzz/artifacts/<target>/: fix the bug, then copy the input into the committed corpus
# so `cargo test` replays it from then on. Prints executions and time per target at the end.
set -euo pipefail

seconds="${1:-60}"
shift || true
cd "$(dirname "$0")/../fuzz"
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=(weights cifar idx digits model_spec kernels)
fi

cargo +nightly fuzz build --release 2>&1 | tail -n 3
summary=()
status=0
for target in "${targets[@]}"; do
    scratch="target/corpus/$target"
    mkdir -p "$scratch"
    log="target/fuzz-$target.log"
    start=$(date +%s)
    if cargo +nightly fuzz run --release "$target" "$scratch" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=8192 -timeout=10 \
        -print_final_stats=1 >"$log" 2>&1; then
        result=ok
    else
        result="CRASH (see fuzz/$log and fuzz/artifacts/$target/)"
        status=1
    fi
    elapsed=$(( $(date +%s) - start ))
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1)
    summary+=("$(printf '%-11s %10s execs in %4ss  %s' "$target" "${execs:-?}" "$elapsed" "$result")")
done
printf '%s\n' "${summary[@]}"
exit "$status"
