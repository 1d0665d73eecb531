#!/usr/bin/env bash
# Benchmark `qswarm create` on a 1 GiB file with a hot page cache, against mktorrent (2 threads, same piece
# length) and OpenSSL's two-core SHA-1 throughput (`openssl speed -multi 2 -evp sha1 -bytes 262144`), all three
# in every round, alternating, so that they see the same machine load. Prints medians, MB/s
# (10^6 bytes/s), the ratios to the targets of issue 2 and qswarm's peak resident memory.
#
# Usage: bench/create.sh            (env: RUNS=5, OSSL_SECS=2, SIZE_MIB=1024, BENCH_DIR=/tmp/qswarm-bench, KEEP=0,
#                                   CACHE=written, QSWARM=<binary to test instead of building target/release>)
# CACHE says how the hot page cache holds the file: `written` (default) as just written by `head -c` in small
# writes (4 KiB pages); `reread` evicted and read back, as a file read from disk (on recent Linux mostly large
# folios, which memory maps can map 2 MiB at a time).
# BOOST=1 (root only) runs everything in a new session whose scheduler autogroup is niced to -20, so that other
# work on a shared machine takes less of the two cores from all three tools (closer to an idle machine).
# Needs: cargo, openssl, /usr/bin/time (GNU time), mktorrent (skipped with a note if absent).
set -euo pipefail
if [ "${BOOST:-0}" = 1 ] && [ -z "${BOOSTED:-}" ]; then
    exec env BOOSTED=1 setsid --wait bash "$0" "$@"
fi
if [ -n "${BOOSTED:-}" ]; then
    echo -20 >/proc/self/autogroup || { echo "bench/create.sh: BOOST=1 needs root" >&2; exit 1; }
fi

RUNS=${RUNS:-5}
OSSL_SECS=${OSSL_SECS:-2}
SIZE_MIB=${SIZE_MIB:-1024}
BENCH_DIR=${BENCH_DIR:-/tmp/qswarm-bench}
KEEP=${KEEP:-0}
CACHE=${CACHE:-written}
cd "$(dirname "$0")/.."

for tool in openssl /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "bench/create.sh: $tool is needed" >&2; exit 1; }
done
if [ -z "${QSWARM:-}" ]; then
    cargo build --release --quiet
    QSWARM=$PWD/target/release/qswarm
fi

mkdir -p "$BENCH_DIR"
DATA=$BENCH_DIR/data-${SIZE_MIB}M.bin
BYTES=$((SIZE_MIB * 1024 * 1024))
case $CACHE in
written)
    echo "making $DATA ($SIZE_MIB MiB of random bytes)"
    head -c "$BYTES" /dev/urandom >"$DATA"
    ;;
reread)
    if [ ! -f "$DATA" ] || [ "$(stat -c %s "$DATA")" != "$BYTES" ]; then
        echo "making $DATA ($SIZE_MIB MiB of random bytes)"
        head -c "$BYTES" /dev/urandom >"$DATA"
    fi
    sync "$DATA"
    dd if="$DATA" iflag=nocache count=0 status=none # evict it from the page cache
    ;;
*) echo "bench/create.sh: CACHE must be written or reread" >&2; exit 1 ;;
esac
cat "$DATA" >/dev/null # page cache hot
[ "$KEEP" = 1 ] || trap 'rm -f "$DATA" "$BENCH_DIR"/*.torrent' EXIT

# The piece length qswarm picks by default (so mktorrent gets the same): 1 MiB for 1 GiB.
PIECE=$("$QSWARM" create "$DATA" -o "$BENCH_DIR/probe.torrent" | sed -n 's/.* pieces of \(.*\)$/\1/p')
PL_BYTES=$("$QSWARM" info --json "$BENCH_DIR/probe.torrent" | sed -n 's/.*"piece_length":\([0-9]*\).*/\1/p')
PL_LOG2=$(awk -v n="$PL_BYTES" 'BEGIN { l = 0; while (n > 1) { n /= 2; l++ } print l }')
echo "qswarm: $QSWARM; page cache: $CACHE; scheduler autogroup: $(cat /proc/self/autogroup 2>/dev/null || echo n/a)"
echo "file: $SIZE_MIB MiB, piece length $PIECE ($PL_BYTES bytes = 2^$PL_LOG2), $RUNS runs each, $(nproc) cores"

