#!/usr/bin/env bash
# Redis Cluster against a single node (docs/benchmarks.md, "Redis Cluster:
# shards against a single node"; docs/scaling.md): in one run, a private
# single redis-server (the baseline) and a private 3-master cluster with a
# replica each (the harness's RedisCluster), both with the append-only file
# (everysec). Round after round, for the single node with one shard and
# the cluster with each of SHARDS shards:
#
#   - events/s through the tracker (`track()` from TASKS tasks, counted in
#     the shards afterwards);
#   - the release processor's drain of them (STREAM_SHARDS and REDIS_URL
#     matching) into a scratch database on DATABASE_URL's server (default:
#     local), events/s until every event is stored and acknowledged;
#   - the CPU time of every redis-server process per event, for each phase:
#     the whole process (/proc/<pid>/stat, its threads and its forks) and
#     its main thread (/proc/<pid>/task/<pid>/stat), the one that runs the
#     commands and bounds what a node takes;
#
# each cluster figure over the single node's of the same round, and the
# medians of the rounds at the end. On two cores this shows the cluster's
# overhead, not its scaling (docs/scaling.md).
#
# Usage: bench/redis_cluster.sh        (ROUNDS=5 EVENTS=400000 TASKS=4 SHARDS=1,3,6; about 3 minutes)
#        ROUNDS=3 EVENTS=1000000 SHARDS=3,6 bench/redis_cluster.sh
set -euo pipefail

cd "$(dirname "$0")/.."
export ROUNDS=${ROUNDS:-5}
export EVENTS=${EVENTS:-400000}
export TASKS=${TASKS:-4}
export SHARDS=${SHARDS:-1,3,6}
TARGET=${CARGO_TARGET_DIR:-target}

# One build for both: the processor alone resolves the shared crates with
# the root package's features (.ci/same-features).
cargo build --release -q -p activity-processor --bin activity-processor
cargo build --release -q --example bench_cluster
PROCESSOR_BIN="$TARGET/release/activity-processor" exec "$TARGET/release/examples/bench_cluster"
