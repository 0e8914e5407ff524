#!/usr/bin/env bash
# Erasure and export at scale (docs/benchmarks.md, "Privacy: erasure and
# export at 10M rows").
#
#   bench/privacy_erasure.sh [ROWS] [extra bench_privacy flags...]
#
# ROWS defaults to 10000000 (over 90 days; two users of 100,000 rows are
# erased, one of 1,000,000 exported; use e.g. 1000000 --target-rows 10000
# --export-rows 100000 for a quick run). Loads the rows with COPY into a
# scratch database, then with a drain running (DB_WRITERS writers of
# BATCH_SIZE batches through the store's writer, and the fold timer) times
# each erasure mode and prints the drain's rate during it against its rate
# alone measured just before; last, the export's rows, time and RSS growth.
# The scratch database is dropped at the end. Needs the PostgreSQL of
# DATABASE_URL (default: local).
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS="${1:-10000000}"
shift || true

cargo build --release -q -p activity-processor --example bench_privacy
exec target/release/examples/bench_privacy --rows "$ROWS" "$@"
