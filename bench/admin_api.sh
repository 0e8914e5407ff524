#!/usr/bin/env bash
# Admin API at scale (docs/benchmarks.md, "Admin API at 10M rows").
#
#   bench/admin_api.sh [ROWS] [extra bench_admin flags...]
#
# ROWS defaults to 10000000 (spread over 90 days and 50,000 users; use e.g.
# 500000 for a quick run). Loads the rows with COPY into a scratch database,
# times rebuild-rollups, then prints each admin endpoint's p50/p99 through
# the admin router next to the same figures computed by plain GROUP BYs over
# the raw table in the same run, then the user profile's p50/p99 for random
# users and its time for the heaviest user against the plain GROUP BYs of
# its figures (ratio printed), and what the rollups cost the writer. The
# scratch database is dropped at the end. Needs the PostgreSQL of
# DATABASE_URL and the Redis of REDIS_URL (defaults: local).
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS="${1:-10000000}"
shift || true

cargo build --release -q -p activity-processor --example bench_admin
exec "${CARGO_TARGET_DIR:-target}/release/examples/bench_admin" --rows "$ROWS" "$@"
