#!/usr/bin/env bash
# Capture layer overhead (issue 2): an axum hello world (`middleware/examples/bench_app.rs`)
# with the activity layer recording every request into a Redis Stream, against
# the same app without the layer, in the same run, alternating the two so
# machine noise hits both alike. Load: `wrk -t1 -c32` from the same machine,
# everything (app, Redis, wrk) on the same cores.
#
# Prints, per round and in total: requests/s, p99 latency and CPU time per
# request (app + Redis + wrk: what bounds throughput once the cores are
# saturated, and much less disturbed by other work on the machine) of each mode,
# the throughput ratio layer/bare (target >= 0.90) and the p99 ratio
# layer/bare of wrk's closed loop, and checks that the stream holds exactly
# one event per request the layered app served (the `n` of its entries
# summed). The p99 target (<= 1.10 x bare) is measured open loop: each round
# then runs bare and layer again under `middleware/examples/bench_load.rs`
# (OPEN_CONNECTIONS connections, default 64) at a fixed rate of half the
# round's bare throughput (latency from when
# each request was due, so no coordinated omission), and prints their p99s. A third mode per round runs the
# layer and the dispatcher with a sink that writes nothing, to tell the cost
# of capturing from the cost of writing to Redis. Each round also prints the
# dispatcher thread's share of the app's CPU, and the ceiling Redis alone sets:
# bare CPU / (bare CPU + Redis's CPU per event), the ratio a layer costing the
# app nothing at all would still be held to with Redis on the same cores.
#
# Usage: bench/layer_overhead.sh            (ROUNDS=3 DURATION=10 by default)
#        ROUNDS=5 DURATION=20 bench/layer_overhead.sh
# Needs Redis at REDIS_URL (default redis://127.0.0.1:6379) and redis-cli;
# installs wrk from Debian's packages if it is missing.
set -euo pipefail

cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNECTIONS=32
# The open-loop generator runs its connections on one thread (and a timer
# thread), so many cost it no more scheduling than few; enough that a
# request due finds one free while the app is busy (8 could not keep up
# with 50k requests/s: each would need an answer every 160 us).
OPEN_CONNECTIONS=${OPEN_CONNECTIONS:-64}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export REDIS_URL

if ! command -v wrk >/dev/null 2>&1; then
    echo "installing wrk" >&2
    apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi
redis-cli -u "$REDIS_URL" PING >/dev/null

cargo build --release -p activity-tracker --example bench_app --example bench_load -q
BIN=target/release/examples/bench_app
LOAD=target/release/examples/bench_load

# Events in a stream (bench/lib/stream_events.lua).
stream_events() {
    redis-cli -u "$REDIS_URL" EVAL "$(cat bench/lib/stream_events.lua)" 1 "$1"
}

# start_app MODE KEY OUT: starts the app (its stdout in OUT), waits for its
# address, warms it up; sets APP_PID and APP_ADDR (not in a subshell, so
# the EXIT trap knows the pid).
start_app() {
    local mode=$1 key=$2 out=$3
    BENCH_MODE=$mode STREAM_KEY=$key APP_LISTEN=127.0.0.1:0 "$BIN" >"$out" 2>"$out.err" &
    APP_PID=$!
    APP_ADDR=
    for _ in $(seq 100); do
        APP_ADDR=$(sed -n 's/^listening on //p' "$out")
        [[ -n "$APP_ADDR" ]] && break
        sleep 0.1
    done
    [[ -n "$APP_ADDR" ]] || { echo "bench_app did not start" >&2; cat "$out.err" >&2; exit 1; }
    wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" "http://$APP_ADDR/hello" >/dev/null
}

