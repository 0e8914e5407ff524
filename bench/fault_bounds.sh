#!/usr/bin/env bash
# Fault tolerance bounds (issue 5): `examples/axum_app` with the fallback
# (DATABASE_URL) and the spool (SPOOL_PATH) on, against a private
# redis-server and a private PostgreSQL cluster on free ports (never the
# shared ones), loaded with wrk from the same machine.
#
# 1. Latency: ROUNDS rounds of a paced load (wrk -t1 -c$CONNECTIONS, each
#    connection waiting DELAY_MS between requests, so the machine is not
#    saturated and p99 is the app's, not the scheduler's): PHASE seconds
#    with Redis up, then Redis killed (SIGKILL) and PHASE seconds with the
#    app writing straight into PostgreSQL, then Redis started again. Prints
#    each phase's p99, and the median of the per-round ratios down/up
#    (target <= 1.10): a burst of other work on the machine then spoils one
#    round, not the figure.
# 2. Bounds: Redis and PostgreSQL both down for OUTAGE seconds (default 60)
#    under an unpaced load (the app spools, then fills its buffer, then
#    drops), sampling the app's VmRSS (/proc/<pid>/status) and the spool
#    file's size every 0.5 s. Prints the largest of each against the
#    configured bounds: RSS <= RSS before the outage + (channel capacity +
#    buffer capacity) x EVENT_BYTES + MARGIN_MB, spool <= its byte limit.
#    Then both servers come back and the script waits for the spool to be
#    replayed.
#
# Usage: bench/fault_bounds.sh         (ROUNDS=5 PHASE=10 OUTAGE=60)
# Runs as root (PostgreSQL runs as the `postgres` user through runuser);
# installs wrk from Debian's packages if it is missing.
set -euo pipefail

cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
PHASE=${PHASE:-10}
OUTAGE=${OUTAGE:-60}
CONNECTIONS=${CONNECTIONS:-16}
DELAY_MS=${DELAY_MS:-10}
# The example's tracker settings (the builder's defaults, but the spool's).
CHANNEL_CAPACITY=16384
BUFFER_CAPACITY=100000
# A spool limit small enough for the outage's load to reach it, so the
# buffer fills and drops are exercised too (the default is 64 MiB).
SPOOL_MAX_BYTES=${SPOOL_MAX_BYTES:-$((16 * 1024 * 1024))}
# Allowance per buffered event (an `Activity` with its strings and details
# map) and a fixed margin for everything else (allocator slack, pools).
EVENT_BYTES=${EVENT_BYTES:-2048}
MARGIN_MB=${MARGIN_MB:-32}

if ! command -v wrk >/dev/null 2>&1; then
    echo "installing wrk" >&2
    apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

cargo build --release -p activity-tracking --example axum_app -q
cargo build --release -p activity-processor --bin activity-processor -q
APP_BIN=target/release/examples/axum_app
PROCESSOR_BIN=target/release/activity-processor

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

WORK=$(mktemp -d)
chmod 755 "$WORK"
mkdir -p "$WORK/pg" "$WORK/redis"
chown postgres "$WORK/pg"
REDIS_PORT=$(free_port)
PG_PORT=$(free_port)
APP_PORT=$(free_port)
REDIS_URL=redis://127.0.0.1:$REDIS_PORT
DATABASE_URL=postgres://postgres@127.0.0.1:$PG_PORT/postgres
SPOOL=$WORK/spool
REDIS_PID=
APP_PID=

