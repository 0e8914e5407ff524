#!/usr/bin/env bash
# Where the Redis-down latency comes from (issue 5, docs/benchmarks.md,
# "Fault tolerance bounds"): `examples/axum_app` under the paced load of
# bench/fault_bounds.sh, in four states, each a fresh app:
#
#   up         Redis up (no fallback configured)
#   database   Redis unreachable, DATABASE_URL set: every batch is written
#              straight into PostgreSQL
#   spool      Redis unreachable, SPOOL_PATH set: every batch is appended to
#              the spool file
#   nothing    Redis unreachable, no fallback: the dispatcher holds the
#              events in its buffer and retries with backoff
#
# The states run in turn, ROUNDS times (so drift on the machine hits each
# alike); each prints its p99 and mean latency, and at the end the median of
# each state's p99 and its ratio to `up`. If `spool` and `nothing`, which do
# no database work, are as slow as `database`, the difference is not the
# database writes.
#
# Usage: bench/redis_down_latency.sh     (ROUNDS=3 PHASE=10 CONNECTIONS=16 DELAY_MS=10)
# Needs a PostgreSQL at DATABASE_URL (default: the local one); installs wrk
# from Debian's packages if it is missing.
set -euo pipefail

cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
PHASE=${PHASE:-10}
CONNECTIONS=${CONNECTIONS:-16}
DELAY_MS=${DELAY_MS:-10}
SERVER_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}

if ! command -v wrk >/dev/null 2>&1; then
    echo "installing wrk" >&2
    apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi
cargo build --release -p activity-tracking --example axum_app -q
cargo build --release -p activity-processor --bin activity-processor -q

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
WORK=$(mktemp -d)
REDIS_PORT=$(free_port)
DEAD_PORT=$(free_port) # nothing listens there: connections are refused
APP_PORT=$(free_port)
DB=bench_redis_down_$$
DB_URL="${SERVER_URL%/*}/$DB"
REDIS_PID=
APP_PID=
cleanup() {
    [[ -n "$APP_PID" ]] && kill -KILL "$APP_PID" 2>/dev/null || true
    [[ -n "$REDIS_PID" ]] && kill -KILL "$REDIS_PID" 2>/dev/null || true
    psql -X -q "$SERVER_URL" -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly yes \
    --appendfsync always --dir "$WORK" >/dev/null 2>&1 &
REDIS_PID=$!
psql -X -q "$SERVER_URL" -c "CREATE DATABASE $DB" >/dev/null
DATABASE_URL=$DB_URL LOG_LEVEL=warn target/release/activity-processor migrate >/dev/null 2>&1
echo "function delay() return $DELAY_MS end" >"$WORK/paced.lua"

# measure STATE: starts the app in STATE, loads it, prints "P99_US MEAN_US".
measure() {
    local redis=redis://127.0.0.1:$DEAD_PORT extra=()
    case $1 in
        up) redis=redis://127.0.0.1:$REDIS_PORT ;;
        database) extra=(DATABASE_URL="$DB_URL") ;;
        spool) rm -f "$WORK/spool"; extra=(SPOOL_PATH="$WORK/spool") ;;
        nothing) ;;
    esac
    env APP_LISTEN=127.0.0.1:$APP_PORT REDIS_URL="$redis" STREAM_KEY=bench:redis-down \
        RUST_LOG=error "${extra[@]}" target/release/examples/axum_app >"$WORK/app.log" 2>&1 &
    APP_PID=$!
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$APP_PORT/healthz" >/dev/null && break
        sleep 0.1
    done
    local url=http://127.0.0.1:$APP_PORT/api/v1/cases/42
    wrk -t1 -c"$CONNECTIONS" -d3s -s "$WORK/paced.lua" "$url" >/dev/null # warm-up
    wrk -t1 -c"$CONNECTIONS" -d"$PHASE"s --latency -s "$WORK/paced.lua" "$url" >"$WORK/wrk.out"
    kill "$APP_PID"
    wait "$APP_PID" 2>/dev/null || true
    APP_PID=
    awk '
        function us(v) {
            if (v ~ /us$/) { sub(/us$/, "", v); return v + 0 }
            if (v ~ /ms$/) { sub(/ms$/, "", v); return v * 1000 }
            sub(/s$/, "", v); return v * 1000000
        }
        $1 == "Latency" && !mean { mean = us($2) }
        $1 == "99%" { p99 = us($2) }
        END { printf "%d %d\n", p99, mean }' "$WORK/wrk.out"
}

STATES=(up database spool nothing)
declare -A P99S
for round in $(seq "$ROUNDS"); do
    for state in "${STATES[@]}"; do
        read -r p99 mean < <(measure "$state")
        printf 'round %d %-9s p99 %5d us, mean %4d us\n' "$round" "$state" "$p99" "$mean"
        P99S[$state]+="$p99 "
    done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
up=$(echo "${P99S[up]}" | median)
for state in "${STATES[@]}"; do
    m=$(echo "${P99S[$state]}" | median)
    awk -v s="$state" -v m="$m" -v u="$up" 'BEGIN { printf "%-9s median p99 %5d us, %.2f x up\n", s, m, m / u }'
done
