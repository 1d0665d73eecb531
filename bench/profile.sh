#!/usr/bin/env bash
# Profile scenario 1 (one seeder -> one leecher on 127.0.0.1) with `perf record` (software cpu-clock sampling:
# this VM has no hardware counters), and print each process's top entries by self time and by thread.
#
#   bench/profile.sh [SIZE_MIB=512] [PIECE_KIB=256]      (QSWARM_BIN=target/release/qswarm, OUT=/tmp/qswarm-profile)
#
# Needs `perf` (apt-get install -y linux-perf). The release profile keeps debug info, so symbols resolve;
# call graphs use DWARF unwinding at a modest frequency to keep perf's own cost down.
set -euo pipefail
SIZE_MIB=${1:-512}
PIECE_KIB=${2:-256}
BIN=$(realpath "${QSWARM_BIN:-target/release/qswarm}")
OUT=${OUT:-/tmp/qswarm-profile}
FREQ=${FREQ:-499}
rm -rf "$OUT" && mkdir -p "$OUT/leech"
cd "$OUT"
head -c $((SIZE_MIB << 20)) /dev/urandom > data.bin
mktorrent -l "$(python3 -c "import math; print(int(math.log2($PIECE_KIB * 1024)))")" \
  -o data.torrent data.bin >/dev/null
perf record -q -e cpu-clock -F "$FREQ" --call-graph dwarf,8192 -o seed.perf -- \
  "$BIN" seed data.torrent --data data.bin --no-dht --listen 127.0.0.1:0 --json > seed.out 2> seed.err &
SEED=$!
for _ in $(seq 100); do grep -q '"have":' seed.out 2>/dev/null && break; sleep 0.1; done
ADDR=$(head -1 seed.out | python3 -c 'import json,sys; print(json.load(sys.stdin)["quic"])')
sleep 0.5
START=$(date +%s.%N)
perf record -q -e cpu-clock -F "$FREQ" --call-graph dwarf,8192 -o leech.perf -- \
  "$BIN" fetch data.torrent -o leech --no-dht --listen 127.0.0.1:0 --peer "$ADDR" --json > leech.out 2> leech.err
END=$(date +%s.%N)
kill -INT "$SEED"; wait "$SEED" || true
cmp data.bin leech/data.bin
echo "transfer under perf: $(python3 -c "print('%.2f s, %.0f MB/s' % ($END-$START, $SIZE_MIB*1048576/($END-$START)/1e6))")"
for who in leech seed; do
  echo "== $who: top self-time symbols"
  perf report -i $who.perf --no-children --sort symbol --stdio -q 2>/dev/null | grep -v '^$' | grep '%' | head -25
  echo "== $who: by thread"
  perf report -i $who.perf --no-children --sort comm --stdio -q 2>/dev/null | grep '%' | head -8
done
