#!/usr/bin/env bash
# Writer throughput against COPY (docs/benchmarks.md, "Processor: writer
# throughput against `COPY`").
#
#   bench/writer_vs_copy.sh [EVENTS] [BATCH_SIZES] [METHODS]
#
# EVENTS defaults to 1000000 (100000 for a quick run); BATCH_SIZES is a
# comma-separated list (default 1000), METHODS a comma-separated list of
# unnest, temp, copy, statement, auto, optionally suffixed -raw to skip the rollups (default
# copy; see processor/examples/bench_writer.rs). The baseline, psql \copy of the same rows as
# CSV into an identical empty table, is measured in the same run; each
# configuration writes into its own fresh scratch database, all dropped at
# the end. Needs psql and the PostgreSQL of DATABASE_URL (default: local).
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS="${1:-1000000}"
BATCH_SIZES="${2:-1000}"
METHODS="${3:-copy}"

cargo build --release -q -p activity-processor --example bench_writer
exec target/release/examples/bench_writer \
  --events "$EVENTS" --batch-sizes "$BATCH_SIZES" --methods "$METHODS"
