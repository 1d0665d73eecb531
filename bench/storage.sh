#!/bin/sh
# Storage throughput: write + verify, parallel recheck, concurrent block reads through the handle LRU vs raw
# pread. Release build. QSWARM_BENCH_MIB (default 256) sets the data size; QSWARM_BENCH_DIR (default .) where
# the temporary files go (page cache warm: this measures CPU and syscall cost, not the disk).
set -e
cd "$(dirname "$0")/.."
exec cargo test --release --test storage_bench -- --ignored --nocapture --test-threads=1