# run_open MODE KEY RATE: starts the app, loads it open loop at RATE
# requests/s for DURATION seconds, stops it; prints "P99_US SERVED COUNTERS".
run_open() {
    local mode=$1 key=$2 rate=$3 out="$WORK/open.out" addr
    start_app "$mode" "$key" "$out"
    addr=$APP_ADDR
    "$LOAD" rate "$addr" /hello "$rate" "$DURATION" "$OPEN_CONNECTIONS" >"$WORK/open.load"
    kill -TERM "$APP_PID"
    wait "$APP_PID"
    APP_PID=
    local p99 served
    p99=$(sed -n 's/.*p99_us=\([0-9]*\).*/\1/p' "$WORK/open.load")
    served=$(sed -n 's/^served=\([0-9]*\).*/\1/p' "$out")
    echo "$p99 $served $(sed -n 's/^served=[0-9]* //p' "$out")"
}
WORK=$(mktemp -d)
APP_PID=
cleanup() {
    if [[ -n "$APP_PID" ]] && kill -0 "$APP_PID" 2>/dev/null; then
        kill -TERM "$APP_PID" 2>/dev/null || true
        wait "$APP_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# Latency from wrk ("812.00us", "1.23ms", "2.00s") in microseconds.
to_us() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); print v + 0 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); print v * 1000 }
        else if (v ~ /s$/) { sub(/s$/, "", v); print v * 1000000 }
        else { print v + 0 }
    }'
}

# CPU time (clock ticks) used so far by the app.
app_ticks() { awk '{ print $14 + $15 }' "/proc/$APP_PID/stat"; }
# CPU nanoseconds used so far by the tracker's dispatcher thread (0 when the
# app runs without one), from the scheduler's per-thread statistics.
dispatcher_ns() {
    local comm
    for comm in /proc/"$APP_PID"/task/*/comm; do
        if [[ "$(cat "$comm" 2>/dev/null)" == activity-dispat* ]]; then
            awk '{ print $1 }' "${comm%/comm}/schedstat"
            return
        fi
    done
    echo 0
}
# CPU seconds used so far by Redis.
redis_cpu() { redis-cli -u "$REDIS_URL" INFO cpu | tr -d '\r' | awk -F: '/^used_cpu_(sys|user):/ { s += $2 } END { print s }'; }
# CPU seconds of the last wrk, from the `times` of its subshell.
wrk_cpu() {
    sed -n 2p "$WORK/times.out" | awk '{
        s = 0
        for (i = 1; i <= 2; i++) { split($i, p, "m"); sub(/s$/, "", p[2]); s += p[1] * 60 + p[2] }
        print s
    }'
}

# run MODE KEY: starts the app, loads it, stops it; prints
# "RPS P99_US CPU_US_PER_REQUEST SERVED COUNTERS...".
run() {
    local mode=$1 key=$2 out="$WORK/app.out" addr
    start_app "$mode" "$key" "$out"
    addr=$APP_ADDR
    local ticks_before redis_before dispatcher_before
    ticks_before=$(app_ticks)
    dispatcher_before=$(dispatcher_ns)
    redis_before=$(redis_cpu)
    # `times` in the subshell reports wrk's own CPU time.
    (
        wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://$addr/hello" >"$WORK/wrk.out"
        times >"$WORK/times.out"
    )
    local app_us redis_us wrk_us dispatcher_us
    dispatcher_us=$(awk -v b="$dispatcher_before" -v a="$(dispatcher_ns)" 'BEGIN { print (a - b) / 1000 }')
    app_us=$(awk -v tb="$ticks_before" -v ta="$(app_ticks)" -v tck="$(getconf CLK_TCK)" \
        'BEGIN { print (ta - tb) / tck * 1e6 }')
    redis_us=$(awk -v rb="$redis_before" -v ra="$(redis_cpu)" 'BEGIN { print (ra - rb) * 1e6 }')
    wrk_us=$(awk -v wrk="$(wrk_cpu)" 'BEGIN { print wrk * 1e6 }')
    kill -TERM "$APP_PID"
    wait "$APP_PID"
    APP_PID=
    local rps p99 served
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$WORK/wrk.out")
    p99=$(to_us "$(awk '$1 == "99%" { print $2 }' "$WORK/wrk.out")")
    served=$(sed -n 's/^served=\([0-9]*\).*/\1/p' "$out")
    if grep -q "Socket errors\|Non-2xx" "$WORK/wrk.out"; then
        echo "wrk saw errors in $mode mode:" >&2
        grep "Socket errors\|Non-2xx" "$WORK/wrk.out" >&2
        exit 1
    fi
    local requests
    requests=$(awk '/requests in/ { print $1 }' "$WORK/wrk.out")
    # CPU per request: all three, then app, Redis and wrk apart, then the
    # part of the app's that its dispatcher thread spent.
    local per_request
    per_request=$(awk -v a="$app_us" -v r="$redis_us" -v w="$wrk_us" -v d="$dispatcher_us" -v n="$requests" \
        'BEGIN { printf "%f %f %f %f %f", (a + r + w) / n, a / n, r / n, w / n, d / n }')
    echo "$rps $p99 $per_request $served $(sed -n 's/^served=[0-9]* //p' "$out")"
}