pg() { runuser -u postgres -- "$PG_BIN/$1" "${@:2}"; }
pg_start() {
    pg pg_ctl -D "$WORK/pg/data" -l "$WORK/pg/log" -w -t 30 \
        -o "-p $PG_PORT -k $WORK/pg -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
}
pg_stop() { pg pg_ctl -D "$WORK/pg/data" -m fast -w stop >/dev/null; }
redis_start() {
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly yes \
        --appendfsync always --dir "$WORK/redis" >/dev/null 2>&1 &
    REDIS_PID=$!
    for _ in $(seq 100); do
        [[ "$(redis-cli -p "$REDIS_PORT" PING 2>/dev/null)" == PONG ]] && return
        sleep 0.1
    done
    echo "redis-server did not start" >&2
    exit 1
}
redis_kill() { kill -KILL "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null || true; REDIS_PID=; }
cleanup() {
    [[ -n "$APP_PID" ]] && kill -KILL "$APP_PID" 2>/dev/null || true
    [[ -n "$REDIS_PID" ]] && kill -KILL "$REDIS_PID" 2>/dev/null || true
    pg pg_ctl -D "$WORK/pg/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

pg initdb -D "$WORK/pg/data" -A trust -U postgres --no-sync >/dev/null
pg_start
redis_start
DATABASE_URL=$DATABASE_URL LOG_LEVEL=warn "$PROCESSOR_BIN" migrate >/dev/null 2>&1

APP_LISTEN=127.0.0.1:$APP_PORT REDIS_URL=$REDIS_URL DATABASE_URL=$DATABASE_URL \
    SPOOL_PATH=$SPOOL SPOOL_MAX_BYTES=$SPOOL_MAX_BYTES STREAM_KEY=bench:fault-bounds RUST_LOG=warn \
    "$APP_BIN" >"$WORK/app.log" 2>&1 &
APP_PID=$!
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$APP_PORT/healthz" >/dev/null && break
    sleep 0.1
done
URL=http://127.0.0.1:$APP_PORT/api/v1/cases/42

cat >"$WORK/paced.lua" <<EOF
function delay() return $DELAY_MS end
EOF

# Latency from wrk ("812.00us", "1.23ms", "2.00s") in microseconds.
to_us() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); print v + 0 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); print v * 1000 }
        else if (v ~ /s$/) { sub(/s$/, "", v); print v * 1000000 }
        else { print v + 0 }
    }'
}
# paced SECONDS: prints "P99_US REQUESTS NON_2XX".
paced() {
    wrk -t1 -c"$CONNECTIONS" -d"$1"s --latency -s "$WORK/paced.lua" "$URL" >"$WORK/wrk.out"
    local p99 requests errors
    p99=$(awk '$1 == "99%" { print $2 }' "$WORK/wrk.out")
    requests=$(awk '/requests in/ { print $1 }' "$WORK/wrk.out")
    errors=$(awk '/Non-2xx/ { print $NF }' "$WORK/wrk.out")
    echo "$(to_us "$p99") $requests ${errors:-0}"
}
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$APP_PID/status"; }
rows() { pg psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -Atc "SELECT count(*) FROM user_activity_logs" 2>/dev/null || echo "?"; }
# CPU seconds (user + system) used so far by the app, by PostgreSQL (the
# postmaster and its children) and by Redis: "APP PG REDIS".
cpu_seconds() {
    local postmaster pids
    postmaster=$(head -1 "$WORK/pg/data/postmaster.pid" 2>/dev/null || true)
    pids=$(pgrep -P "$postmaster" 2>/dev/null | tr '\n' ' ' || true)
    ticks() { cat "${@/%//stat}" 2>/dev/null | awk '{ t += $14 + $15 } END { print t + 0 }'; }
    local hz
    hz=$(getconf CLK_TCK)
    echo "$(ticks "/proc/$APP_PID") $(ticks "/proc/$postmaster" $(for p in $pids; do echo "/proc/$p"; done)) \
$( [[ -n "$REDIS_PID" ]] && ticks "/proc/$REDIS_PID" || echo 0)" |
        awk -v hz="$hz" '{ printf "%.2f %.2f %.2f\n", $1 / hz, $2 / hz, $3 / hz }'
}
# cpu_used "BEFORE" "AFTER": "app X s, PostgreSQL Y s, Redis Z s".
cpu_used() {
    awk -v b="$1" -v a="$2" 'BEGIN {
        split(b, x, " "); split(a, y, " ")
        printf "CPU app %.2f s, PostgreSQL %.2f s, Redis %.2f s", y[1] - x[1], y[2] - x[2], y[3] - x[3]
    }'
}
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

