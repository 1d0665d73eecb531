#!/usr/bin/env bash
# Raw QUIC transport benchmark (issue 4, DESIGN §4): one connection on 127.0.0.1, 1 GiB of 16 KiB `piece`
# messages through the real codec + connection driver ("codec"), beside a bare quinn stream on the same kind of
# connection ("bare"), the driver with one uni stream per piece message ("codec-uni") and per-piece uni streams
# by hand ("uni"). Modes alternate, 3 rounds, medians; prints MB/s (10^6 bytes/s), CPU-seconds per GiB (both
# ends; steadier than MB/s on a shared machine) and codec/bare (target >= 90%).
#
#   bench/transport.sh                 # default transport config (MTU discovery up to 9000)
#   bench/transport.sh --mtu-sweep     # bare + codec at MTU upper bounds 1452 (quinn default), 4000, 9000, 16000
#   (MTUs past ~6500 used to stall: quinn's 10-datagram GSO batch outgrew an IP datagram and was dropped; the
#   transport now caps the batch at 65000 bytes, src/net/quic.rs)
# Environment: QSWARM_BENCH_BYTES (default 1073741824), QSWARM_BENCH_RUNS (3), QSWARM_BENCH_MODES
# (bare,codec,codec-uni,uni), QSWARM_BENCH_MTU (MTU discovery upper bound), QSWARM_BENCH_SEND_WINDOW (bytes),
# QSWARM_BENCH_WORKERS (tokio worker threads for both ends, default 2: one per end, as the client's one).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --bench transport --no-run 2>/dev/null
if [[ "${1:-}" == "--mtu-sweep" ]]; then
    for mtu in 1452 4000 9000 16000; do
        QSWARM_BENCH_MTU=$mtu QSWARM_BENCH_MODES=${QSWARM_BENCH_MODES:-bare,codec} cargo bench -q --bench transport 2>/dev/null
    done
else
    cargo bench -q --bench transport 2>/dev/null
fi