echo "layer overhead: wrk -t1 -c$CONNECTIONS, ${DURATION}s per run, $ROUNDS rounds, $(nproc) cores, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
# Other work on the machine skews everything; say how much there was.
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
total_bare=0 total_layer=0 total_capture=0 cpus_capture=() ratios_layer=() ratios_capture=() p99s_bare=() p99s_layer=() cpus_bare=() cpus_layer=() ceilings=() open_ratios=() failed=0
for round in $(seq "$ROUNDS"); do
    # Not in a subshell, so the EXIT trap knows the app's pid.
    run bare "bench_layer_bare_$$_$round" >"$WORK/result"
    read -r bare_rps bare_p99 bare_cpu bare_app bare_redis bare_wrk _ _ _ <"$WORK/result"
    # The layer and dispatcher with a sink that writes nothing: capturing alone.
    run capture "bench_layer_capture_$$_$round" >"$WORK/result"
    read -r capture_rps capture_p99 capture_cpu capture_app capture_redis capture_wrk capture_dispatcher _ _ <"$WORK/result"
    key="bench_layer_$$_$round"
    run layer "$key" >"$WORK/result"
    read -r layer_rps layer_p99 layer_cpu layer_app layer_redis layer_wrk layer_dispatcher served counters <"$WORK/result"
    entries=$(stream_events "$key")
    redis-cli -u "$REDIS_URL" DEL "$key" >/dev/null
    check=ok
    if [[ "$entries" != "$served" ]]; then check="MISMATCH"; failed=1; fi
    # Open loop at half the bare capacity: the p99 target.
    open_rate=$(awk -v r="$bare_rps" 'BEGIN { printf "%d", r / 2 }')
    read -r open_bare_p99 _ < <(run_open bare "bench_layer_open_bare_$$_$round" "$open_rate")
    open_key="bench_layer_open_$$_$round"
    read -r open_layer_p99 open_served open_counters < <(run_open layer "$open_key" "$open_rate")
    open_events=$(stream_events "$open_key")
    redis-cli -u "$REDIS_URL" DEL "$open_key" >/dev/null
    if [[ "$open_events" != "$open_served" ]]; then check="MISMATCH (open loop)"; failed=1; fi
    open_ratios+=("$(awk -v a="$open_layer_p99" -v b="$open_bare_p99" 'BEGIN { print a / b }')")
    printf 'round %d: bare %.0f req/s p99 %.0fus cpu %.1fus/req | layer %.0f req/s p99 %.0fus cpu %.1fus/req | ratio %.3f | stream %s entries for %s requests (%s) [%s]\n' \
        "$round" "$bare_rps" "$bare_p99" "$bare_cpu" "$layer_rps" "$layer_p99" "$layer_cpu" \
        "$(awk -v a="$layer_rps" -v b="$bare_rps" 'BEGIN { print a / b }')" \
        "$entries" "$served" "$check" "$counters"
    printf '         open loop at %d req/s: p99 bare %dus, layer %dus | ratio %.3f | stream %s events for %s requests [%s]\n' \
        "$open_rate" "$open_bare_p99" "$open_layer_p99" "${open_ratios[-1]}" "$open_events" "$open_served" "$open_counters"
    printf '         capture only (no Redis write): %.0f req/s p99 %.0fus cpu %.1fus/req | ratio %.3f\n' \
        "$capture_rps" "$capture_p99" "$capture_cpu" \
        "$(awk -v a="$capture_rps" -v b="$bare_rps" 'BEGIN { print a / b }')"
    printf '         cpu per request app / Redis / wrk: bare %.2f / %.2f / %.2fus, capture only %.2f / %.2f / %.2fus, layer %.2f / %.2f / %.2fus\n' \
        "$bare_app" "$bare_redis" "$bare_wrk" "$capture_app" "$capture_redis" "$capture_wrk" \
        "$layer_app" "$layer_redis" "$layer_wrk"
    # The best ratio any layer could reach while Redis stores each event on
    # these cores: the bare request's CPU plus Redis's alone, nothing for
    # the app's side of the layer.
    ceiling=$(awk -v b="$bare_cpu" -v r="$layer_redis" 'BEGIN { print b / (b + r) }')
    printf '         dispatcher thread per request: capture only %.2fus, layer %.2fus | Redis alone leaves at most %.3f of bare\n' \
        "$capture_dispatcher" "$layer_dispatcher" "$ceiling"
    ceilings+=("$ceiling")
    total_capture=$(awk -v a="$total_capture" -v b="$capture_rps" 'BEGIN { print a + b }')
    cpus_capture+=("$capture_cpu")
    ratios_layer+=("$(awk -v a="$layer_rps" -v b="$bare_rps" 'BEGIN { print a / b }')")
    ratios_capture+=("$(awk -v a="$capture_rps" -v b="$bare_rps" 'BEGIN { print a / b }')")
    cpus_bare+=("$bare_cpu")
    cpus_layer+=("$layer_cpu")
    total_bare=$(awk -v a="$total_bare" -v b="$bare_rps" 'BEGIN { print a + b }')
    total_layer=$(awk -v a="$total_layer" -v b="$layer_rps" 'BEGIN { print a + b }')
    p99s_bare+=("$bare_p99")
    p99s_layer+=("$layer_p99")
