#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser that reads outside input (docs/fuzzing.md).
#
#   scripts/fuzz.sh                  each target until it has used 600 CPU-seconds
#   scripts/fuzz.sh --cpu-secs N     each target until it has used N CPU-seconds
#   scripts/fuzz.sh --ci             each target for a fixed 20,000 executions (CI)
#   scripts/fuzz.sh --runs N         each target for N executions
#   scripts/fuzz.sh ... TARGET...    only these targets (names: fuzz/fuzz_targets/*.rs)
#   scripts/fuzz.sh --keep ...       merge what the run found, minimised, into fuzz/corpus/
#
# cargo-fuzz (libFuzzer) on the nightly toolchain; cargo-fuzz is installed if missing. A run
# works on a copy of fuzz/corpus/<target> (plus fuzz/regressions/<target>) under
# fuzz/target/work/, so the committed corpus only changes with --keep. A crash stops that
# target, leaves the input in fuzz/artifacts/<target>/ and makes the script fail: copy the
# input into fuzz/regressions/<target>/ and fix the bug; `cargo test -p paddock-router --test
# fuzz_corpus` then replays it on stable for good. Last line: "fuzz: N targets, N CPU-s, N
# execs, N crashes".
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo/fuzz"

cpu_secs=600
runs=
keep=
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --ci) runs=20000 ;;
        --runs) runs=$2; shift ;;
        --cpu-secs) cpu_secs=$2; shift ;;
        --keep) keep=1 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
        *) targets+=("$1") ;;
    esac
    shift
done
if [ ${#targets[@]} -eq 0 ]; then
    for f in fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz.sh: no nightly toolchain (rustup toolchain install nightly): libFuzzer cannot run" >&2
    if [ "$runs" = 20000 ]; then
        # CI on a machine without nightly: at least every committed input, on stable.
        echo "fuzz.sh: --ci falls back to replaying the corpora on stable" >&2
        cd "$repo" && cargo test -p paddock-router --test fuzz_corpus
        echo "fuzz: replay only (no nightly), 0 crashes"
        exit 0
    fi
    exit 1
fi
export PATH="$HOME/.cargo/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi

# One build for all targets (AddressSanitizer, debug assertions on).
cargo +nightly fuzz build
bindir=target/x86_64-unknown-linux-gnu/release

total_cpu=0
total_execs=0
crashes=0
for t in "${targets[@]}"; do
    bin="$bindir/$t"
    [ -x "$bin" ] || { echo "fuzz.sh: no target $t" >&2; exit 2; }
    work="target/work/$t"
    rm -rf "$work"
    mkdir -p "$work" "artifacts/$t"
    cp corpus/"$t"/* "$work"/ 2>/dev/null || true
    [ -d "regressions/$t" ] && cp regressions/"$t"/* "$work"/ 2>/dev/null
    before=$(ls "$work" | wc -l)
    used=0
    execs=0
    rc=0
    log="target/work/$t.log"
    : > "$log"
    # libFuzzer's limits are in wall-clock seconds or executions; CPU time is what a loaded
    # machine hands out, so run in rounds until the target has used its CPU budget.
    for _ in $(seq 1 50); do
        if [ -n "$runs" ]; then
            args=(-runs="$runs")
        else
            left=$((cpu_secs - used))
            [ "$left" -le 0 ] && break
            args=(-max_total_time="$left")
        fi
        TIMEFORMAT='%U %S'
        { time "$bin" "$work" -artifact_prefix="artifacts/$t/" -timeout=10 -rss_limit_mb=2048 \
            -max_len=65536 -print_final_stats=1 "${args[@]}" >>"$log" 2>&1 || rc=$?; } 2>"$log.time"
        cpu=$(awk '{printf "%d", $1 + $2}' "$log.time")
        used=$((used + cpu))
        [ "$rc" -ne 0 ] && break
        n=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || echo 0)
        execs=$((execs + n))
        [ -n "$runs" ] && break
    done
    after=$(ls "$work" | wc -l)
    total_cpu=$((total_cpu + used))
    total_execs=$((total_execs + execs))
    if [ "$rc" -ne 0 ]; then
        crashes=$((crashes + 1))
        echo "fuzz: $t FAILED (exit $rc); input in fuzz/artifacts/$t/, log $repo/fuzz/$log" >&2
        grep -m5 -E 'panicked|ERROR: ' "$log" >&2 || true
    fi
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || echo 0)
    line="$t: ${used} CPU-s, $execs execs, coverage $cov, corpus $before -> $after, exit $rc"
    echo "fuzz: $line"
    if [ -n "$keep" ] && [ "$rc" -eq 0 ]; then
        merged="target/work/$t.merged"
        rm -rf "$merged"
        mkdir -p "$merged"
        "$bin" -merge=1 "$merged" corpus/"$t" "$work" >>"$log" 2>&1
        rm -f corpus/"$t"/*
        for f in "$merged"/*; do
            cp "$f" corpus/"$t"/
        done
        echo "fuzz: $t corpus kept: $(ls corpus/"$t" | wc -l) files"
    fi
done
echo "fuzz: ${#targets[@]} targets, $total_cpu CPU-s, $total_execs execs, $crashes crashes"
[ "$crashes" -eq 0 ]
