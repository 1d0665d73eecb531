#!/usr/bin/env bash
# DHT abuse benchmark (issue 8): a release `qswarm dht` on 127.0.0.1 takes 100,000 malformed or hostile KRPC
# packets from 5,000 source ports while a legitimate client keeps asking it get_peers (for an infohash a third
# process announced) and ping. Prints, per phase (before / during / after the flood), how many queries were
# answered, the longest run without a successful get_peers, the node's peak RSS (VmHWM, limit 64 MiB), its CPU
# time and the datagrams the kernel dropped. Two runs: paced (10,000 packets/s for 10 s) and as fast as the two
# sender threads go. The same scenario with 20,000 packets is `cargo test --test fault_dht_abuse` in CI.
#
#   bash bench/dht_abuse.sh [PACKETS] [SOCKETS]     (defaults 100000 5000)
set -euo pipefail
cd "$(dirname "$0")/.."
packets=${1:-100000}
sockets=${2:-5000}

echo "building the release binary (niced)..."
nice -n 19 cargo build --release --bin qswarm -q
export QSWARM_BIN=$PWD/target/release/qswarm QSWARM_ABUSE_PACKETS=$packets QSWARM_ABUSE_SOCKETS=$sockets
for rate in 10000 0; do
    echo
    if [ "$rate" = 0 ]; then echo "== unpaced (as fast as the senders go)"; else echo "== paced at $rate packets/s"; fi
    QSWARM_ABUSE_RATE=$rate nice -n 19 cargo test -q --test fault_dht_abuse node_survives_100k -- \
        --ignored --nocapture 2>&1 | grep -E '^(dht abuse|  |test result|thread|failures)'
done