done

median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
bare_p99=$(median "${p99s_bare[@]}")
layer_p99=$(median "${p99s_layer[@]}")
bare_cpu=$(median "${cpus_bare[@]}")
layer_cpu=$(median "${cpus_layer[@]}")
capture_cpu=$(median "${cpus_capture[@]}")
echo "median of the rounds' throughput ratios: layer/bare $(median "${ratios_layer[@]}"), capture/bare $(median "${ratios_capture[@]}")"
echo "open-loop p99 at half the bare capacity, median of the rounds' layer/bare ratios: $(median "${open_ratios[@]}") (target <= 1.10: $(awk -v r="$(median "${open_ratios[@]}")" 'BEGIN { print (r <= 1.10) ? "met" : "NOT met" }'))"
echo "ceiling set by Redis's own CPU per event (bare cpu / (bare cpu + Redis cpu), median of rounds): $(median "${ceilings[@]}")"
awk -v bare="$total_bare" -v layer="$total_layer" -v rounds="$ROUNDS" \
    -v bp99="$bare_p99" -v lp99="$layer_p99" -v bcpu="$bare_cpu" -v lcpu="$layer_cpu" \
    -v capture="$total_capture" -v ccpu="$capture_cpu" 'BEGIN {
    ratio = layer / bare; p99_ratio = lp99 / bp99
    printf "throughput: bare %.0f req/s, layer %.0f req/s (mean of %d): layer/bare = %.3f (target >= 0.90: %s)\n",
        bare / rounds, layer / rounds, rounds, ratio, ratio >= 0.90 ? "met" : "NOT met"
    printf "closed-loop p99 latency (wrk): bare %.0fus, layer %.0fus (median): layer/bare = %.3f\n",
        bp99, lp99, p99_ratio
    printf "cpu per request (app + redis + wrk): bare %.1fus, layer %.1fus (median): bare/layer = %.3f (the throughput ratio on cores this load saturates, less sensitive to other work on the machine)\n",
        bcpu, lcpu, bcpu / lcpu
    printf "capture only (layer + dispatcher, no Redis write): %.0f req/s: capture/bare = %.3f; cpu %.1fus: bare/capture = %.3f\n",
        capture / rounds, capture / bare, ccpu, bcpu / ccpu
}'
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
if [[ $failed -ne 0 ]]; then
    echo "stream count check FAILED: some requests were not recorded exactly once" >&2
    exit 1
fi
echo "stream count check: every request recorded exactly once"