echo "warm-up"
paced 3 >/dev/null
UP=()
DOWN=()
RATIOS=()
for round in $(seq "$ROUNDS"); do
    cpu_before=$(cpu_seconds)
    read -r up_p99 up_n up_err < <(paced "$PHASE")
    cpu_up=$(cpu_used "$cpu_before" "$(cpu_seconds)")
    redis_kill
    sleep 2 # the dispatcher notices and switches to PostgreSQL
    before=$(rows)
    cpu_before=$(cpu_seconds)
    read -r down_p99 down_n down_err < <(paced "$PHASE")
    cpu_down=$(cpu_used "$cpu_before" "$(cpu_seconds)")
    after=$(rows)
    redis_start
    sleep 3 # the probe finds Redis again and the dispatcher switches back
    printf 'round %d: redis up p99 %d us (%d requests, %d non-2xx); redis down p99 %d us (%d requests, %d non-2xx, %s rows written straight into PostgreSQL)\n' \
        "$round" "$up_p99" "$up_n" "$up_err" "$down_p99" "$down_n" "$down_err" "$((after - before))"
    printf '  redis up: %s; redis down: %s\n' "$cpu_up" "$cpu_down"
    UP+=("$up_p99")
    DOWN+=("$down_p99")
    RATIOS+=("$(awk -v u="$up_p99" -v d="$down_p99" 'BEGIN { printf "%.3f", d / u }')")
done
up_median=$(printf '%s\n' "${UP[@]}" | median)
down_median=$(printf '%s\n' "${DOWN[@]}" | median)
ratio_median=$(printf '%s\n' "${RATIOS[@]}" | median)
printf 'p99 medians: redis up %d us, redis down %d us; per-round ratios down/up: %s\n' \
    "$up_median" "$down_median" "${RATIOS[*]}"
awk -v r="$ratio_median" 'BEGIN {
    printf "p99 down/up, median of the per-round ratios: %.2f (target <= 1.10): %s\n", r, (r <= 1.10) ? "met" : "NOT met"
}'

# Bounds: both down for OUTAGE seconds under an unpaced load.
rss_before=$(rss_kb)
redis_kill
pg_stop
wrk -t1 -c"$CONNECTIONS" -d"$OUTAGE"s "$URL" >"$WORK/outage.out" &
WRK_PID=$!
rss_max=0
spool_max=0
while kill -0 "$WRK_PID" 2>/dev/null; do
    rss=$(rss_kb)
    spool=$(stat -c %s "$SPOOL" 2>/dev/null || echo 0)
    ((rss > rss_max)) && rss_max=$rss
    ((spool > spool_max)) && spool_max=$spool
    sleep 0.5
done
wait "$WRK_PID" || true
outage_requests=$(awk '/requests in/ { print $1 }' "$WORK/outage.out")
outage_errors=$(awk '/Non-2xx/ { print $NF }' "$WORK/outage.out")
bound_kb=$((rss_before + (CHANNEL_CAPACITY + BUFFER_CAPACITY) * EVENT_BYTES / 1024 + MARGIN_MB * 1024))
printf 'outage %d s, redis and postgres down: %d requests (%d non-2xx)\n' \
    "$OUTAGE" "$outage_requests" "${outage_errors:-0}"
printf 'RSS: before %d KiB, max %d KiB, bound %d KiB (before + (%d + %d) x %d B + %d MiB): %s\n' \
    "$rss_before" "$rss_max" "$bound_kb" "$CHANNEL_CAPACITY" "$BUFFER_CAPACITY" "$EVENT_BYTES" "$MARGIN_MB" \
    "$( ((rss_max <= bound_kb)) && echo within || echo EXCEEDED)"
printf 'spool: max %d bytes, limit %d bytes: %s\n' "$spool_max" "$SPOOL_MAX_BYTES" \
    "$( ((spool_max <= SPOOL_MAX_BYTES)) && echo within || echo EXCEEDED)"

pg_start
redis_start
for _ in $(seq 600); do
    [[ "$(stat -c %s "$SPOOL" 2>/dev/null || echo 0)" == 0 ]] && break
    sleep 0.1
done
printf 'after recovery: spool %d bytes, stream length %s, table rows %s\n' \
    "$(stat -c %s "$SPOOL" 2>/dev/null || echo 0)" \
    "$(redis-cli -p "$REDIS_PORT" XLEN bench:fault-bounds)" "$(rows)"
printf 'app log: %d "activity events dropped" warnings (rate-limited), the last: %s\n' \
    "$(grep -c 'activity events dropped' "$WORK/app.log" || true)" \
    "$(grep 'activity events dropped' "$WORK/app.log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g' | sed 's/.*counters: //')"