# run NAME CMD...: time one run; appends seconds (and max RSS KiB) to $BENCH_DIR/NAME.{secs,rss}
run() {
    local name=$1
    shift
    /usr/bin/time -f '%e %M %U %S' -o "$BENCH_DIR/time.out" "$@" >/dev/null 2>"$BENCH_DIR/$name.err" || {
        echo "$name failed:" >&2
        cat "$BENCH_DIR/$name.err" >&2
        exit 1
    }
    read -r secs rss user sys <"$BENCH_DIR/time.out"
    cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')
    echo "$secs" >>"$BENCH_DIR/$name.secs"
    echo "$rss" >>"$BENCH_DIR/$name.rss"
    echo "$cpu" >>"$BENCH_DIR/$name.cpu"
    printf '  %-9s %6.3f s  %8.1f MB/s  CPU %5.2f s  max RSS %6.1f MiB\n' "$name" "$secs" \
        "$(awk -v b="$BYTES" -v s="$secs" 'BEGIN { print (s > 0 ? b / s / 1e6 : 0) }')" "$cpu" \
        "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')"
}
median() { sort -g "$1" | awk '{ a[NR] = $1 } END { print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }

rm -f "$BENCH_DIR"/*.secs "$BENCH_DIR"/*.rss "$BENCH_DIR"/*.cpu "$BENCH_DIR"/*.mbs
HAVE_MK=1
command -v mktorrent >/dev/null || { HAVE_MK=0; echo "mktorrent not installed: skipping it"; }
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews every figure)"
for i in $(seq 1 "$RUNS"); do
    echo "run $i/$RUNS"
    run qswarm "$QSWARM" create "$DATA" -o "$BENCH_DIR/q.torrent"
    if [ "$HAVE_MK" = 1 ]; then
        rm -f "$BENCH_DIR/m.torrent"
        run mktorrent mktorrent -t 2 -l "$PL_LOG2" -d -a http://127.0.0.1/announce -o "$BENCH_DIR/m.torrent" "$DATA"
    fi
    # OpenSSL's two-core SHA-1 figure, measured in every round so that all three see the same machine load.
    k=$(openssl speed -multi 2 -evp sha1 -bytes 262144 -seconds "$OSSL_SECS" 2>/dev/null |
        awk '$1 == "sha1" { sub(/k$/, "", $2); print $2 }' | tail -1)
    awk -v k="$k" 'BEGIN { printf "%.1f\n", k / 1000 }' | tee -a "$BENCH_DIR/openssl.mbs" |
        xargs printf '  openssl   -multi 2 -evp sha1 -bytes 262144: %s MB/s\n'
done

OSSL_MBS=$(median "$BENCH_DIR/openssl.mbs")
# OpenSSL's single-process figure is per CPU second (user time), so other load does not lower it: the basis of
# a load-independent check, qswarm's bytes per CPU second against it.
OSSL1_K=$(openssl speed -evp sha1 -bytes 262144 -seconds 2 2>/dev/null | awk '$1 == "sha1" { sub(/k$/, "", $2); print $2 }' | tail -1)
OSSL1_MBS=$(awk -v k="$OSSL1_K" 'BEGIN { printf "%.1f", k / 1000 }')
Q_S=$(median "$BENCH_DIR/qswarm.secs")
Q_MBS=$(awk -v b="$BYTES" -v s="$Q_S" 'BEGIN { printf "%.1f", b / s / 1e6 }')
Q_RSS=$(sort -g "$BENCH_DIR/qswarm.rss" | tail -1)
echo
echo "== results (medians of $RUNS runs, $SIZE_MIB MiB, page cache hot)"
LOAD=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$LOAD" -v n="$(nproc)" 'BEGIN { exit !(l > n) }'; then
    echo "warning: load average $LOAD > $(nproc) cores: wall-clock figures (and openssl -multi) are skewed by other work;"
    echo "         trust the load-independent (CPU-second) lines"
fi
printf 'qswarm create:     %6.3f s  %8.1f MB/s   CPU %.2f s   peak RSS %.1f MiB (target < 64 MiB)\n' "$Q_S" \
    "$Q_MBS" "$(median "$BENCH_DIR/qswarm.cpu")" "$(awk -v k="$Q_RSS" 'BEGIN { print k / 1024 }')"
printf 'openssl 2 cores:   (median)  %8.1f MB/s   qswarm/openssl = %.0f%% (target >= 80%%)\n' "$OSSL_MBS" \
    "$(awk -v q="$Q_MBS" -v o="$OSSL_MBS" 'BEGIN { print 100 * q / o }')"
Q_CPU=$(median "$BENCH_DIR/qswarm.cpu")
printf 'load-independent:  openssl 1 process %.1f MB/s per CPU-second; qswarm %.1f MB/s per CPU-second = %.0f%%\n' \
    "$OSSL1_MBS" "$(awk -v b="$BYTES" -v c="$Q_CPU" 'BEGIN { print b / c / 1e6 }')" \
    "$(awk -v b="$BYTES" -v c="$Q_CPU" -v o="$OSSL1_MBS" 'BEGIN { print 100 * b / c / 1e6 / o }')"
echo "                   (on an idle machine with 2 free cores that percentage is what qswarm/openssl -multi 2 tends to)"
if [ "$HAVE_MK" = 1 ]; then
    M_S=$(median "$BENCH_DIR/mktorrent.secs")
    M_MBS=$(awk -v b="$BYTES" -v s="$M_S" 'BEGIN { printf "%.1f", b / s / 1e6 }')
    printf 'mktorrent -t 2:    %6.3f s  %8.1f MB/s   CPU %.2f s   qswarm is %.2fx mktorrent (target > 1)\n' \
        "$M_S" "$M_MBS" "$(median "$BENCH_DIR/mktorrent.cpu")" "$(awk -v m="$M_S" -v q="$Q_S" 'BEGIN { print m / q }')"
    M_CPU=$(median "$BENCH_DIR/mktorrent.cpu")
    printf 'load-independent:  qswarm needs %.0f%% of the CPU seconds mktorrent needs for the same work\n' \
        "$(awk -v q="$Q_CPU" -v m="$M_CPU" 'BEGIN { print 100 * q / m }')"
    # Same data, same piece length, same info keys: both tools must have written the same infohash.
    ih() { "$QSWARM" info --json "$1" | sed -n 's/.*"infohash":"\([0-9a-f]*\)".*/\1/p'; }
    if [ "$(ih "$BENCH_DIR/q.torrent")" = "$(ih "$BENCH_DIR/m.torrent")" ]; then
        echo "check: qswarm and mktorrent wrote the same infohash $(ih "$BENCH_DIR/q.torrent")"
    else
        echo "error: qswarm and mktorrent disagree on the infohash" >&2
        exit 1
    fi
fi
