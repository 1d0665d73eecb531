#!/bin/sh
# DHT simulation benchmark (issue 3): 10,000 simulated nodes on links of 20-200 ms one-way latency and 1% loss,
# bootstrapped one by one from a single node; 1,000 infohashes announced by random nodes and looked up from
# others; then 30% of the nodes are killed and every infohash is looked up again.
# Prints success rate, median / p95 lookup time (to the first peer, and to lookup completion) in units of the
# median link RTT, and queries per lookup. Usage: bench/dht_sim.sh [NODES] [INFOHASHES] [SEED]
set -eu
cd "$(dirname "$0")/.."
exec cargo run --quiet --release --example dht_sim -- "${1:-10000}" "${2:-1000}" "${3:-1}"
