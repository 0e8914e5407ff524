#!/usr/bin/env bash
# The alert rules' cost and speed (docs/benchmarks.md, "Alert rules"): the
# release binary drains EVENTS preloaded events without the inbox trigger,
# with ALERT_RULES=none and with the three built-in rules, ROUNDS rounds in
# turn (medians and ratios printed); then, with the built-in rules, a steady
# RATE events/s for SECONDS seconds in which each second one user crosses
# `rate`'s threshold: p50/p99/max from the XADD of the crossing event to its
# alert row, against FLUSH_INTERVAL_MS + 1 s.
#
#   bench/alerts.sh [EVENTS] [ROUNDS] [RATE] [SECONDS] [extra bench_alerts flags...]
#
# EVENTS defaults to 200000, ROUNDS to 3, RATE to 1000, SECONDS to 30. A
# private redis-server on a free port holds the streams; scratch databases
# are made on DATABASE_URL's server (default: local) and dropped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS="${1:-200000}"
ROUNDS="${2:-3}"
RATE="${3:-1000}"
SECONDS_="${4:-30}"
shift $(( $# < 4 ? $# : 4 ))

cargo build --release -q -p activity-processor --bin activity-processor --example bench_alerts
exec target/release/examples/bench_alerts \
  --events "$EVENTS" --rounds "$ROUNDS" --rate "$RATE" --seconds "$SECONDS_" \
  --processor-bin target/release/activity-processor "$@"
