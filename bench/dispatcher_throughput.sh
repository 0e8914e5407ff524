#!/usr/bin/env bash
# Dispatcher throughput (issue 2): events per second that `track()`, called
# from several tasks of one process, gets into a Redis Stream (counted with
# the `n` of each entry afterwards), against a baseline of raw pipelined
# per-event XADDs of the same payloads (serialized beforehand, batches of
# the same size, one connection), measured in the same run, round after
# round.
#
# Target: tracker >= 1.5 x the per-event pipelined XADD baseline.
#
# The Redis is a private `redis-server` on a free port (no persistence),
# so other work on the shared Redis does not skew the figures.
#
# Usage: bench/dispatcher_throughput.sh        (ROUNDS=3 EVENTS=400000 TASKS=4)
#        ROUNDS=5 EVENTS=1000000 bench/dispatcher_throughput.sh
#        MAX_BATCH, CHANNEL_CAPACITY, POOL_SIZE, STREAM_FORMAT (v2, v2-lz4, v1)
#        are passed to the program.
set -euo pipefail

cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
export EVENTS=${EVENTS:-400000}
export TASKS=${TASKS:-4}

cargo build --release -q -p activity-tracker --example bench_dispatcher
BIN=target/release/examples/bench_dispatcher

# A private Redis: sets PORT, WORK and REDIS_PID, stopped on exit.
source bench/lib/private_redis.sh
export REDIS_URL="redis://127.0.0.1:$PORT"

echo "dispatcher throughput: $ROUNDS rounds of $EVENTS events, $TASKS producer tasks, private redis-server :$PORT"
for round in $(seq 1 "$ROUNDS"); do
    echo "--- round $round"
    "$BIN" | tee "$WORK/round-$round.txt"
done

cat "$WORK"/round-*.txt | awk '
    /^baseline raw XADD:/ { b[nb++] = $(NF-1) }
    /^tracker track\(\):/  { t[nt++] = $(NF-1) }
    /^ratio tracker\/baseline:/ { r[nr++] = $NF }
    /^client CPU per event:/ { cb[ncb++] = $(NF-4); ct[nct++] = $(NF-1) }
    END {
        n = asort(b); asort(t); asort(r); asort(cb); asort(ct)
        m = int((n + 1) / 2)
        printf "=== median of %d rounds: baseline %.0f events/s, tracker %.0f events/s, ratio tracker/baseline %.2f (median of the rounds'"'"' ratios)\n", n, b[m], t[m], r[m]
        printf "=== median client CPU per event: baseline %.2f us, tracker %.2f us\n", cb[m], ct[m]
        printf "=== target tracker >= 1.5 x baseline: %s\n", (r[m] >= 1.5) ? "met" : "NOT met"
    }'
