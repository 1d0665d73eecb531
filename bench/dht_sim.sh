#!/bin/sh
# DHT simulation benchmark (issue 3): 10,000 simulated nodes on links of 20-200 ms one-way latency and 1% loss,
# bootstrapped one by one from a single node; 1,000 infohashes announced by random nodes and looked up from
# others; then 30% of the nodes are killed and every infohash is looked up again.
# Prints success rate, median / p95 lookup time (to the first peer, and to lookup completion) in units of the
# median link RTT, and queries per lookup, and whether issue 3's targets hold for both times.
# Measured (nice -n 19, seeds 1/2/3), time to lookup end median/p95: before kill 3.53/4.71, 3.45/4.76,
# 3.51/4.79 RTT; after killing 30% 5.28/8.49, 5.04/7.86, 5.19/8.45 RTT; 100% found in all six phases.
# Usage: bench/dht_sim.sh [NODES] [INFOHASHES] [SEED]
set -eu
cd "$(dirname "$0")/.."
exec cargo run --quiet --release --example dht_sim -- "${1:-10000}" "${2:-1000}" "${3:-1}"
