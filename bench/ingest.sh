#!/usr/bin/env bash
# The ingest server's throughput (docs/benchmarks.md, "Ingest: Segment
# batches against pipelined XADD"): batches of 100 Segment `track` events
# posted to `activity-processor serve` (SERVE_ROLES=ingest, the release
# binary) by a load generator on the same machine, gzip off and on,
# against per-event pipelined `XADD` of the same events measured in the
# same run; events/s, CPU per event of the ingest and of Redis, and the
# ratio. A private redis-server on a free port holds the stream.
#
#   bench/ingest.sh [EVENTS] [extra bench_ingest flags...]
#
# EVENTS defaults to 200000; e.g. --rounds 5 --connections 16 --batch-events 100.
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS="${1:-200000}"
shift $(( $# < 1 ? $# : 1 ))

cargo build --release -q -p activity-processor --bin activity-processor --example bench_ingest
exec "${CARGO_TARGET_DIR:-target}/release/examples/bench_ingest" \
  --events "$EVENTS" --processor-bin "${CARGO_TARGET_DIR:-target}/release/activity-processor" "$@"
