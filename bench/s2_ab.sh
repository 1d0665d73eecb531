#!/usr/bin/env bash
# Scenario 2 with qswarm only, for A/B comparisons of builds and for profiling: one seeder and four leechers
# on 127.0.0.1 (1 GiB random file, 256 KiB pieces, every leecher given the seeder and the other three with
# --peer), each leecher under /usr/bin/time. For each run of each binary it prints when each leecher said
# `complete` (seconds since its start, sorted), the four leechers' CPU seconds (user+sys) and the largest
# leecher's peak RSS. Binaries alternate, ROUNDS times.
#
#   bench/s2_ab.sh ROUNDS BIN_A [BIN_B ...]     (DIR=/tmp/qswarm-s2; PORT=<first of 4 leecher ports>)
#   PERF=1 bench/s2_ab.sh 1 BIN                 leecher 0 under perf record (DIR/l0.perf, DWARF call graphs)
#
# Needs mktorrent (the data file and torrent are made once in DIR and kept).
set -euo pipefail
ROUNDS=$1; shift
BINS=()
for b in "$@"; do BINS+=("$(realpath "$b")"); done
DIR=${DIR:-/tmp/qswarm-s2}
PORT=${PORT:-$((42000 + $(echo "$DIR" | cksum | cut -d' ' -f1) % 200 * 10))}
mkdir -p "$DIR" && cd "$DIR"
[ -f data.bin ] || { head -c $((1 << 30)) /dev/urandom > data.bin; mktorrent -l 18 -o data.torrent data.bin >/dev/null; }
one_run() {
  local bin=$1
  rm -rf l0 l1 l2 l3 l?.time seed.out
  "$bin" seed data.torrent --data data.bin --no-dht --listen 127.0.0.1:0 --json > seed.out 2> seed.err &
  local seed=$!
  for _ in $(seq 300); do grep -q '"have":' seed.out 2>/dev/null && break; sleep 0.1; done
  local addr
  addr=$(head -1 seed.out | python3 -c 'import json,sys; print(json.load(sys.stdin)["quic"])')
  sleep 1
  local pids=()
  for i in 0 1 2 3; do
    local peers=(--peer "$addr")
    for j in 0 1 2 3; do [ "$j" != "$i" ] && peers+=(--peer "127.0.0.1:$((PORT + j))"); done
    local cmd=("$bin" fetch data.torrent -o "l$i" --no-dht --listen "127.0.0.1:$((PORT + i))" "${peers[@]}" --json)
    if [ "${PERF:-}" = 1 ] && [ "$i" = 0 ]; then
      perf record -q -e cpu-clock -F 499 --call-graph dwarf,16384 -o l0.perf -- "${cmd[@]}" > "l$i.out" 2> "l$i.err" &
    else
      /usr/bin/time -f "%e %U %S %M" -o "l$i.time" "${cmd[@]}" > "l$i.out" 2> "l$i.err" &
    fi
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  kill -INT "$seed"; wait "$seed" || true
  local done_at
  done_at=$(for i in 0 1 2 3; do grep -o '"seconds":[0-9.]*' "l$i.out" | cut -d: -f2; done | sort -n | tr '\n' ' ')
  echo "$(basename "$bin"): complete at $done_at| $(cat l?.time 2>/dev/null | awk '{s += $2 + $3; if ($4 > m) m = $4} END {printf "leechers %.2f CPU-s, largest RSS %.1f MiB", s, m / 1024}')"
}
for _ in $(seq "$ROUNDS"); do
  for b in "${BINS[@]}"; do one_run "$b"; done
done
