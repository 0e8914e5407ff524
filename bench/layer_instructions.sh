#!/usr/bin/env bash
# Instructions per mapped request, layer minus bare: the capture layer's
# cost counted by callgrind, which does not move with the machine's noise.
#
# Runs `middleware/examples/bench_app.rs` (release) under
# `valgrind --tool=callgrind` in each mode (bare: no layer; capture: the
# layer and dispatcher with a sink that writes nothing; layer: the whole
# thing writing to a private Redis, added with `Router::layer` as the
# README shows; wrapped: the same layer around the whole router, which
# spares axum's per-route boxing), with every thread of the app counted.
# After a warm-up of WARMUP requests the counters are zeroed
# (`callgrind_control -z`), REQUESTS requests are sent by
# `middleware/examples/bench_load.rs` (closed loop, CONNECTIONS keep-alive
# connections, outside valgrind), the app is given a moment to write the
# last batch, and the counters are dumped (`callgrind_control -d`): the
# dump's total over REQUESTS is the instructions per request of that mode.
#
# Under callgrind the app runs about fifty times slower than natively, so
# a 5 ms linger would collect a fiftieth of the events per batch that it
# collects at full speed. LINGER_MS (default 250) scales it back, so the
# batches are about the size they are under load; the script prints the
# mean events per stream entry, so that what was measured is on record.
#
# Usage: bench/layer_instructions.sh      (REQUESTS=20000 WARMUP=2000 CONNECTIONS=32)
#        KEEP_DUMPS=/tmp/cg MODES=layer bench/layer_instructions.sh   (keeps the dumps for callgrind_annotate)
set -euo pipefail

cd "$(dirname "$0")/.."
REQUESTS=${REQUESTS:-20000}
WARMUP=${WARMUP:-2000}
CONNECTIONS=${CONNECTIONS:-32}
LINGER_MS=${LINGER_MS:-250}
MODES=${MODES:-bare capture layer wrapped}

command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
source bench/lib/private_redis.sh
REDIS_URL="redis://127.0.0.1:$PORT"

cargo build --release -p activity-tracker --example bench_app --example bench_load -q
APP=${CARGO_TARGET_DIR:-target}/release/examples/bench_app
LOAD=${CARGO_TARGET_DIR:-target}/release/examples/bench_load
APP_PID=
stop_app() {
    if [[ -n "$APP_PID" ]] && kill -0 "$APP_PID" 2>/dev/null; then
        kill -TERM "$APP_PID" 2>/dev/null || true
        wait "$APP_PID" 2>/dev/null || true
    fi
    APP_PID=
}
trap 'stop_app; cleanup' EXIT

# measure MODE: prints "INSTRUCTIONS_PER_REQUEST EVENTS_PER_ENTRY".
measure() {
    local mode=$1 key="bench_instructions_$1" out="$WORK/$1.out" addr=
    BENCH_MODE=$mode STREAM_KEY=$key REDIS_URL=$REDIS_URL APP_LISTEN=127.0.0.1:0 \
        BENCH_LINGER_MS=$LINGER_MS \
        valgrind --tool=callgrind --callgrind-out-file="$WORK/$mode.%p.cg" \
        "$APP" >"$out" 2>"$WORK/$mode.err" &
    APP_PID=$!
    for _ in $(seq 600); do
        addr=$(sed -n 's/^listening on //p' "$out")
        [[ -n "$addr" ]] && break
        sleep 0.1
    done
    [[ -n "$addr" ]] || { echo "bench_app did not start under valgrind" >&2; cat "$WORK/$mode.err" >&2; exit 1; }
    "$LOAD" count "$addr" /hello "$WARMUP" "$CONNECTIONS" >/dev/null
    sleep 2
    callgrind_control -z "$APP_PID" >/dev/null 2>&1
    "$LOAD" count "$addr" /hello "$REQUESTS" "$CONNECTIONS" >/dev/null
    # The last batch goes after its linger; leave it time to be written.
    sleep 3
    callgrind_control -d "$APP_PID" >/dev/null 2>&1
    sleep 1
    stop_app
    # The dump made by `-d` is the file numbered `.1`.
    local dump
    dump=$(ls "$WORK/$mode".*.cg.1 2>/dev/null | head -n1)
    [[ -n "$dump" ]] || { echo "no callgrind dump for $mode" >&2; ls "$WORK" >&2; exit 1; }
    if [[ -n "${KEEP_DUMPS:-}" ]]; then
        mkdir -p "$KEEP_DUMPS" && cp "$dump" "$KEEP_DUMPS/$mode.cg"
    fi
    local total
    total=$(awk '/^(summary|totals):/ { print $2; exit }' "$dump")
    local entries=0 events=0
    if [[ $mode == layer || $mode == wrapped ]]; then
        entries=$(redis-cli -p "$PORT" XLEN "$key")
        events=$(redis-cli -p "$PORT" --raw XRANGE "$key" - + | awk 'prev == "n" { s += $1 } { prev = $0 } END { print s + 0 }')
        # A v1 entry has no `n`: one event each.
        [[ $events -gt 0 ]] || events=$entries
        local expected=$((WARMUP + REQUESTS))
        if [[ $events -ne $expected ]]; then
            echo "$mode mode: the stream holds $events events for $expected requests" >&2
            exit 1
        fi
    fi
    awk -v t="$total" -v n="$REQUESTS" -v e="$events" -v c="$entries" \
        'BEGIN { printf "%.0f %.1f\n", t / n, (c > 0) ? e / c : 0 }'
}

echo "instructions per request: callgrind, $REQUESTS requests after $WARMUP, $CONNECTIONS connections, linger ${LINGER_MS} ms, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
declare -A per_request
for mode in $MODES; do
    read -r instructions per_entry < <(measure "$mode")
    per_request[$mode]=$instructions
    if [[ $mode == layer || $mode == wrapped ]]; then
        printf '%-8s %8s instructions per request (%s events per stream entry)\n' "$mode" "$instructions" "$per_entry"
    else
        printf '%-8s %8s instructions per request\n' "$mode" "$instructions"
    fi
done
if [[ -n "${per_request[bare]:-}" ]]; then
    for mode in capture layer wrapped; do
        [[ -n "${per_request[$mode]:-}" ]] || continue
        printf '%s minus bare: %d instructions per request (%.3f of bare)\n' "$mode" \
            $((per_request[$mode] - per_request[bare])) \
            "$(awk -v a="${per_request[$mode]}" -v b="${per_request[bare]}" 'BEGIN { print a / b }')"
    done
    for mode in layer wrapped; do
        [[ -n "${per_request[$mode]:-}" ]] || continue
        extra=$((per_request[$mode] - per_request[bare]))
        echo "target: $mode minus bare <= 3000: $([[ $extra -le 3000 ]] && echo met || echo NOT met)"
    done
fi
