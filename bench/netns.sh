#!/usr/bin/env bash
# A swarm of real qswarm processes on emulated slow, lossy links (issue 8): network namespaces this script
# creates (one per host) joined by veth pairs to a bridge in a hub namespace of its own, addresses 10.99.0.0/24
# only inside those namespaces (no route anywhere else), each host's egress shaped with
# `tc netem delay $DELAY loss $LOSS rate $RATE` (or, where the kernel lacks sch_netem, a `tbf` rate cap only:
# the script says so). One `qswarm dht` bootstrap node, one seeder and $LEECHERS leechers fetching a $SIZE file by
# infohash through the DHT. Checks every copy is byte-identical and prints each leecher's time.
#
#   bench/netns.sh                      # 64 MiB, 4 leechers, 20mbit, 50ms, 2% (needs root / CAP_NET_ADMIN)
#   SIZE=4M LEECHERS=2 bench/netns.sh   # smaller (tests/fault_netns.rs runs this)
# Env: SIZE LEECHERS RATE DELAY LOSS TIMEOUT QSWARM (binary; default target/release/qswarm, else debug),
# QSWARM_ARGS (extra options for seed and fetch, e.g. "--congestion cubic" for an A/B against the default),
# KEEP=1 (keep the work directory with every process's JSON log). Each leecher's line counts the `peer
# disconnected` events it saw before it completed (duplicate connections closed at start, peers that left).
# Exit: 0 all copies identical; 1 a failure; 77 namespaces not permitted here (skipped, reason printed).
set -u
SIZE=${SIZE:-64M}
LEECHERS=${LEECHERS:-4}
RATE=${RATE:-20mbit}
DELAY=${DELAY:-50ms}
LOSS=${LOSS:-2%}
TIMEOUT=${TIMEOUT:-300}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
QSWARM=${QSWARM:-}
if [ -z "$QSWARM" ]; then
    if [ -x "$ROOT/target/release/qswarm" ]; then QSWARM=$ROOT/target/release/qswarm; else QSWARM=$ROOT/target/debug/qswarm; fi
fi
[ -x "$QSWARM" ] || { echo "no qswarm binary at $QSWARM (cargo build first)"; exit 1; }

P="qs$$"           # namespace / interface prefix, unique per run
HUB="${P}hub"
WORK=$(mktemp -d /tmp/qswarm-netns.XXXXXX)
PIDS=()
NSS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    for ns in "${NSS[@]}"; do ip netns del "$ns" 2>/dev/null; done
    [ -n "${KEEP:-}" ] && echo "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

if ! ip netns add "$HUB" 2>"$WORK/err"; then
    echo "SKIP: cannot create network namespaces here ($(head -c 200 "$WORK/err" | tr '\n' ' '))"
    exit 77
fi
NSS+=("$HUB")
ip -n "$HUB" link add br0 type bridge || { echo "SKIP: no bridge support"; exit 77; }
ip -n "$HUB" link set br0 up

SHAPE="netem delay $DELAY loss $LOSS rate $RATE"
SHAPED=""
# Which way to shape: kernel netem on veth/bridge if this kernel has it, else the userspace TUN switch
# (bench/netns_link.py: same delay, loss and rate), else a tbf rate cap alone. LINK=netem|tun|tbf forces one.
LINK=${LINK:-}
if [ -z "$LINK" ]; then
    ip netns add "${P}probe" && NSS+=("${P}probe")
    ip -n "${P}probe" link add q0 type veth peer name q1 2>/dev/null
    if ip netns exec "${P}probe" tc qdisc add dev q0 root $SHAPE 2>/dev/null; then LINK=netem
    elif command -v python3 >/dev/null && [ -c /dev/net/tun ]; then LINK=tun
    else LINK=tbf; fi
    ip netns del "${P}probe"
fi
host() { # host INDEX -> creates namespace ${P}hINDEX with address 10.99.0.(10+INDEX)
    local i=$1 ns="${P}h$1"
    ip netns add "$ns" || return 1
    NSS+=("$ns")
    ip -n "$ns" link set lo up
    [ "$LINK" = tun ] && return 0 # addresses on tun0, made by the switch
    ip -n "$ns" link add eth0 type veth peer name "p$i" || return 1
    ip -n "$ns" link set "p$i" netns "$HUB"
    ip -n "$HUB" link set "p$i" master br0
    ip -n "$HUB" link set "p$i" up
    ip -n "$ns" addr add "10.99.0.$((10 + i))/24" dev eth0
    ip -n "$ns" link set eth0 up
    if [ "$LINK" = netem ]; then
        ip netns exec "$ns" tc qdisc add dev eth0 root $SHAPE || return 1
        SHAPED="netem: $SHAPE"
    else
        ip netns exec "$ns" tc qdisc add dev eth0 root tbf rate "$RATE" burst 64kbit latency 400ms || return 1
        SHAPED="tbf rate $RATE only (no delay/loss: this kernel has no sch_netem)"
    fi
}
for i in $(seq 0 $((LEECHERS + 1))); do
    host "$i" || { echo "FAIL: setting up host $i"; exit 1; }
