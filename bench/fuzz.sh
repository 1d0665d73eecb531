#!/usr/bin/env bash
# Run every cargo-fuzz target of fuzz/ for SECONDS each (default 60) and print, per target, the executions,
# the corpus size, the coverage reached and the findings (crash / timeout / out-of-memory artifacts).
#
#   bash bench/fuzz.sh [SECONDS] [TARGET...]        e.g.  bash bench/fuzz.sh 600          (10 min each)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly toolchain (`rustup toolchain install nightly`);
# without nightly it uses the stable compiler with RUSTC_BOOTSTRAP=1 (works too). Runs niced (shared machine).
# Environment: FUZZ_SANITIZER (default `none`: our code is safe Rust, and it runs faster without;
# `address` for ASan), FUZZ_ARGS (extra libFuzzer flags), FUZZ_JOBS (parallel libFuzzer workers per target, 1).
# Findings are kept in fuzz/artifacts/<target>/; reproduce one with
#   cargo +nightly fuzz run --fuzz-dir fuzz -s none -a <target> fuzz/artifacts/<target>/<file>
# Exit status: 0 when no target found anything, 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
shift || true
sanitizer=${FUZZ_SANITIZER:-none}
jobs=${FUZZ_JOBS:-1}

if ! command -v cargo-fuzz >/dev/null; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz" >&2
    exit 2
fi
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    cargo=(cargo +nightly)
else
    echo "no nightly toolchain: trying stable with RUSTC_BOOTSTRAP=1" >&2
    export RUSTC_BOOTSTRAP=1
    cargo=(cargo)
fi
fuzz=("${cargo[@]}" fuzz)

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <("${fuzz[@]}" list --fuzz-dir fuzz)
fi

python3 fuzz/make_seeds.py >/dev/null
echo "building ${#targets[@]} fuzz targets (sanitizer: $sanitizer, debug assertions on)..."
if ! nice -n 19 "${fuzz[@]}" build --fuzz-dir fuzz -s "$sanitizer" -a >/tmp/qswarm-fuzz-build.log 2>&1; then
    tail -40 /tmp/qswarm-fuzz-build.log >&2
    exit 2
fi

status=0
par=()
[ "$jobs" -gt 1 ] && par=(-jobs="$jobs" -workers="$jobs")
printf '\n%-16s %8s %14s %10s %8s %8s %9s\n' target seconds executions exec/s corpus cov findings
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    before=$(find "fuzz/artifacts/$t" -type f | wc -l)
    log="fuzz/artifacts/$t.log"
    nice -n 19 "${fuzz[@]}" run --fuzz-dir fuzz -s "$sanitizer" -a "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 \
        "${par[@]}" ${FUZZ_ARGS:-} >"$log" 2>&1
    rc=$?
    # With -jobs>1 libFuzzer writes per-job fuzz-N.log files in the working directory.
    if [ "$jobs" -gt 1 ]; then cat fuzz-*.log >>"$log" 2>/dev/null; rm -f fuzz-*.log; fi
    execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{s+=$2} END {print s+0}')
    rate=$((execs / (secs > 0 ? secs : 1)))
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}')
    corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
    after=$(find "fuzz/artifacts/$t" -type f | wc -l)
    found=$((after - before))
    if [ "$found" -gt 0 ] || { [ "$rc" -ne 0 ] && grep -qE 'ERROR: libFuzzer|panicked|deadly signal' "$log"; }; then
        status=1
        [ "$found" -gt 0 ] || found="rc=$rc"
    fi
    printf '%-16s %8s %14s %10s %8s %8s %9s\n' "$t" "$secs" "$execs" "$rate" "$corpus" "${cov:-?}" "$found"
    if [ "$found" != 0 ]; then
        grep -m3 -E 'panicked at|ERROR: libFuzzer|Test unit written' "$log" | sed 's/^/    /'
    fi
done
echo
echo "logs: fuzz/artifacts/<target>.log; findings: fuzz/artifacts/<target>/"
exit $status
