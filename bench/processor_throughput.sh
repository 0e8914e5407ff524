#!/usr/bin/env bash
# The processor end to end (docs/benchmarks.md, "Processor: end-to-end
# latency and memory"): the release binary drains EVENTS preloaded events
# into an empty table, against psql \copy of the same rows (CSV) into an
# identical empty table measured in the same run; its peak RSS while
# draining; then p50/p99 from XADD to row visible at a steady RATE events/s
# for SECONDS seconds.
#
#   bench/processor_throughput.sh [EVENTS] [RATE] [SECONDS] [extra bench_processor flags...]
#
# EVENTS defaults to 1000000, RATE to 1000, SECONDS to 20. Extra flags, e.g.
# --batch-size 2000 --flush-interval-ms 100, are passed on. A private
# redis-server on a free port holds the streams; scratch databases are made
# on DATABASE_URL's server (default: local) and dropped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS="${1:-1000000}"
RATE="${2:-1000}"
SECONDS_="${3:-20}"
shift $(( $# < 3 ? $# : 3 ))

cargo build --release -q -p activity-processor --bin activity-processor --example bench_processor
exec target/release/examples/bench_processor \
  --events "$EVENTS" --rate "$RATE" --seconds "$SECONDS_" \
  --processor-bin target/release/activity-processor "$@"