done
if [ "$LINK" = tun ]; then
    HOSTS=()
    for i in $(seq 0 $((LEECHERS + 1))); do HOSTS+=("${P}h$i:10.99.0.$((10 + i))"); done
    rate_bps=$(numfmt --from=si "$(echo "$RATE" | sed 's/bit$//; s/[kK]$/K/; s/m$/M/; s/g$/G/')")
    loss=$(awk -v l="${LOSS%\%}" 'BEGIN{print l/100}')
    python3 "$ROOT/bench/netns_link.py" --delay-ms "${DELAY%ms}" --loss "$loss" --rate-bps "$rate_bps" \
        "${HOSTS[@]}" >"$WORK/link.log" 2>&1 &
    LINKPID=$!
    PIDS+=($LINKPID)
    wait_ready=$((SECONDS + 10))
    until grep -q ready "$WORK/link.log"; do
        if [ $SECONDS -ge $wait_ready ] || ! kill -0 $LINKPID 2>/dev/null; then
            echo "FAIL: the userspace link did not start: $(cat "$WORK/link.log")"; exit 1
        fi
        sleep 0.1
    done
    SHAPED="userspace TUN switch (no sch_netem in this kernel): delay $DELAY, loss $LOSS, rate $RATE per host"
fi
echo "links: $SHAPED on each host's egress; hosts 10.99.0.10 (dht) .11 (seed) .12-.$((11 + LEECHERS)) (leechers)"

BYTES=$(numfmt --from=iec "$SIZE")
head -c "$BYTES" /dev/urandom >"$WORK/data.bin"
IH=$("$QSWARM" create "$WORK/data.bin" -o "$WORK/data.torrent" | sed -n 's/^infohash: //p')
[ -n "$IH" ] || { echo "FAIL: create"; exit 1; }
echo "file: $BYTES bytes, infohash $IH"

run() { # run NS LOGFILE ARGS... (background; PID recorded)
    local ns=$1 log=$2; shift 2
    ip netns exec "$ns" "$QSWARM" "$@" --json >"$log" 2>"$log.err" &
    PIDS+=($!)
}
wait_for() { # wait_for FILE PATTERN SECS
    local end=$((SECONDS + $3))
    until grep -q "$2" "$1" 2>/dev/null; do
        [ $SECONDS -ge $end ] && return 1
        sleep 0.2
    done
}
BOOT=10.99.0.10:6881
run "${P}h0" "$WORK/dht.log" dht --dht-listen "$BOOT" --no-bootstrap
wait_for "$WORK/dht.log" listening 10 || { echo "FAIL: dht node did not start"; cat "$WORK/dht.log.err"; exit 1; }
run "${P}h1" "$WORK/seed.log" seed "$WORK/data.torrent" ${QSWARM_ARGS:-} --listen 10.99.0.11:6881 --dht-listen 10.99.0.11:6882 --bootstrap "$BOOT"
wait_for "$WORK/seed.log" '"checked"' 60 || { echo "FAIL: seeder did not check its data"; cat "$WORK/seed.log.err"; exit 1; }
sleep 2 # let the seeder announce

START=$(date +%s.%N)
LPIDS=()
for i in $(seq 2 $((LEECHERS + 1))); do
    a="10.99.0.$((10 + i))"
    run "${P}h$i" "$WORK/l$i.log" fetch "$IH" -o "$WORK/out$i" ${QSWARM_ARGS:-} --listen "$a:6881" --dht-listen "$a:6882" \
        --bootstrap "$BOOT" --timeout 60
    LPIDS+=($!)
done
FAIL=0
end=$((SECONDS + TIMEOUT))
for idx in "${!LPIDS[@]}"; do
    pid=${LPIDS[$idx]}
    i=$((idx + 2))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
        echo "FAIL: leecher $i still running after ${TIMEOUT}s"; FAIL=1; continue
    fi
    wait "$pid"; rc=$?
    t=$(awk -v s="$START" -v e="$(date +%s.%N)" 'BEGIN{printf "%.1f", e-s}')
    secs=$(grep '"complete"' "$WORK/l$i.log" | sed -n 's/.*"seconds":\([0-9.]*\).*/\1/p' | head -1)
    down=$(grep '"complete"' "$WORK/l$i.log" | sed -n 's/.*"downloaded":\([0-9]*\).*/\1/p' | head -1)
    if [ $rc -ne 0 ]; then
        echo "FAIL: leecher $i exit $rc: $(tail -n 2 "$WORK/l$i.log.err")"; FAIL=1
    elif cmp -s "$WORK/data.bin" "$WORK/out$i/data.bin"; then
        drops=$(awk '/"event":"complete"/{exit} /"state":"disconnected"/{n++} END{print n+0}' "$WORK/l$i.log")
        echo "leecher $i (10.99.0.$((10 + i))): identical copy; complete after ${secs:-?} s (seen done at ${t} s), downloaded ${down:-?} bytes, $drops peer disconnect(s) before complete"
    else
        echo "FAIL: leecher $i copy differs"; FAIL=1
    fi
done
if [ -n "${LINKPID:-}" ]; then
    kill -TERM "$LINKPID" 2>/dev/null; wait "$LINKPID" 2>/dev/null
    grep 'link stats' "$WORK/link.log"
fi
if [ $FAIL -eq 0 ]; then
    echo "RESULT ok: $LEECHERS leechers, $BYTES bytes each, byte-identical, links: $SHAPED"
else
    echo "RESULT failed"
fi
exit $FAIL
